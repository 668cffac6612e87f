"""The paper's strengths, converted, give the paper's losses and budgets (released code written out here)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_pags.training import (
    PGD,
    GradientNormLoss,
    NoiseConsistencyLoss,
    RandomizedSmoothingLoss,
    from_paper_strength,
    to_paper_strength,
)
from captum_pags.training.paper_units import PAPER_BATCH_SIZE, PAPER_GRIDS


def _net(seed, d=12, c=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 9), nn.Softplus(), nn.Linear(9, c)).double()


def _batch(seed, b, d=12, c=4):
    g = torch.Generator().manual_seed(100 + seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randint(0, c, (b,), generator=g)


def _paper_gradnorm_loss(model, x, y, reg_constant):
    """`GradNormRegularizedLoss.compute_loss` of the released code, as written there."""
    x = x.detach().requires_grad_(True)
    raw_loss = F.cross_entropy(model(x), y)
    grad_x = torch.autograd.grad(raw_loss, x, only_inputs=True, create_graph=True)[0]
    gradnorm = 1e5 * grad_x.pow(2).sum() / x.size(0)
    return raw_loss + reg_constant * gradnorm


def _paper_pgd_l2(model, x, y, epsilon, num_iter):
    """`PGDAdversarialLoss.pgd_l2_` of the released code (deterministic start: the direction of ones)."""
    delta = torch.ones_like(x, requires_grad=True)
    delta.data = epsilon * delta.data / torch.linalg.norm(delta.flatten()) / 2
    alpha = 2 * epsilon / num_iter
    for _ in range(num_iter):
        loss = nn.CrossEntropyLoss()(model(x + delta), y)
        loss.backward()
        step = delta.grad.detach()
        delta.data = delta.data + alpha * step / torch.linalg.norm(step.flatten())
        norm = torch.linalg.norm(delta.flatten())
        if norm > epsilon:
            delta.data = epsilon * delta.data / norm
        delta.grad.zero_()
    return delta.detach()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [1, 5, 16])
def test_converted_gradient_norm_strength_gives_the_papers_loss_and_parameter_gradients(seed, batch_size):
    model = _net(seed)
    x, y = _batch(seed, batch_size)
    c = 3e-4 * (seed + 1)
    paper = _paper_gradnorm_loss(model, x, y, c)
    ours = GradientNormLoss(lam=from_paper_strength("gradient_norm", c, batch_size=batch_size))(model, x, y)
    torch.testing.assert_close(ours, paper, rtol=1e-12, atol=0)
    params = list(model.parameters())
    g_paper = torch.autograd.grad(paper, params)
    g_ours = torch.autograd.grad(ours, params)
    for a, b in zip(g_ours, g_paper):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    # the penalty really contributes: without the conversion's 1/B^2 the gradients differ
    if batch_size > 1:
        wrong = GradientNormLoss(lam=c * 1e5)(model, x, y)
        assert not torch.allclose(wrong, paper, rtol=1e-3)


def test_code_scale_one_is_the_formula_as_printed():
    model, (x, y) = _net(0), _batch(0, 8)
    c = 0.7
    xr = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(xr), y), xr, create_graph=True)[0]
    printed = F.cross_entropy(model(x), y) + c * grad.pow(2).sum() / 8
    ours = GradientNormLoss(lam=from_paper_strength("gradient_norm", c, batch_size=8, code_scale=1.0))(model, x, y)
    torch.testing.assert_close(ours, printed, rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converted_pgd_budget_fills_the_papers_batch_ball(seed):
    b, eps_paper = 9, 1.5
    model = _net(seed)
    x, y = _batch(seed, b)
    eps = from_paper_strength("pgd", eps_paper, batch_size=b)
    assert eps == pytest.approx(eps_paper / 3)
    paper = _paper_pgd_l2(model, x, y, eps_paper, num_iter=20)
    ours = PGD(model, epsilon=eps, steps=20, random_start=False)(x, target=y) - x
    paper_norms, our_norms = paper.norm(dim=1), ours.norm(dim=1)
    # the same total budget: both attacks reach the batch ball's boundary
    torch.testing.assert_close(paper.norm(), torch.tensor(eps_paper, dtype=torch.float64), rtol=1e-9, atol=0)
    torch.testing.assert_close(ours.norm(), torch.tensor(eps_paper, dtype=torch.float64), rtol=1e-9, atol=0)
    # per example: ours gives each example exactly eps; the paper's root-mean-square norm is eps ...
    torch.testing.assert_close(our_norms, torch.full((b,), eps, dtype=torch.float64), rtol=1e-9, atol=0)
    torch.testing.assert_close(
        paper_norms.pow(2).mean().sqrt(), torch.tensor(eps, dtype=torch.float64), rtol=1e-9, atol=0
    )
    # ... but it spends the budget unevenly, which no per-example budget reproduces
    assert float(paper_norms.max() - paper_norms.min()) > 0.05 * eps
    # without the conversion every example would get the whole batch's budget
    assert (
        float(PGD(model, epsilon=eps_paper, steps=20, random_start=False)(x, target=y).sub(x).norm()) > 2.9 * eps_paper
    )


@pytest.mark.parametrize("method", ["gradient_norm", "pgd", "noise"])
@pytest.mark.parametrize("batch_size", [1, 7, 128, 512])
def test_to_paper_strength_inverts_from_paper_strength(method, batch_size):
    for value in (0.0, 1e-5, 0.3, 7.0, 1e4):
        there = from_paper_strength(method, value, batch_size=batch_size)
        back = to_paper_strength(method, there, batch_size=batch_size)
        assert back == pytest.approx(value, rel=1e-12, abs=0)


def test_exact_conversions_and_the_papers_grids():
    assert from_paper_strength("gradient_norm", 1e-3, batch_size=128) == pytest.approx(1e-3 * 1e5 / 128**2, rel=1e-15)
    assert from_paper_strength("pgd", 2.0, batch_size=16) == pytest.approx(0.5, rel=1e-15)
    assert from_paper_strength("noise", 0.25, batch_size=16) == 0.25
    assert PAPER_BATCH_SIZE == 128
    assert {k: len(v) for k, v in PAPER_GRIDS.items()} == {"gradient_norm": 30, "pgd": 30, "noise": 30}
    assert PAPER_GRIDS["gradient_norm"][0] == pytest.approx(1e-5) and PAPER_GRIDS["gradient_norm"][-1] == pytest.approx(
        1e2
    )
    assert PAPER_GRIDS["pgd"][0] == pytest.approx(1e-5) and PAPER_GRIDS["pgd"][-1] == pytest.approx(1e4)
    assert PAPER_GRIDS["noise"][0] == pytest.approx(1e-3) and PAPER_GRIDS["noise"][-1] == pytest.approx(1e2)
    assert all(
        math.isclose(b / a, 10 ** (7 / 29), rel_tol=1e-9)
        for a, b in zip(PAPER_GRIDS["gradient_norm"], PAPER_GRIDS["gradient_norm"][1:])
    )


def test_noise_strengths_are_per_example_in_both():
    # the released NoiseRegularizedLoss: sum over the batch of squared logit changes / B == our mean
    model, (x, y) = _net(0), _batch(0, 6)
    torch.manual_seed(5)
    ours = NoiseConsistencyLoss(lam=0.3, sigma=0.1)(model, x, y)
    torch.manual_seed(5)
    noise = torch.normal(mean=torch.zeros_like(x), std=0.1)
    out = model(x)
    paper = F.cross_entropy(out, y) + 0.3 * (out - model(x + noise)).pow(2).sum() / 6
    torch.testing.assert_close(ours, paper, rtol=1e-12, atol=0)
    torch.manual_seed(6)
    ours = RandomizedSmoothingLoss(sigma=0.1)(model, x, y)
    torch.manual_seed(6)
    paper = F.cross_entropy(model(x + torch.normal(mean=torch.zeros_like(x), std=0.1)), y)
    torch.testing.assert_close(ours, paper, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "gnorm", "strength": 1.0, "batch_size": 8}, ValueError, "Expected `method` to be one of"),
        (
            {"method": "pgd", "strength": -1.0, "batch_size": 8},
            ValueError,
            "Expected `strength` to be a finite number >= 0 but got -1.0",
        ),
        (
            {"method": "pgd", "strength": float("nan"), "batch_size": 8},
            ValueError,
            "Expected `strength` to be a finite",
        ),
        ({"method": "pgd", "strength": 1.0, "batch_size": 0}, ValueError, "Expected `batch_size` to be >= 1 but got 0"),
        ({"method": "pgd", "strength": 1.0, "batch_size": 8.0}, TypeError, "Expected `batch_size` to be an int"),
        ({"method": "pgd", "strength": "1", "batch_size": 8}, TypeError, "Expected `strength` to be a number"),
        (
            {"method": "gradient_norm", "strength": 1.0, "batch_size": 8, "code_scale": 0.0},
            ValueError,
            "Expected `code_scale`",
        ),
    ],
)
def test_bad_conversions_are_refused(kwargs, error, match):
    kwargs = dict(kwargs)
    method, strength = kwargs.pop("method"), kwargs.pop("strength")
    for fn in (from_paper_strength, to_paper_strength):
        with pytest.raises(error, match=match):
            fn(method, strength, **kwargs)
