"""Every training loss against a slow per-example loop by its PARAMETER GRADIENTS, and the asserted defaults.

A penalty that silently stops contributing a gradient (a detached branch, a missing
``create_graph``) keeps its value; only the parameter gradients show it. Each test also checks
that its comparison can fail: the reference with the branch detached is far from the loss.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_pags.scores import GaussianMixtureScore
from captum_pags.training import (
    PGD,
    AdversarialLoss,
    GradientNormLoss,
    NoiseConsistencyLoss,
    RandomizedSmoothingLoss,
    ScoreAlignmentLoss,
    SmoothedClassifier,
    StandardLoss,
)

SEEDS = [0, 1, 2]


def _model(seed, d=6, c=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 10), nn.Softplus(), nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, c)).double()


def _batch(seed, n=7, d=6, c=3):
    g = torch.Generator().manual_seed(50 + seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def _grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()), allow_unused=True, retain_graph=True)


def _assert_same_grads(model, loss, reference, rtol=1e-9):
    for a, b in zip(_grads(model, loss), _grads(model, reference)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-13)


def _differs(model, loss, other, factor=1e-4):
    diff = sum(float((a - b).abs().sum()) for a, b in zip(_grads(model, loss), _grads(model, other)))
    return diff > factor


@pytest.mark.parametrize("seed", SEEDS)
def test_noise_consistency_parameter_gradients_equal_a_per_example_loop(seed):
    model, (x, y) = _model(seed), _batch(seed)
    lam, sigma = 0.8, 0.4
    torch.manual_seed(10 + seed)
    loss = NoiseConsistencyLoss(lam, sigma)(model, x, y)
    torch.manual_seed(10 + seed)
    noise = sigma * torch.randn_like(x)
    terms, detached = [], []
    for i in range(x.shape[0]):
        logits, noisy = model(x[i : i + 1]), model(x[i : i + 1] + noise[i : i + 1])
        ce = F.cross_entropy(logits, y[i : i + 1])
        terms.append(ce + lam * (logits - noisy).pow(2).sum())
        detached.append(ce + lam * (logits - noisy.detach()).pow(2).sum())
    reference = torch.stack(terms).mean()
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=0)
    _assert_same_grads(model, loss, reference)
    assert _differs(model, loss, torch.stack(detached).mean())  # the noisy branch carries gradient


@pytest.mark.parametrize("seed", SEEDS)
def test_randomized_smoothing_parameter_gradients_equal_a_per_example_loop(seed):
    model, (x, y) = _model(seed), _batch(seed)
    torch.manual_seed(20 + seed)
    loss = RandomizedSmoothingLoss(0.3)(model, x, y)
    torch.manual_seed(20 + seed)
    noisy = x + 0.3 * torch.randn_like(x)
    reference = torch.stack([F.cross_entropy(model(noisy[i : i + 1]), y[i : i + 1]) for i in range(7)]).mean()
    _assert_same_grads(model, loss, reference)
    # the clean-input loss has other gradients: the noise reaches the parameters' gradient
    assert _differs(model, loss, StandardLoss()(model, x, y))


@pytest.mark.parametrize("seed", SEEDS)
def test_double_backprop_penalty_gradient_flows_through_the_input_gradient(seed):
    model, (x, y) = _model(seed), _batch(seed)
    lam = 2.0
    loss = GradientNormLoss(lam)(model, x, y)
    terms, detached = [], []
    for i in range(7):
        xi = x[i : i + 1].clone().requires_grad_()
        ce = F.cross_entropy(model(xi), y[i : i + 1])
        (g,) = torch.autograd.grad(ce, xi, create_graph=True)
        terms.append(ce + lam * g.pow(2).sum())
        detached.append(ce + lam * g.detach().pow(2).sum())
    _assert_same_grads(model, loss, torch.stack(terms).mean())
    assert _differs(model, loss, torch.stack(detached).mean())  # without create_graph the penalty is inert


@pytest.mark.parametrize("seed", SEEDS)
def test_finite_difference_penalty_gradients_equal_its_formula_with_a_detached_direction(seed):
    model, (x, y) = _model(seed), _batch(seed)
    lam, h = 1.5, 0.05
    loss = GradientNormLoss(lam, method="finite_difference", h=h)(model, x, y)
    terms, frozen_step = [], []
    for i in range(7):
        xi = x[i : i + 1].clone().requires_grad_()
        ce = F.cross_entropy(model(xi), y[i : i + 1])
        (g,) = torch.autograd.grad(ce, xi, retain_graph=True)
        d = g / g.norm()
        ce_step = F.cross_entropy(model(x[i : i + 1] + h * d), y[i : i + 1])
        terms.append(ce + lam * ((ce_step - ce) / h) ** 2)
        frozen_step.append(ce + lam * ((ce_step.detach() - ce) / h) ** 2)
    reference = torch.stack(terms).mean()
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=0)
    _assert_same_grads(model, loss, reference)
    assert _differs(model, loss, torch.stack(frozen_step).mean())


@pytest.mark.parametrize("seed", SEEDS)
def test_adversarial_loss_gradient_is_the_gradient_at_the_fixed_adversary(seed):
    model, (x, y) = _model(seed), _batch(seed)
    criterion = AdversarialLoss(epsilon=0.7, steps=4, random_start=False)
    loss = criterion(model, x, y)
    adv = PGD(model, epsilon=0.7, steps=4, random_start=False)(x, y)
    reference = torch.stack([F.cross_entropy(model(adv[i : i + 1]), y[i : i + 1]) for i in range(7)]).mean()
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=0)
    _assert_same_grads(model, loss, reference)
    assert _differs(model, loss, StandardLoss()(model, x, y))


@pytest.mark.parametrize(("seed", "lam"), [(0, 1.3), (1, 1.3), (2, 1.3), (0, 0.4), (1, 1.0)])
def test_score_alignment_parameter_gradients_with_non_uniform_priors(seed, lam):
    # lam below, at and above 1: the penalty's graph is kept for every lam > 0
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(3, 6, generator=g, dtype=torch.float64)
    scores = GaussianMixtureScore(means, torch.eye(6, dtype=torch.float64), torch.tensor([0.6, 0.3, 0.1]))
    model, (x, y) = _model(seed), _batch(seed)
    sigma = 0.5
    loss = ScoreAlignmentLoss(lam, scores, sigma)(model, x, y)
    terms, detached = [], []
    for i in range(7):
        xi = x[i : i + 1].clone().requires_grad_()
        ce = F.cross_entropy(model(xi), y[i : i + 1])
        (g_ce,) = torch.autograd.grad(ce, xi, create_graph=True)
        s = (scores.score(xi.detach(), sigma, y[i : i + 1]) - scores.score(xi.detach(), sigma)).flatten()
        grad_log_p = -g_ce.flatten()
        cos = grad_log_p @ s / (grad_log_p.norm() * s.norm())
        cos_detached = grad_log_p.detach() @ s / (grad_log_p.detach().norm() * s.norm())
        terms.append(ce + lam * (1 - cos))
        detached.append(ce + lam * (1 - cos_detached))
    reference = torch.stack(terms).mean()
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=0)
    _assert_same_grads(model, loss, reference, rtol=1e-8)
    assert _differs(model, loss, torch.stack(detached).mean())


# ---------------------------------------------------------------------- defaults, asserted
def test_pgd_defaults():
    attack = PGD(lambda x: x, epsilon=0.5)
    assert (attack.steps, attack.norm, attack.random_start, attack.bounds, attack.targeted) == (
        10,
        "l2",
        True,
        None,
        False,
    )
    assert attack.step_size == pytest.approx(2.5 * 0.5 / 10, rel=1e-15)
    assert PGD(lambda x: x, epsilon=0.3, steps=4).step_size == pytest.approx(2.5 * 0.3 / 4, rel=1e-15)
    assert PGD(lambda x: x, epsilon=0.3, steps=4, step_size=0.01).step_size == 0.01


def test_adversarial_loss_defaults_are_the_attacks():
    cfg = AdversarialLoss(epsilon=0.5)._config
    assert (cfg.steps, cfg.norm, cfg.random_start, cfg.bounds, cfg.targeted) == (10, "l2", True, None, False)
    assert cfg.step_size == pytest.approx(0.125, rel=1e-15)


def test_other_defaults():
    gn = GradientNormLoss(1.0)
    assert (gn.method, gn.h) == ("double_backprop", 1e-2)
    smoothed = SmoothedClassifier(lambda x: x, sigma=0.5, num_classes=2)
    assert smoothed.batch_size == 1000
    criterion = ScoreAlignmentLoss(1.0, GaussianMixtureScore(torch.zeros(2, 2), torch.eye(2)), 0.5)
    assert criterion.batch_size is None


def test_default_step_reaches_the_boundary_of_a_linear_model():
    # a weaker default (a smaller step factor) would stop short of the ball's boundary
    model = nn.Linear(4, 2).double()
    x, y = torch.zeros(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.long)
    adv = PGD(model, epsilon=1.0, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(adv.norm(dim=1), torch.ones(5, dtype=torch.float64), rtol=1e-12, atol=0)
    short = PGD(model, epsilon=1.0, steps=10, random_start=False, step_size=0.09)(x, y)
    assert float(short.norm(dim=1).max()) < 0.95


def test_every_loss_reports_its_named_parts():
    model, (x, y) = _model(0), _batch(0)
    scores = GaussianMixtureScore(torch.randn(3, 6, dtype=torch.float64), torch.eye(6, dtype=torch.float64))
    expected = {
        StandardLoss(): ["ce", "loss"],
        GradientNormLoss(1.0): ["ce", "grad_norm_sq", "loss"],
        NoiseConsistencyLoss(1.0, 0.1): ["ce", "consistency", "loss"],
        RandomizedSmoothingLoss(0.1): ["loss", "noisy_ce"],
        AdversarialLoss(0.1, steps=1): ["adv_ce", "loss"],
        ScoreAlignmentLoss(1.0, scores, 0.5): ["ce", "loss", "misalignment"],
    }
    for criterion, keys in expected.items():
        value = criterion(model, x, y)
        parts = criterion.last.as_dict()
        assert sorted(parts) == keys, type(criterion).__name__
        assert parts["loss"] == pytest.approx(float(value.detach()), rel=1e-12)
    assert "epsilon=0.1, steps=1, norm='l2'" in repr(AdversarialLoss(0.1, steps=1))


def test_score_alignment_evaluates_the_score_model_in_batches_of_batch_size():
    g = torch.Generator().manual_seed(4)
    scores = GaussianMixtureScore(
        torch.randn(3, 6, generator=g, dtype=torch.float64), torch.eye(6, dtype=torch.float64)
    )
    model, (x, y) = _model(4), _batch(4)
    sizes = []
    original = scores._score

    def recording(inputs, sigma, target):
        sizes.append(inputs.shape[0])
        return original(inputs, sigma, target)

    scores._score = recording
    batched = ScoreAlignmentLoss(0.7, scores, 0.5, batch_size=3)
    assert batched.batch_size == 3
    loss = batched(model, x, y)
    assert max(sizes) == 3 and sum(sizes) == 2 * 7  # conditional and unconditional scores
    torch.testing.assert_close(loss, ScoreAlignmentLoss(0.7, scores, 0.5)(model, x, y), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="Expected `batch_size` to be >= 1 but got 0"):
        ScoreAlignmentLoss(0.7, scores, 0.5, batch_size=0)


def test_adversarial_loss_refuses_zero_steps_naming_them():
    with pytest.raises(ValueError, match="Expected `steps` to be >= 1 but got 0"):
        AdversarialLoss(epsilon=0.5, steps=0)


def test_a_model_that_ignores_its_inputs_has_a_zero_input_gradient_penalty():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = nn.Parameter(torch.tensor([0.5, -0.2, 0.1], dtype=torch.float64))

        def forward(self, x):
            return self.logits.expand(x.shape[0], -1)

    model, (x, y) = Constant(), _batch(0)
    loss = GradientNormLoss(2.0)(model, x, y)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y), rtol=1e-14, atol=0)
