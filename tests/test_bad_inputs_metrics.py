"""Bad and unusual inputs for every public metric and ManifoldGradient.

Each case asserts one of: a ``ValueError``/``TypeError`` whose message names the argument; a
warning (with the value it warns about); or the exactly right answer. After every case, also one
that raised, the model's mode, parameters, buffers (BatchNorm statistics), ``requires_grad``,
``.grad`` and hooks are unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags import ManifoldGradient
from captum_pags.manifold import LinearSubspace, TangentSpace
from captum_pags.metrics import (
    AlignmentAccumulator,
    RobustnessAccumulator,
    TangentAlignmentAccumulator,
    manifold_robustness,
    perceptual_alignment,
    random_tangent_alignment,
    score_alignment,
    tangent_alignment,
)
from captum_pags.scores import GaussianMixtureScore, ScoreModel


class Net(nn.Module):
    """BatchNorm and Dropout, in train mode, with a frozen layer, a stale .grad and a hook."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(36, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 3)
        )

    def forward(self, x, *args):
        return self.net(x)


@pytest.fixture
def ctx():
    torch.manual_seed(0)
    net = Net().train()
    with torch.no_grad():
        net.net[2].running_mean.normal_()
    net.net[1].weight.requires_grad_(False)
    net.net[-1].weight.grad = torch.ones_like(net.net[-1].weight)
    net.net[3].register_forward_hook(lambda *a: None)
    return {
        "net": net,
        "space": LinearSubspace(torch.randn(4, 36), input_shape=(1, 6, 6)),
        "mix": GaussianMixtureScore(torch.randn(3, 1, 6, 6), torch.eye(36)),
        "x": torch.randn(4, 1, 6, 6),
        "y": torch.tensor([0, 1, 2, 0]),
        "a": torch.randn(4, 1, 6, 6),
        "big": torch.randn(3, 1, 16, 16),
    }


@dataclass
class Raises:
    error: type
    match: str  # must name the argument in backticks


@dataclass
class Warns:
    match: str
    check: Callable[[Any], bool]


@dataclass
class Equals:
    reference: Callable[[dict], Any]


def _nan(t):
    return t.clone().fill_(math.nan)


NAN = math.nan
CASES: list[tuple[str, Callable[[dict], Any], Any]] = []


def case(name, fn, expect):
    CASES.append((name, fn, expect))


# ------------------------------------------------------------------------------------ score_alignment
sa = score_alignment
case("sa-shape", lambda c: sa(c["a"], c["a"][:, :, :5]), Raises(ValueError, "`attributions` and `scores`"))
case("sa-list", lambda c: sa([c["a"]], c["a"]), Raises(TypeError, "`attributions`"))
case("sa-ntensors", lambda c: sa((c["a"], c["a"]), (c["a"],)), Raises(ValueError, "`attributions` and `scores`"))
case("sa-nan", lambda c: sa(_nan(c["a"]), c["a"]), Raises(ValueError, "`attributions` to hold finite"))
case("sa-inf-scores", lambda c: sa(c["a"], c["a"] / 0), Raises(ValueError, "`scores` to hold finite"))
case("sa-empty", lambda c: sa(c["a"][:0], c["a"][:0]), Raises(ValueError, "`attributions`.*empty"))
case("sa-0d", lambda c: sa(torch.tensor(1.0), torch.tensor(1.0)), Raises(ValueError, "`attributions`.*0-d"))
case("sa-bool", lambda c: sa(c["a"] > 0, c["a"] > 0), Raises(TypeError, "`attributions` to hold real numbers"))
case("sa-complex", lambda c: sa(c["a"] * 1j, c["a"] * 1j), Raises(TypeError, "`attributions` to hold real"))
case("sa-method", lambda c: sa(c["a"], c["a"], "l2"), Raises(ValueError, "`method`"))
case("sa-method-none", lambda c: sa(c["a"], c["a"], None), Raises(ValueError, "`method`"))
case(
    "sa-chunk0", lambda c: sa(c["a"], c["a"], max_examples_per_batch=0), Raises(ValueError, "`max_examples_per_batch`")
)
case("sa-chunk-neg", lambda c: sa(c["a"], c["a"], max_examples_per_batch=-2), Raises(ValueError, "`max_examples_per"))
case("sa-chunk-float", lambda c: sa(c["a"], c["a"], max_examples_per_batch=1.5), Raises(TypeError, "`max_examples_per"))
case("sa-chunk-bool", lambda c: sa(c["a"], c["a"], max_examples_per_batch=True), Raises(TypeError, "`max_examples_per"))
case("sa-lpips-net-cos", lambda c: sa(c["a"], c["a"], lpips_net=lambda u, v: u), Raises(ValueError, "`lpips_net`"))
case(
    "sa-lpips-flat",
    lambda c: sa(c["a"].flatten(1), c["a"].flatten(1), "lpips", lpips_net=lambda u, v: u[:, 0, 0, 0]),
    Raises(ValueError, "`attributions`"),
)
case("sa-ssim-small", lambda c: sa(c["a"], c["a"], "ssim"), Raises(ValueError, "method='ssim'"))
case(
    "sa-ssim-2ch",
    lambda c: sa(c["big"].expand(-1, 2, -1, -1), c["big"].expand(-1, 2, -1, -1), "ssim"),
    Raises(ValueError, "`attributions`"),
)
case(
    "sa-zero",
    lambda c: sa(c["a"] * torch.tensor([0.0, 1, 1, 1]).reshape(4, 1, 1, 1), c["a"]),
    Warns("1 of 4", lambda out: bool(torch.isnan(out[0])) and not bool(torch.isnan(out[1:]).any())),
)
case("sa-ssim-zero", lambda c: sa(c["big"] * 0, c["big"], "ssim"), Warns("3 of 3", lambda out: bool(out.isnan().all())))
case(
    "sa-pearson-const",
    lambda c: sa(torch.ones(2, 5), torch.randn(2, 5), "pearson"),
    Warns("constant map", lambda out: bool(out.isnan().all())),
)
for _dt in (torch.int64, torch.int32, torch.uint8):
    case(
        f"sa-{_dt}",
        lambda c, dt=_dt: sa((c["a"] * 50).abs().to(dt), c["a"]),
        Equals(lambda c, dt=_dt: sa((c["a"] * 50).abs().to(dt).float(), c["a"])),
    )
for _dt in (torch.bfloat16, torch.float16):
    case(
        f"sa-{_dt}",
        lambda c, dt=_dt: sa(c["a"].to(dt), c["a"].to(dt)),
        Equals(lambda c, dt=_dt: sa(c["a"].to(dt).float(), c["a"].to(dt).float())),
    )
    case(
        f"sa-ssim-{_dt}",
        lambda c, dt=_dt: sa(c["big"].to(dt), c["big"].flip(3).to(dt), "ssim"),
        Equals(lambda c, dt=_dt: sa(c["big"].to(dt).float(), c["big"].flip(3).to(dt).float(), "ssim")),
    )
case(
    "sa-uint8-no-wrap",
    lambda c: sa(torch.tensor([[200, 100]], dtype=torch.uint8), torch.tensor([[2.0, 1.0]])),
    Equals(lambda c: torch.tensor([1.0])),
)


# ------------------------------------------------------------------------------------ perceptual_alignment
def pa(c, **kw):
    args = {"model": c["net"], "inputs": c["x"], "score_model": c["mix"], "sigma": 0.5, "target": c["y"]}
    args.update(kw)
    return perceptual_alignment(**args)


case("pa-int-inputs", lambda c: pa(c, inputs=(c["x"] * 10).long()), Raises(TypeError, "`inputs`"))
case("pa-uint8-inputs", lambda c: pa(c, inputs=(c["x"].abs() * 10).to(torch.uint8)), Raises(TypeError, "`inputs`"))
for _dt in (torch.bfloat16, torch.float16, torch.float64):
    case(
        f"pa-{_dt}",
        lambda c, dt=_dt: pa(c, inputs=c["x"].to(dt)),
        Raises(TypeError, "`inputs` to have the model's dtype"),
    )
case("pa-nan-inputs", lambda c: pa(c, inputs=_nan(c["x"])), Raises(ValueError, "`inputs` to hold finite"))
case("pa-inf-inputs", lambda c: pa(c, inputs=c["x"] / 0), Raises(ValueError, "`inputs` to hold finite"))
case("pa-empty", lambda c: pa(c, inputs=c["x"][:0], target=c["y"][:0]), Raises(ValueError, "`inputs`.*empty"))
case("pa-list-inputs", lambda c: pa(c, inputs=[c["x"]]), Raises(TypeError, "`inputs`"))
case("pa-shape", lambda c: pa(c, inputs=torch.randn(4, 36)), Raises(ValueError, "per-example shape"))
case("pa-target-none", lambda c: pa(c, target=None), Raises(ValueError, "`target`"))
case(
    "pa-target-frac", lambda c: pa(c, target=torch.tensor([0.0, 1.5, 2, 0])), Raises(ValueError, "`target`.*fractional")
)
case("pa-target-nan", lambda c: pa(c, target=torch.tensor([0.0, NAN, 2, 0])), Raises(ValueError, "`target`"))
case("pa-target-range", lambda c: pa(c, target=[0, 1, 3, 0]), Raises(ValueError, r"`target` labels in \[0, 3\)"))
case("pa-target-neg", lambda c: pa(c, target=-1), Raises(ValueError, "`target`"))
case("pa-target-len", lambda c: pa(c, target=[0, 1]), Raises(ValueError, "`target`"))
case("pa-target-bool", lambda c: pa(c, target=True), Raises(TypeError, "`target`"))
case("pa-target-str", lambda c: pa(c, target="predicted"), Raises(TypeError, "`target`"))
case("pa-target-float-int", lambda c: pa(c, target=torch.tensor([0.0, 1, 2, 0])), Equals(lambda c: pa(c)))
case("pa-sigma-neg", lambda c: pa(c, sigma=-1.0), Raises(ValueError, "`sigma`"))
case("pa-sigma-nan", lambda c: pa(c, sigma=NAN), Raises(ValueError, "`sigma`"))
case("pa-sigma-str", lambda c: pa(c, sigma="0.5"), Raises(TypeError, "`sigma`"))
case("pa-gradient", lambda c: pa(c, gradient="softmax"), Raises(ValueError, "`gradient`"))
case("pa-score", lambda c: pa(c, score="joint"), Raises(ValueError, "`score`"))
case("pa-gradient-target", lambda c: pa(c, gradient_target="argmax"), Raises(ValueError, "`gradient_target`"))
case("pa-method", lambda c: pa(c, method="l1"), Raises(ValueError, "`method`"))
case("pa-score-model", lambda c: pa(c, score_model=lambda z: z), Raises(TypeError, "`score_model`"))
case("pa-model", lambda c: pa(c, model=3), Raises(TypeError, "`model`"))
case("pa-attribution", lambda c: pa(c, attribution=lambda z: z), Raises(TypeError, "`attribution`"))
case("pa-chunk", lambda c: pa(c, max_examples_per_batch=0), Raises(ValueError, "`max_examples_per_batch`"))
case(
    "pa-model-1d",
    lambda c: pa(c, model=lambda z: z.flatten(1).sum(1)),
    Raises(ValueError, r"`model` to return \(N, C\)"),
)
case(
    "pa-model-nan-predicted",
    lambda c: pa(c, model=lambda z: z.flatten(1)[:, :3] * NAN, gradient_target="predicted"),
    Raises(ValueError, "`target`='predicted'"),
)
case(
    "pa-uncond-model-bayes",
    lambda c: pa(c, score_model=_Unconditional()),
    Raises(ValueError, "class-conditional `score_model`"),
)
case(
    "pa-uncond-model-cond",
    lambda c: pa(c, score_model=_Unconditional(), score="conditional"),
    Raises(ValueError, "`score_model`"),
)
case(
    "pa-uncond-model-released",
    lambda c: pa(c, score_model=_Unconditional(), target=None, gradient="logit_sum", score="unconditional"),
    Equals(lambda c: _released_reference(c)),
)
case("pa-cond-only-bayes", lambda c: pa(c, score_model=_conditional_only(c)), Raises(ValueError, "`score_model`.*null"))
case(
    "pa-cond-only-uncond",
    lambda c: pa(c, score_model=_conditional_only(c), score="unconditional"),
    Raises(ValueError, "`score_model`"),
)
case(
    "pa-cond-only-cond",
    lambda c: pa(c, score_model=_conditional_only(c), score="conditional"),
    Equals(lambda c: pa(c, score="conditional")),
)
case("pa-train-mode", lambda c: pa(c), Equals(lambda c: _in_eval(c["net"], lambda: pa(c))))
case("pa-chunked", lambda c: pa(c, max_examples_per_batch=3), Equals(lambda c: pa(c)))


class _Unconditional(ScoreModel):
    """The standard normal smoothed at sigma: score -x / (1 + sigma^2), no classes."""

    input_shape = torch.Size((1, 6, 6))

    def _score(self, inputs, sigma, target):
        return -inputs / (1 + sigma**2)


def _released_reference(c):
    """Written out: the logit-sum gradient of the eval-mode net against -x / (1 + 0.5**2)."""
    x, net = c["x"], c["net"]
    net.eval()
    try:
        xg = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(net(xg).sum(), xg)
    finally:
        net.train()
    return score_alignment(g, -x / 1.25)


def _conditional_only(c):
    """The same mixture, declared to have no unconditional score (a model trained without a null label)."""
    model = copy.copy(c["mix"])
    model.supports_unconditional = False
    return model


class _Shapeless(TangentSpace):
    """A tangent space of any input shape (the first coordinate): D is unknown without inputs."""

    @property
    def dim(self):
        return 1

    def _basis(self, inputs):
        x = inputs[0].flatten(1)
        return torch.nn.functional.one_hot(torch.zeros(x.shape[0], dtype=torch.long), x.shape[1]).to(x)[:, None]


def _full_space_alignment():
    """A full-dimensional tangent space: every map lies in it; rounding never lifts a value above 1."""
    g = torch.randn(500, 36, generator=torch.Generator().manual_seed(3))
    out = tangent_alignment(g, g, LinearSubspace(torch.randn(36, 36, generator=torch.Generator().manual_seed(4))))
    assert bool((out <= 1.0).all())
    return out


def _accumulate_zeros(a):
    acc = AlignmentAccumulator()
    acc.update(a * 0, a)
    return acc.compute()


def _in_eval(net, fn):
    net.eval()
    try:
        return fn()
    finally:
        net.train()


# ------------------------------------------------------------------------------------ tangent alignment
ta = tangent_alignment
case("ta-shape", lambda c: ta(c["a"][:, :, :5], c["x"], c["space"]), Raises(ValueError, "`attributions`"))
case("ta-batch", lambda c: ta(c["a"][:2], c["x"], c["space"]), Raises(ValueError, "`attributions`"))
case("ta-inputs-shape", lambda c: ta(c["a"], torch.randn(4, 1, 5, 5), c["space"]), Raises(ValueError, "`inputs`"))
case("ta-space", lambda c: ta(c["a"], c["x"], torch.eye(36)), Raises(TypeError, "`tangent_space`.*but got Tensor"))
case("ta-nan", lambda c: ta(_nan(c["a"]), c["x"], c["space"]), Raises(ValueError, "`attributions` to hold finite"))
case("ta-nan-inputs", lambda c: ta(c["a"], _nan(c["x"]), c["space"]), Raises(ValueError, "`inputs`"))
case("ta-empty", lambda c: ta(c["a"][:0], c["x"][:0], c["space"]), Raises(ValueError, "empty"))
case("ta-chunk", lambda c: ta(c["a"], c["x"], c["space"], max_examples_per_batch=0), Raises(ValueError, "`max_exam"))
case(
    "ta-zero",
    lambda c: ta(c["a"] * 0, c["x"], c["space"]),
    Warns("4 of 4 example.*all-zero attribution", lambda out: bool(out.isnan().all())),
)
case(
    "ta-int-attr",
    lambda c: ta((c["a"] * 9).long(), c["x"], c["space"]),
    Equals(lambda c: ta((c["a"] * 9).long().float(), c["x"], c["space"])),
)
case(
    "ta-uint8-attr",
    lambda c: ta(torch.full((1, 1, 6, 6), 200, dtype=torch.uint8), c["x"][:1], c["space"]),
    Equals(lambda c: ta(torch.ones(1, 1, 6, 6), c["x"][:1], c["space"])),
)
case(
    "ta-bf16",
    lambda c: ta(c["a"].bfloat16(), c["x"], c["space"]),
    Equals(lambda c: ta(c["a"].bfloat16().float(), c["x"], c["space"])),
)
case(
    "ta-full-space",
    lambda c: ta(c["a"], c["x"], LinearSubspace(torch.randn(36, 36), input_shape=(1, 6, 6))),
    Equals(lambda c: torch.ones(4)),
)
case(
    "ta-rank-deficient",
    lambda c: ta(c["a"], c["x"], LinearSubspace(torch.ones(3, 36), input_shape=(1, 6, 6))),
    Raises(ValueError, "`basis`"),
)
case("rta-space", lambda c: random_tangent_alignment(torch.eye(3)), Raises(TypeError, "`tangent_space`.*got Tensor"))
case(
    "rta-no-shape",
    lambda c: random_tangent_alignment(_Shapeless()),
    Raises(ValueError, "`inputs` for a tangent space without a fixed `input_shape`"),
)
case(
    "rta-one-example",
    lambda c: random_tangent_alignment(c["space"], c["x"][:1]),
    Equals(lambda c: torch.full((1,), 1 / 3)),
)
case("ta-full-space-many", lambda c: _full_space_alignment(), Equals(lambda c: torch.ones(500)))
case("rta-inputs", lambda c: random_tangent_alignment(c["space"], torch.randn(2, 5)), Raises(ValueError, "`inputs`"))
case("rta-value", lambda c: random_tangent_alignment(c["space"], c["x"]), Equals(lambda c: torch.full((4,), 1 / 3)))
case("taa-space", lambda c: TangentAlignmentAccumulator(3), Raises(TypeError, "`tangent_space`"))
case(
    "taa-chunk",
    lambda c: TangentAlignmentAccumulator(c["space"], max_examples_per_batch=-1),
    Raises(ValueError, "`max"),
)
case(
    "aa-all-undefined",
    lambda c: _accumulate_zeros(c["a"]),
    Warns("4 of 4", lambda summary: bool(summary.mean.isnan()) and summary.count == 0 and summary.num_undefined == 4),
)
case("aa-method", lambda c: AlignmentAccumulator("dot"), Raises(ValueError, "`method`"))
case(
    "aa-update-shape", lambda c: AlignmentAccumulator().update(c["a"], c["a"][:2]), Raises(ValueError, "`attributions`")
)


# ------------------------------------------------------------------------------------ manifold_robustness
def mr(c, **kw):
    args = {
        "forward_func": c["net"],
        "inputs": c["x"],
        "tangent_space": c["space"],
        "epsilons": [0.1, 0.5],
        "n_samples": 2,
    }
    args.update(kw)
    return manifold_robustness(**args)


case("mr-int", lambda c: mr(c, inputs=(c["x"] * 10).long()), Raises(TypeError, "`inputs`"))
case("mr-uint8", lambda c: mr(c, inputs=(c["x"].abs() * 10).to(torch.uint8)), Raises(TypeError, "`inputs`"))
for _dt in (torch.bfloat16, torch.float16, torch.float64):
    case(f"mr-{_dt}", lambda c, dt=_dt: mr(c, inputs=c["x"].to(dt)), Raises(TypeError, "`inputs` to have the model's"))
case("mr-nan", lambda c: mr(c, inputs=_nan(c["x"])), Raises(ValueError, "`inputs`"))
case("mr-empty", lambda c: mr(c, inputs=c["x"][:0]), Raises(ValueError, "`inputs`"))
case("mr-shape", lambda c: mr(c, inputs=torch.randn(4, 1, 5, 5)), Raises(ValueError, "`inputs`"))
case("mr-eps-neg", lambda c: mr(c, epsilons=[0.1, -1]), Raises(ValueError, "`epsilons`"))
case("mr-eps-zero", lambda c: mr(c, epsilons=0), Raises(ValueError, "`epsilons`"))
case("mr-eps-nan", lambda c: mr(c, epsilons=torch.tensor([NAN])), Raises(ValueError, "`epsilons`"))
case("mr-eps-empty", lambda c: mr(c, epsilons=[]), Raises(ValueError, "`epsilons`"))
case("mr-eps-str", lambda c: mr(c, epsilons="0.1"), Raises(TypeError, "`epsilons`"))
case("mr-samples0", lambda c: mr(c, n_samples=0), Raises(ValueError, "`n_samples`"))
case("mr-samples-float", lambda c: mr(c, n_samples=2.0), Raises(TypeError, "`n_samples`"))
case("mr-distance", lambda c: mr(c, distance="l2"), Raises(ValueError, "`distance`"))
case("mr-chunk", lambda c: mr(c, max_examples_per_batch=0), Raises(ValueError, "`max_examples_per_batch`"))
case("mr-seed", lambda c: mr(c, seed=1.5), Raises(TypeError, "`seed`"))
case("mr-space", lambda c: mr(c, tangent_space=torch.eye(36)), Raises(TypeError, "`tangent_space`"))
case("mr-func", lambda c: mr(c, forward_func=3), Raises(TypeError, "`forward_func`"))
case("mr-func-1d", lambda c: mr(c, forward_func=lambda z: z.flatten(1).sum(1)), Raises(ValueError, "`forward_func`"))
case(
    "mr-func-nan",
    lambda c: mr(c, forward_func=lambda z: z.flatten(1)[:, :3] * NAN),
    Raises(ValueError, "`forward_func`"),
)
case(
    "mr-args-batch",
    lambda c: mr(c, additional_forward_args=(torch.ones(3, 2),)),
    Raises(ValueError, "`additional_forward_args`"),
)
case(
    "mr-full-space",
    lambda c: mr(c, tangent_space=LinearSubspace(torch.randn(36, 36), input_shape=(1, 6, 6))),
    Warns("no tangent or no orthogonal part", lambda r: bool(r.off.isnan().all()) and not bool(r.on.isnan().any())),
)
case(
    "mr-perturbed-nan",
    lambda c: mr(c, forward_func=_nan_when_far),
    Warns("non-finite class scores", lambda r: bool(r.on[:, 1].isnan().all()) and not bool(r.on[:, 0].isnan().any())),
)
case("mr-train-mode", lambda c: mr(c), Equals(lambda c: _in_eval(c["net"], lambda: mr(c))))
case("mr-chunked", lambda c: mr(c, max_examples_per_batch=3), Equals(lambda c: mr(c)))
case("ra-eps", lambda c: RobustnessAccumulator(c["net"], c["space"], [-1]), Raises(ValueError, "`epsilons`"))
case("ra-seed", lambda c: RobustnessAccumulator(c["net"], c["space"], [0.1], seed=None), Raises(TypeError, "`seed`"))
case(
    "ra-dtype",
    lambda c: RobustnessAccumulator(c["net"], c["space"], [0.1]).update(c["x"].double()),
    Raises(TypeError, "`inputs`"),
)


def _nan_when_far(z):
    # NaN scores only for inputs moved by the larger epsilon (0.5) from a clean input: never averaged away
    out = z.flatten(1)[:, :3] * 1.0
    far = torch.cdist(z.flatten(1), _nan_when_far.clean.flatten(1)).amin(1, keepdim=True) > 0.3
    return torch.where(far, out * NAN, out)


# ------------------------------------------------------------------------------------ ManifoldGradient
def mg(c, **kw):
    inputs = kw.pop("inputs", c["x"])
    return ManifoldGradient(c["net"], c["space"]).attribute(inputs, **{"target": c["y"], **kw})


case("mg-int", lambda c: mg(c, inputs=(c["x"] * 10).long()), Raises(TypeError, "`inputs`"))
case("mg-uint8", lambda c: mg(c, inputs=(c["x"].abs() * 10).to(torch.uint8)), Raises(TypeError, "`inputs`"))
for _dt in (torch.bfloat16, torch.float16, torch.float64):
    case(f"mg-{_dt}", lambda c, dt=_dt: mg(c, inputs=c["x"].to(dt)), Raises(TypeError, "`inputs` to have the model's"))
case("mg-nan", lambda c: mg(c, inputs=_nan(c["x"])), Raises(ValueError, "`inputs`"))
case("mg-empty", lambda c: mg(c, inputs=c["x"][:0], target=None), Raises(ValueError, "`inputs`"))
case("mg-list", lambda c: mg(c, inputs=[c["x"]]), Raises(TypeError, "`inputs`"))
case("mg-shape", lambda c: mg(c, inputs=torch.randn(4, 1, 5, 5)), Raises(ValueError, "`inputs`"))
case("mg-target-frac", lambda c: mg(c, target=torch.tensor([0.0, 1.5, 2, 0])), Raises(ValueError, "`target`"))
case("mg-target-nan", lambda c: mg(c, target=torch.tensor([0.0, NAN, 2, 0])), Raises(ValueError, "`target`"))
case("mg-target-range", lambda c: mg(c, target=3), Raises(ValueError, "`target`"))
case("mg-target-neg", lambda c: mg(c, target=[0, -1, 0, 0]), Raises(ValueError, "`target`"))
case("mg-target-len", lambda c: mg(c, target=[0, 1]), Raises(ValueError, "`target`"))
case("mg-target-bool", lambda c: mg(c, target=True), Raises(TypeError, "`target`"))
case("mg-target-float-int", lambda c: mg(c, target=torch.tensor([0.0, 1, 2, 0])), Equals(lambda c: mg(c)))
case("mg-target-tuple", lambda c: mg(c, target=(1,)), Equals(lambda c: mg(c, target=1)))
case("mg-target-column", lambda c: mg(c, target=c["y"][:, None]), Equals(lambda c: mg(c)))
case("mg-component", lambda c: mg(c, component="tangent"), Raises(ValueError, "`component`"))
case("mg-abs", lambda c: mg(c, abs="yes"), Raises(TypeError, "`abs`"))
case("mg-space", lambda c: ManifoldGradient(c["net"], "space"), Raises(TypeError, "`tangent_space`"))
case("mg-func", lambda c: ManifoldGradient(3, c["space"]), Raises(TypeError, "`forward_func`"))
case("mg-train-mode", lambda c: mg(c), Equals(lambda c: _in_eval(c["net"], lambda: mg(c))))
case(
    "mg-full",
    lambda c: mg(c, component="full", abs=True),
    Equals(lambda c: _in_eval(c["net"], lambda: mg(c, component="on") + mg(c, component="off")).abs()),
)


def _snapshot(model):
    snap = model_snapshot(model)
    snap["buffers"] = {k: v.clone() for k, v in model.named_buffers()}
    return snap


def _assert_unchanged(model, snap):
    assert_model_unchanged(model, snap)
    for k, v in model.named_buffers():
        torch.testing.assert_close(v, snap["buffers"][k], rtol=0, atol=0)


@pytest.mark.parametrize(("name", "fn", "expect"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_case(ctx, name, fn, expect):
    net = ctx["net"]
    _nan_when_far.clean = ctx["x"]
    before = _snapshot(net)
    if isinstance(expect, Raises):
        with pytest.raises(expect.error, match=expect.match) as info:
            fn(ctx)
        assert "`" in str(info.value) or "method=" in str(info.value), "the message names no argument"
    elif isinstance(expect, Warns):
        with pytest.warns(RuntimeWarning, match=expect.match):
            out = fn(ctx)
        assert expect.check(out)
    else:
        out = fn(ctx)
        _assert_unchanged(net, before)
        ref = expect.reference(ctx)
        if hasattr(out, "on"):
            for field in ("on", "off"):
                torch.testing.assert_close(getattr(out, field), getattr(ref, field), rtol=1e-6, atol=1e-7)
        else:
            torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7, equal_nan=False)
    _assert_unchanged(net, before)
