import pytest
import torch
import torch.nn.functional as F
from captum.robust import AttackComparator, Perturbation
from conftest import assert_model_unchanged, model_snapshot
from scipy import stats
from torch.utils.data import DataLoader

from captum_pags.datasets import load_digits16
from captum_pags.models import MLP
from captum_pags.training import PGD, fit


def _per_example_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.reshape(delta.shape[0], -1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    train = load_digits16("train")
    model = MLP(hidden=(64,))
    loader = DataLoader(train.dataset(), batch_size=64, shuffle=True)
    fit(
        model,
        torch.nn.CrossEntropyLoss(),
        loader,
        epochs=8,
        optimizer=torch.optim.Adam(model.parameters(), 3e-3),
        quiet=True,
    )
    model.eval()
    return model


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("batch", [1, 128])
def test_every_example_stays_within_its_budget(norm, batch):
    torch.manual_seed(batch)
    model = MLP(hidden=(32,))
    x = torch.rand(batch, 1, 16, 16)
    y = torch.randint(0, 10, (batch,))
    eps = 0.5 if norm == "l2" else 0.03
    for bounds in (None, (0.0, 1.0)):
        adv = PGD(model, eps, steps=7, norm=norm, step_size=eps, bounds=bounds)(x, y)
        norms = _per_example_norms(adv - x, norm)
        assert bool((norms <= eps + 1e-6).all()), norms.max()
        # large steps reach the boundary of every ball (without bounds that clip it)
        if bounds is None:
            torch.testing.assert_close(norms, torch.full_like(norms, eps), rtol=1e-5, atol=1e-6)
        else:
            assert adv.min() >= 0 and adv.max() <= 1


def test_budget_is_per_example_not_per_batch():
    # a batched attack equals attacking each example on its own (no batch-wide normalisation)
    torch.manual_seed(0)
    model = MLP(hidden=(16,)).double()
    x = torch.rand(6, 1, 16, 16, dtype=torch.float64)
    y = torch.arange(6)
    attack = PGD(model, 0.7, steps=5, norm="l2", random_start=False)
    batched = attack(x, y)
    single = torch.cat([attack(x[i : i + 1], y[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_one_step_equals_the_closed_form(norm):
    torch.manual_seed(0)
    model = MLP(hidden=(16,)).double()
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    y = torch.tensor([1, 2, 3, 4])
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    eps, alpha = 0.5, 0.2
    adv = PGD(model, eps, steps=1, norm=norm, step_size=alpha, random_start=False)(x, y)
    if norm == "l2":
        expected = x + alpha * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    else:
        expected = x + torch.clamp(alpha * g.sign(), -eps, eps)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)
    # targeted: a step down the target's cross-entropy
    adv_t = PGD(model, eps, steps=1, norm=norm, step_size=alpha, random_start=False, targeted=True)(x, y)
    torch.testing.assert_close(adv_t - x, -(expected - x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_random_start_is_uniform_in_the_ball(norm):
    # a model with zero input gradient leaves the start where it is (zero L2 step, sign(0) = 0)
    def flat_model(x):
        return torch.zeros(x.shape[0], 3) + 0.0 * x.sum()

    d, n, eps = 5, 4000, 2.0
    x = torch.zeros(n, d)
    start = PGD(flat_model, eps, steps=1, norm=norm)(x, torch.zeros(n, dtype=torch.long))
    if norm == "l2":
        # uniform in the ball: (r / eps)^d ~ U(0, 1), direction uniform on the sphere
        u = (start.norm(dim=1) / eps) ** d
        assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3
        assert start.mean(0).abs().max() < 0.1
    else:
        assert stats.kstest((start.flatten() / (2 * eps) + 0.5).numpy(), "uniform").pvalue > 1e-3


def test_pgd_hurts_a_trained_model_far_more_than_noise_of_the_same_norm(digits_model):
    test = load_digits16("test")
    x, y = test.images, test.labels
    clean = _accuracy(digits_model, x, y)
    gen = torch.Generator().manual_seed(0)
    for norm, eps in (("l2", 1.5), ("linf", 0.1)):
        adv = PGD(digits_model, eps, steps=10, norm=norm, bounds=(0.0, 1.0))(x, y)
        delta = adv - x
        if norm == "l2":
            noise = torch.randn(x.shape, generator=gen)
            noise = noise * (_per_example_norms(delta, "l2") / noise.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
        else:
            noise = eps * torch.randint(0, 2, x.shape, generator=gen).mul(2).sub(1)
        noisy = _accuracy(digits_model, x + noise, y)
        attacked = _accuracy(digits_model, adv, y)
        print(f"{norm} eps={eps}: clean {clean:.3f}, same-norm noise {noisy:.3f}, PGD-10 {attacked:.3f}")
        assert clean > 0.9
        assert noisy > clean - 0.1, (norm, clean, noisy)
        assert attacked < noisy - 0.5, (norm, noisy, attacked)


def test_model_left_as_it_was(small_net):
    small_net.train()
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    F.cross_entropy(small_net(x), y).backward()  # user's pending gradients must survive
    bn = small_net.net[2]
    stats_before = (bn.running_mean.clone(), bn.num_batches_tracked.clone())
    before = model_snapshot(small_net)
    seen_modes = []
    handle = small_net.register_forward_pre_hook(lambda m, inp: seen_modes.append(m.training))
    PGD(small_net, 0.5, steps=3)(x, y)
    handle.remove()
    assert seen_modes == [False] * 3  # eval mode during the attack
    assert_model_unchanged(small_net, before)
    torch.testing.assert_close(bn.running_mean, stats_before[0])  # BatchNorm statistics untouched
    assert int(bn.num_batches_tracked) == int(stats_before[1])
    # also when the attack fails half-way
    with pytest.raises(ValueError, match="Expected `model` to return logits of shape"):
        PGD(lambda t: small_net(t).unsqueeze(1), 0.5, steps=2)(x, y)
    assert_model_unchanged(small_net, before)


def test_works_as_a_captum_perturbation(digits_model):
    test = load_digits16("test")
    x, y = test.images[:64], test.labels[:64]
    attack = PGD(digits_model, 1.5, steps=10, bounds=(0.0, 1.0))
    assert isinstance(attack, Perturbation)

    def accuracy(out, target):
        return (out.argmax(1) == target).float().mean()

    comparator = AttackComparator(forward_func=digits_model, metric=accuracy)
    comparator.add_attack(attack, "PGD", additional_attack_arg_names=["target"])
    result = comparator.evaluate(x, target=y)
    assert float(result["PGD"]["mean"]) < float(result["Original"]) - 0.5


def test_tuple_inputs_share_one_budget():
    torch.manual_seed(0)

    def model(a, b):
        return torch.cat([a.flatten(1), b.flatten(1)], 1) @ torch.ones(5, 2)

    a, b = torch.rand(3, 2), torch.rand(3, 3)
    adv_a, adv_b = PGD(model, 0.4, steps=3)((a, b), torch.tensor([0, 1, 0]))
    total = torch.cat([adv_a - a, adv_b - b], dim=1).norm(dim=1)
    assert bool((total <= 0.4 + 1e-6).all())


def test_attack_bad_input():
    model = MLP(hidden=(4,))
    with pytest.raises(ValueError, match="Expected `epsilon` to be a finite number > 0 but got 0.0"):
        PGD(model, 0.0)
    with pytest.raises(ValueError, match="Expected `steps` to be >= 1 but got 0"):
        PGD(model, 1.0, steps=0)
    with pytest.raises(ValueError, match="Expected `norm` to be one of 'l2', 'linf' but got 'l1'"):
        PGD(model, 1.0, norm="l1")
    with pytest.raises(ValueError, match="Expected `step_size` to be a finite number > 0 but got -1.0"):
        PGD(model, 1.0, step_size=-1.0)
    with pytest.raises(ValueError, match=r"Expected `bounds` \(low, high\) with low < high"):
        PGD(model, 1.0, bounds=(1.0, 0.0))
    with pytest.raises(TypeError, match="Expected `model` to be callable"):
        PGD("model", 1.0)
    attack = PGD(model, 1.0, bounds=(0.0, 1.0))
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="Expected `inputs` to lie within `bounds`"):
        attack(x + 2, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"Expected `target` to have shape \(2,\)"):
        attack(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="Expected `target` \\(class labels\\)"):
        attack(x, None)
    with pytest.raises(ValueError, match=r"Expected `target` labels in \[0, 10\) but got values in \[0, 10\]"):
        attack(x, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="Expected `inputs` to hold finite values"):
        PGD(model, 1.0)(x * float("nan"), torch.tensor([0, 1]))


def test_parallel_wrappers_are_attacked_through_their_module():
    torch.manual_seed(0)
    model = MLP(hidden=(8,))
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    attack = PGD(model, 0.5, steps=3, random_start=False)
    wrapped = PGD(torch.nn.DataParallel(model), 0.5, steps=3, random_start=False)
    torch.testing.assert_close(wrapped(x, y), attack(x, y), rtol=0, atol=0)


def _flat_zero_model(x):
    """Logits that do not depend on the input: every gradient step is zero, the start is all that moves."""
    return (x * 0).flatten(1)[:, :2]


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_random_start_is_drawn_from_the_given_generator_in_the_inputs_dtype(norm):
    x = torch.rand(5, 1, 2, 3, dtype=torch.float64)
    y = torch.zeros(5, dtype=torch.long)
    eps = 0.4
    attack = PGD(_flat_zero_model, epsilon=eps, steps=2, norm=norm)
    torch.manual_seed(1)
    adv = attack.perturb(x, y, generator=torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(8)
    if norm == "linf":
        start = eps * (2 * torch.rand(5, 6, generator=g, dtype=torch.float64) - 1)
    else:
        direction = torch.randn(5, 6, generator=g, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True)
        start = direction * (eps * torch.rand(5, 1, generator=g, dtype=torch.float64).pow(1 / 6))
    torch.testing.assert_close(adv, x + start.view_as(x), rtol=1e-12, atol=1e-15)
    # the global generator is neither used nor changed
    state = torch.get_rng_state()
    torch.manual_seed(2)
    again = attack.perturb(x, y, generator=torch.Generator().manual_seed(8))
    assert torch.equal(adv, again)
    torch.set_rng_state(state)


def test_degenerate_bounds_and_non_callable_models_are_refused():
    with pytest.raises(ValueError, match=r"Expected `bounds` \(low, high\) with low < high but got \(0.5, 0.5\)"):
        PGD(_flat_zero_model, 0.1, bounds=(0.5, 0.5))
    with pytest.raises(TypeError, match="Expected `model` to be callable but got int"):
        PGD(3, 0.1)
