import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_model_unchanged, model_snapshot
from torch.utils.data import DataLoader

from captum_pags.datasets import load_digits16
from captum_pags.models import MLP
from captum_pags.scores import BayesOptimalClassifier, GaussianMixtureScore
from captum_pags.training import (
    PGD,
    AdversarialLoss,
    GradientNormLoss,
    NoiseConsistencyLoss,
    RandomizedSmoothingLoss,
    ScoreAlignmentLoss,
    StandardLoss,
    fit,
)


def _double_model(seed=0):
    torch.manual_seed(seed)
    return MLP(input_shape=(1, 4, 4), hidden=(8, 8), num_classes=3).double()


def _batch(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _param_grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()))


def test_gradient_norm_penalty_equals_a_per_example_loop():
    model, lam = _double_model(), 0.3
    x, y = _batch()
    criterion = GradientNormLoss(lam)
    loss = criterion(model, x, y)
    # slow reference: one example at a time, each with its own double backprop
    ref_terms = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_()
        ce = F.cross_entropy(model(xi), y[i : i + 1])
        (g,) = torch.autograd.grad(ce, xi, create_graph=True)
        ref_terms.append((ce, (g**2).sum()))
    ref_ce = torch.stack([c for c, _ in ref_terms]).mean()
    ref_pen = torch.stack([p for _, p in ref_terms]).mean()
    torch.testing.assert_close(criterion.last.terms["grad_norm_sq"], ref_pen.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(criterion.last.terms["ce"], ref_ce.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(loss, ref_ce + lam * ref_pen, rtol=1e-12, atol=0)
    # the parameter gradients (through the double backprop) agree as well
    for a, b in zip(_param_grads(model, loss), _param_grads(model, ref_ce + lam * ref_pen)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["double_backprop", "finite_difference"])
def test_gradient_norm_loss_does_not_depend_on_the_batch_split(method):
    model = _double_model()
    x, y = _batch(12)
    criterion = GradientNormLoss(0.5, method=method)
    whole = criterion(model, x, y)
    parts = [(criterion(model, x[s], y[s]), s.stop - s.start) for s in (slice(0, 5), slice(5, 12))]
    split = sum(loss * n for loss, n in parts) / 12
    torch.testing.assert_close(whole, split, rtol=1e-12, atol=0)
    for a, b in zip(_param_grads(model, whole), _param_grads(model, split)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_finite_difference_penalty_within_5_percent_of_exact():
    torch.manual_seed(0)
    train, test = load_digits16("train"), load_digits16("test")
    model = MLP(hidden=(64,), activation="softplus")
    loader = DataLoader(train.dataset(), batch_size=64, shuffle=True)
    fit(model, StandardLoss(), loader, epochs=3, optimizer=torch.optim.Adam(model.parameters(), 3e-3), quiet=True)
    exact, approx = GradientNormLoss(1.0), GradientNormLoss(1.0, method="finite_difference")
    exact(model, test.images, test.labels)
    approx(model, test.images, test.labels)
    e, a = exact.last.terms["grad_norm_sq"], approx.last.terms["grad_norm_sq"]
    assert e > 0.1  # a trained model with real gradients
    assert abs(float(a / e) - 1) < 0.05, (float(e), float(a))


@pytest.mark.slow
def test_larger_lambda_gives_smaller_input_gradients_on_digits16():
    train, test = load_digits16("train"), load_digits16("test")
    norms = []
    for lam in (0.0, 1.0, 10.0):
        torch.manual_seed(0)
        model = MLP(hidden=(64,))
        loader = DataLoader(train.dataset(), batch_size=64, shuffle=True)
        optimizer = torch.optim.Adam(model.parameters(), 3e-3)
        fit(model, GradientNormLoss(lam), loader, epochs=5, optimizer=optimizer, quiet=True, seed=0)
        x = test.images.clone().requires_grad_()
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), test.labels, reduction="sum"), x)
        norms.append(g.flatten(1).norm(dim=1).mean().item())
    assert norms[0] > norms[1] > norms[2], norms
    assert norms[2] < 0.5 * norms[0], norms


def test_noise_losses_equal_their_formulas():
    model = _double_model()
    x, y = _batch()
    sigma, lam = 0.3, 0.7
    torch.manual_seed(5)
    nc = NoiseConsistencyLoss(lam, sigma)
    loss = nc(model, x, y)
    torch.manual_seed(5)
    delta = sigma * torch.randn_like(x)
    logits = model(x)
    consistency = ((logits - model(x + delta)) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, F.cross_entropy(logits, y) + lam * consistency, rtol=1e-12, atol=0)
    torch.testing.assert_close(nc.last.terms["consistency"], consistency.detach(), rtol=1e-12, atol=0)

    torch.manual_seed(6)
    rs = RandomizedSmoothingLoss(sigma)(model, x, y)
    torch.manual_seed(6)
    torch.testing.assert_close(rs, F.cross_entropy(model(x + sigma * torch.randn_like(x)), y), rtol=1e-12, atol=0)


def test_adversarial_loss_is_the_loss_at_the_pgd_adversary(small_net):
    small_net.train()
    x, y = torch.rand(8, 1, 6, 6), torch.randint(0, 3, (8,))
    twin = copy.deepcopy(small_net)  # the train-mode loss updates BatchNorm statistics, used by the next attack
    before = model_snapshot(small_net)
    torch.manual_seed(3)
    criterion = AdversarialLoss(epsilon=0.5, steps=3, norm="linf", bounds=(0.0, 1.0))
    loss = criterion(small_net, x, y)
    assert_model_unchanged(small_net, before)
    assert small_net.training  # the final loss runs in train mode (dropout, batch statistics)
    torch.manual_seed(3)
    adv = PGD(twin, 0.5, steps=3, norm="linf", bounds=(0.0, 1.0))(x, y)
    torch.testing.assert_close(loss, F.cross_entropy(twin(adv), y), rtol=1e-6, atol=1e-6)
    assert float(criterion.last.terms["adv_ce"]) == pytest.approx(float(loss.detach()))
    # the only parameter gradient is the one of the final loss (the attack leaves nothing behind)
    loss.backward()
    assert all(p.grad is not None for p in small_net.parameters())


def test_score_alignment_is_zero_for_the_bayes_classifier(gaussian_data):
    x, y = gaussian_data.sample(16, seed=2)
    sigma = 0.5
    bayes = BayesOptimalClassifier(gaussian_data.score_model, sigma=sigma)
    criterion = ScoreAlignmentLoss(2.0, gaussian_data.score_model, sigma)
    criterion(bayes, x.double(), y)
    torch.testing.assert_close(
        criterion.last.terms["misalignment"], torch.zeros((), dtype=torch.float64), atol=1e-10, rtol=0
    )
    # ... and 1 - cos of an explicit loop for another model
    torch.manual_seed(0)
    model = MLP(input_shape=gaussian_data.shape, hidden=(8,), num_classes=3).double()
    loss = criterion(model, x.double(), y)
    ref = []
    for i in range(16):
        xi = x[i : i + 1].double().requires_grad_()
        ce = F.cross_entropy(model(xi), y[i : i + 1])
        (g,) = torch.autograd.grad(-torch.log_softmax(model(xi), 1)[0, y[i]], xi)
        s = gaussian_data.score_model.score(xi.detach(), sigma, y[i : i + 1]) - gaussian_data.score_model.score(
            xi.detach(), sigma
        )
        cos = -(g * s).sum() / (g.norm() * s.norm())
        ref.append((ce.detach(), 1 - cos))
    ref_mis = torch.stack([m for _, m in ref]).mean()
    torch.testing.assert_close(criterion.last.terms["misalignment"], ref_mis, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        loss.detach(), torch.stack([c for c, _ in ref]).mean() + 2.0 * ref_mis, rtol=1e-10, atol=0
    )


def test_score_alignment_training_aligns_gradients():
    scores = GaussianMixtureScore(torch.tensor([[-2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), torch.eye(3))
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = (x[:, 0] > 0).long()
    model = MLP(input_shape=(3,), hidden=(16,), num_classes=2)
    criterion = ScoreAlignmentLoss(5.0, scores, sigma=0.5)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    criterion(model, x, y)
    start = float(criterion.last.terms["misalignment"])
    for _ in range(100):
        optimizer.zero_grad()
        criterion(model, x, y).backward()
        optimizer.step()
    assert float(criterion.last.terms["misalignment"]) < 0.5 * start


def test_losses_leave_no_trace_on_the_model_besides_the_graph(small_net):
    small_net.eval()
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    before = model_snapshot(small_net)
    for criterion in (GradientNormLoss(1.0), GradientNormLoss(1.0, method="finite_difference"), StandardLoss()):
        criterion(small_net, x, y)
    assert_model_unchanged(small_net, before)
    assert x.grad is None


def test_parts_are_reported():
    model = _double_model()
    x, y = _batch()
    criterion = GradientNormLoss(0.5)
    loss = criterion(model, x, y)
    parts = criterion.last.as_dict()
    assert set(parts) == {"loss", "ce", "grad_norm_sq"}
    assert parts["loss"] == pytest.approx(parts["ce"] + 0.5 * parts["grad_norm_sq"])
    assert parts["loss"] == pytest.approx(float(loss.detach()))


def test_losses_bad_input(gaussian_data):
    with pytest.raises(ValueError, match="Expected `lam` to be a finite number >= 0 but got -1.0"):
        GradientNormLoss(-1.0)
    with pytest.raises(ValueError, match="Expected `method` to be one of 'double_backprop', 'finite_difference'"):
        GradientNormLoss(1.0, method="exact")
    with pytest.raises(ValueError, match="Expected `h` to be a finite number > 0"):
        GradientNormLoss(1.0, method="finite_difference", h=0)
    with pytest.raises(ValueError, match="Expected `sigma` to be a finite number > 0 but got 0.0"):
        NoiseConsistencyLoss(1.0, 0.0)
    with pytest.raises(ValueError, match="Expected `lam` to be a finite number >= 0 but got -0.5"):
        NoiseConsistencyLoss(-0.5, 1.0)
    with pytest.raises(ValueError, match="Expected `sigma` to be a finite number > 0 but got -1.0"):
        RandomizedSmoothingLoss(-1.0)
    with pytest.raises(ValueError, match="Expected `epsilon` to be a finite number > 0 but got 0.0"):
        AdversarialLoss(0.0)
    with pytest.raises(ValueError, match="Expected `steps` to be >= 1 but got 0"):
        AdversarialLoss(1.0, steps=0)
    with pytest.raises(ValueError, match="Expected `norm` to be one of 'l2', 'linf' but got 'l3'"):
        AdversarialLoss(1.0, norm="l3")
    with pytest.raises(TypeError, match="Expected `score_model` to be a captum_pags ScoreModel"):
        ScoreAlignmentLoss(1.0, object(), 0.5)
    with pytest.raises(ValueError, match="Expected `sigma` to be a finite number >= 0 but got -0.5"):
        ScoreAlignmentLoss(1.0, gaussian_data.score_model, -0.5)
    with pytest.raises(ValueError, match="Expected `lam` to be a finite number >= 0"):
        ScoreAlignmentLoss(-1.0, gaussian_data.score_model, 0.5)
    model = _double_model()
    x, y = _batch(4)
    with pytest.raises(ValueError, match=r"Expected `targets` to have shape \(4,\) but got \(4, 1\)"):
        StandardLoss()(model, x, y[:, None])
    with pytest.raises(ValueError, match=r"Expected `targets` to have shape \(4,\) but got \(3,\)"):
        StandardLoss()(model, x, y[:3])
    with pytest.raises(TypeError, match="Expected `inputs` to be a floating point tensor"):
        StandardLoss()(model, x.long(), y)
    with pytest.raises(TypeError, match="Expected `inputs` to be a torch.Tensor"):
        StandardLoss()(model, [1.0], y)
