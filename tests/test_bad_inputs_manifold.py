"""Bad and unusual inputs for every public tangent class and linear-algebra function.

Each case asserts one of: a ``ValueError``/``TypeError`` whose message names the argument; a
warning; or the exactly right answer (compared with a float64 reference). After every case, also
one that raised, the networks involved (a decoder with BatchNorm, a denoiser with BatchNorm) have
unchanged mode, parameters, buffers, ``requires_grad``, ``.grad`` and hooks.

Run as a script to print the counts of cases tried, refused, warned and answered right.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags.manifold import (
    CachedTangent,
    DecoderTangent,
    DenoiserTangent,
    LinearSubspace,
    LocalPCATangent,
    intrinsic_dimension,
    orthonormal_rows,
    principal_angles,
    project_onto_rows,
)
from captum_pags.scores import GaussianMixtureScore


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 12))

    def forward(self, z):
        return self.net(z)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 8), nn.Dropout(0.3), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x.flatten(1))


class Denoiser(nn.Module):
    """D(x, sigma) ~ projection onto a plane, behind BatchNorm and Dropout (mode matters)."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(12)
        self.drop = nn.Dropout(0.5)
        self.scale = nn.Parameter(torch.ones(12))

    def forward(self, x, sigma):
        h = self.drop(self.norm(x.flatten(1))) * self.scale
        mask = torch.zeros(12, dtype=h.dtype)
        mask[:3] = 1.0
        return (h * mask + 1e-3 * h).reshape(x.shape)


def _prepared(module: nn.Module) -> nn.Module:
    module.train()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    params = list(module.parameters())
    params[0].grad = torch.ones_like(params[0])
    params[-1].requires_grad_(False)
    module.register_forward_hook(lambda *a: None)
    return module


def snapshot(module: nn.Module) -> dict:
    snap = model_snapshot(module)
    snap["buffers"] = [b.detach().clone() for b in module.buffers()]
    return snap


def assert_unchanged(module: nn.Module, before: dict) -> None:
    assert_model_unchanged(module, before)
    for a, b in zip(module.buffers(), before["buffers"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def make_context() -> dict:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    plane = torch.randn(3, 12, generator=gen, dtype=torch.float64)
    decoder, encoder, denoiser = _prepared(Decoder()), _prepared(Encoder()), _prepared(Denoiser())
    return {
        "plane": plane,
        "space": LinearSubspace(plane),
        "x": torch.randn(4, 12, generator=gen),
        "v": torch.randn(4, 12, generator=gen),
        "ints": torch.randint(0, 255, (4, 12), generator=gen),
        "ref": torch.randn(60, 12, generator=gen, dtype=torch.float64),
        "decoder": decoder,
        "encoder": encoder,
        "denoiser": denoiser,
        "mix": GaussianMixtureScore(torch.randn(2, 12, generator=gen), torch.eye(12)),
        "networks": [decoder, encoder, denoiser],
    }


@dataclass
class Raises:
    error: type
    match: str  # names the argument in backticks


@dataclass
class Warns:
    match: str
    check: Callable[[Any, dict], bool]


@dataclass
class Equals:
    reference: Callable[[dict], Any]
    atol: float = 1e-5


CASES: list[tuple[str, Callable[[dict], Any], Any]] = []


def case(name: str, fn: Callable[[dict], Any], expect: Any) -> None:
    CASES.append((name, fn, expect))


def _nan(t):
    return t.clone().fill_(math.nan)


def _proj64(c, v):
    """Float64 reference projection onto the plane (explicit projector)."""
    q = torch.linalg.qr(c["plane"].T).Q
    return v.double().reshape(v.shape[0], -1) @ (q @ q.T)


def _bf(t):
    return t.to(torch.bfloat16)


# ------------------------------------------------------------------------------- LinearSubspace(basis)
LS = LinearSubspace
case("ls-list", lambda c: LS([[1.0, 0.0]]), Raises(TypeError, "`basis` to be a torch.Tensor"))
case("ls-1d", lambda c: LS(torch.ones(3)), Raises(ValueError, "`basis` to have shape"))
case("ls-0rows", lambda c: LS(torch.ones(0, 3)), Raises(ValueError, "`basis` to have shape"))
case("ls-too-many", lambda c: LS(torch.randn(5, 3)), Raises(ValueError, "`basis` to have at most D=3"))
case("ls-nan", lambda c: LS(torch.tensor([[math.nan, 1.0]])), Raises(ValueError, "`basis` to hold finite"))
case("ls-inf", lambda c: LS(torch.tensor([[math.inf, 1.0]])), Raises(ValueError, "`basis` to hold finite"))
case("ls-complex", lambda c: LS(torch.ones(1, 3, dtype=torch.complex64)), Raises(TypeError, "`basis` to be a real"))
case("ls-rank", lambda c: LS(torch.tensor([[1.0, 0.0], [2.0, 0.0]])), Raises(ValueError, "`basis` to have full rank"))
case("ls-zero", lambda c: LS(torch.zeros(2, 4)), Raises(ValueError, "`basis` to have full rank"))
case("ls-shape", lambda c: LS(torch.randn(2, 4), input_shape=(5,)), Raises(ValueError, "`basis` to have D=5"))
case(
    "ls-int-basis",
    lambda c: LS(torch.tensor([[3, 4, 0]])).projection_matrix(),
    Equals(lambda c: torch.tensor([[9.0, 12, 0], [12, 16, 0], [0, 0, 0]], dtype=torch.float64) / 25, 1e-12),
)
case(
    "ls-uint8-basis",
    lambda c: LS(torch.tensor([[200, 250, 0]], dtype=torch.uint8)).projection_matrix()[0, 1],
    Equals(lambda c: torch.tensor(200.0 * 250 / (200**2 + 250**2), dtype=torch.float64), 1e-12),
)
for _dt in (torch.bfloat16, torch.float16):
    case(
        f"ls-{_dt}-basis",
        lambda c, dt=_dt: LS(c["plane"].to(dt)).rows @ LS(c["plane"].to(dt)).rows.T,
        Equals(lambda c: torch.eye(3, dtype=torch.float64), 1e-12),
    )

# ------------------------------------------------------------------------------- projections
case("proj-shape", lambda c: c["space"].project(torch.zeros(4, 11), c["v"]), Raises(ValueError, "`inputs` to have"))
case("proj-empty", lambda c: c["space"].basis(torch.zeros(0, 12)), Raises(ValueError, "`inputs`.*empty"))
case("proj-0d", lambda c: c["space"].basis(torch.tensor(1.0)), Raises(ValueError, "`inputs` to have a batch"))
case("proj-nan", lambda c: c["space"].basis(_nan(c["x"])), Raises(ValueError, "`inputs` to hold finite"))
case("proj-inf", lambda c: c["space"].basis(c["x"] / 0), Raises(ValueError, "`inputs` to hold finite"))
case("proj-list", lambda c: c["space"].basis([c["x"]]), Raises(TypeError, "`inputs` to be a torch.Tensor"))
case("proj-complex", lambda c: c["space"].basis(c["x"] * 1j), Raises(TypeError, "`inputs` to be a real"))
case("proj-meta", lambda c: c["space"].basis(c["x"].to("meta")), Raises(ValueError, "`inputs` to hold data"))
case("proj-vec-shape", lambda c: c["space"].project(c["x"], c["v"][:3]), Raises(ValueError, "`vectors` to have"))
case("proj-vec-list", lambda c: c["space"].project(c["x"], [c["v"]]), Raises(TypeError, "`vectors`"))
case("proj-vec-complex", lambda c: c["space"].project(c["x"], c["v"] * 1j), Raises(TypeError, "`vectors` to be a"))
case("proj-tuple", lambda c: c["space"].project((c["x"], c["x"]), c["v"]), Raises(ValueError, "`inputs` to have"))
case("proj-target", lambda c: c["space"].project(c["x"], c["v"], target=1), Raises(ValueError, "`target=None`"))
case(
    "proj-int-inputs",
    lambda c: c["space"].project(c["ints"], c["v"].double()),
    Equals(lambda c: _proj64(c, c["v"]), 2e-6),  # integer inputs -> float32 geometry
)
case(
    "proj-int-vectors",
    lambda c: c["space"].project(c["x"], c["ints"]),
    Equals(lambda c: _proj64(c, c["ints"]).float(), 1e-3),  # values up to 255: float32 rounding
)
case(
    "proj-uint8-vectors",
    lambda c: c["space"].project(c["x"], c["ints"].to(torch.uint8)),
    Equals(lambda c: _proj64(c, c["ints"]).float(), 1e-3),
)
case(
    "proj-f64-vectors",  # float32 inputs: float32 geometry, float64 vectors in and out
    lambda c: c["space"].project(c["x"], c["v"].double()),
    Equals(lambda c: _proj64(c, c["v"]), 2e-6),
)
case(
    "proj-f32-space64",
    lambda c: LS(c["plane"]).project(c["x"], c["v"]),
    Equals(lambda c: _proj64(c, c["v"]).float(), 2e-6),
)
case(
    "proj-idempotent-mixed",
    lambda c: c["space"].project(c["x"], c["space"].project(c["x"].double(), c["v"])),
    Equals(lambda c: _proj64(c, c["v"]).float(), 2e-6),
)
for _dt in (torch.bfloat16, torch.float16):
    case(
        f"proj-{_dt}",
        lambda c, dt=_dt: c["space"].project(c["x"].to(dt), c["v"].to(dt)).double(),
        Equals(lambda c, dt=_dt: _proj64(c, c["v"].to(dt)), 0.05),
    )
case(
    "proj-flat-basis-images",
    lambda c: (
        c["space"].project(c["x"].double().reshape(4, 3, 2, 2), c["v"].double().reshape(4, 3, 2, 2)).reshape(4, 12)
    ),
    Equals(lambda c: _proj64(c, c["v"]), 1e-12),
)
case(
    "proj-on-plus-off",
    lambda c: sum(c["space"].components(c["x"], c["v"].double())),
    Equals(lambda c: c["v"].double(), 1e-15),
)

# ------------------------------------------------------------------------------- LinearSubspace.from_data
fd = LinearSubspace.from_data
case("fd-list", lambda c: fd([[1.0]], 1), Raises(TypeError, "`data` to be a torch.Tensor"))
case("fd-empty", lambda c: fd(torch.zeros(0, 4), 1), Raises(ValueError, "`data`.*empty"))
case("fd-1d", lambda c: fd(torch.ones(4), 1), Raises(ValueError, "`data` to have shape"))
case("fd-nan", lambda c: fd(_nan(c["ref"]), 1), Raises(ValueError, "`data` to hold finite"))
case("fd-dim0", lambda c: fd(c["ref"], 0), Raises(ValueError, "`dim` to be >= 1"))
case("fd-dim-big", lambda c: fd(c["ref"], 13), Raises(ValueError, "`dim` to be <= min"))
case("fd-dim-float", lambda c: fd(c["ref"], 2.0), Raises(TypeError, "`dim` to be an int"))
case("fd-method", lambda c: fd(c["ref"], 2, method="qr"), Raises(ValueError, "`method` to be one of"))
case("fd-oversampling", lambda c: fd(c["ref"], 2, oversampling=-1), Raises(ValueError, "`oversampling` to be >= 0"))
case("fd-chunk", lambda c: fd(c["ref"], 2, chunk_size=0), Raises(ValueError, "`chunk_size` to be >= 1"))
case("fd-iterations", lambda c: fd(c["ref"], 2, iterations=-1), Raises(ValueError, "`iterations` to be >= 0"))
case("fd-iterations-float", lambda c: fd(c["ref"], 2, iterations=1.5), Raises(TypeError, "`iterations` to be an int"))
case("fd-seed-float", lambda c: fd(c["ref"], 2, seed=0.5), Raises(TypeError, "`seed` to be an int"))
case(
    "fd-no-iterations",
    lambda c: torch.tensor(fd(c["ref"], 2, method="randomized", iterations=0).dim),
    Equals(lambda c: torch.tensor(2), 0),
)
case("fd-const", lambda c: fd(torch.ones(6, 4), 1), Raises(ValueError, "`data` to vary"))
case("fd-complex", lambda c: fd(c["ref"] * 1j, 1), Raises(TypeError, "`data` to be a real"))
case(
    "fd-rank",
    lambda c: fd(torch.randn(20, 2, dtype=torch.float64) @ c["plane"][:2], 3, method="full").dim,
    Warns("only 2 of the dim=3", lambda out, c: out == 2),
)
case(
    "fd-uint8",
    lambda c: fd(torch.tensor([[0, 0], [100, 200], [200, 400 % 256]], dtype=torch.uint8), 1).mean,
    Equals(lambda c: torch.tensor([100.0, (200 + 400 % 256) / 3]), 1e-4),
)
case(
    "fd-int-variance",
    lambda c: fd(torch.tensor([[0, 0], [3, 4], [6, 8]]), 1).explained_variance,
    Equals(lambda c: torch.tensor([25.0]), 1e-5),
)
case(
    "fd-bf16",
    lambda c: fd(_bf(c["ref"][:, :4] * torch.tensor([5.0, 1, 0.1, 0.01], dtype=torch.float64)), 1).rows.abs()[0, 0],
    Equals(lambda c: torch.tensor(1.0, dtype=torch.float64), 1e-3),
)

# ------------------------------------------------------------------------------- LocalPCATangent
LP = LocalPCATangent
case("lp-list", lambda c: LP([[0.0] * 12] * 10, 2, 4), Raises(TypeError, "`reference`"))
case("lp-nan", lambda c: LP(_nan(c["ref"]), 2, 4), Raises(ValueError, "`reference` to hold finite"))
case("lp-empty", lambda c: LP(c["ref"][:0], 2, 4), Raises(ValueError, "`reference`.*empty"))
case("lp-complex", lambda c: LP(c["ref"] * 1j, 2, 4), Raises(TypeError, "`reference` to be a real"))
case("lp-dim", lambda c: LP(c["ref"], 12, 20), Raises(ValueError, "`dim` to be < D = 12"))
case("lp-nn", lambda c: LP(c["ref"], 3, 3), Raises(ValueError, "`n_neighbors` to be > `dim`"))
case("lp-nn-big", lambda c: LP(c["ref"], 3, 61), Raises(ValueError, "`n_neighbors` to be <= the number"))
case("lp-nn-float", lambda c: LP(c["ref"], 3, 4.0), Raises(TypeError, "`n_neighbors` to be an int"))
case(
    "lp-nn-all",
    lambda c: torch.tensor(LP(c["ref"], 3, 60).basis(c["ref"][:2]).shape),
    Equals(lambda c: torch.tensor([2, 3, 12]), 0),
)
case("lp-rtol0", lambda c: torch.tensor(LP(c["ref"], 3, 8, rtol=0.0).rtol), Equals(lambda c: torch.tensor(0.0), 0))
case("lp-batch", lambda c: LP(c["ref"], 3, 6, batch_size=0), Raises(ValueError, "`batch_size` to be >= 1"))
case("lp-rtol", lambda c: LP(c["ref"], 3, 6, rtol=-1.0), Raises(ValueError, "`rtol` to be a finite"))
case("lp-query-shape", lambda c: LP(c["ref"], 3, 6).basis(torch.zeros(2, 11)), Raises(ValueError, "`inputs` to have"))
case("lp-query-nan", lambda c: LP(c["ref"], 3, 6).basis(_nan(c["x"])), Raises(ValueError, "`inputs` to hold finite"))
case(
    "lp-int-queries",
    lambda c: LP(c["ref"], 3, 6).basis(c["ints"] % 3 - 1).double(),
    Equals(lambda c: LP(c["ref"], 3, 6).basis((c["ints"] % 3 - 1).double()), 1e-6),
)
case(
    "lp-int-reference",
    lambda c: LP(torch.arange(40).reshape(20, 2) * torch.tensor([1, 2]), 1, 4).basis(torch.tensor([[5.0, 10.0]])).abs(),
    Equals(lambda c: torch.tensor([[[1.0, 2.0]]]) / math.sqrt(5), 1e-6),
)
case(
    "lp-bf16-queries",
    lambda c: LP(c["ref"].float(), 2, 8).basis(_bf(c["x"])).dtype,
    Equals(lambda c: torch.float32, 0),
)
case(
    "lp-duplicates",
    lambda c: LP(torch.zeros(8, 12).index_fill_(0, torch.tensor([7]), 1.0), 2, 5).basis(torch.zeros(1, 12)),
    Warns("1 of them have an all-zero basis", lambda out, c: float(out.abs().max()) == 0.0),
)


# ------------------------------------------------------------------------------- DecoderTangent
def _dec(c, **kw):
    return DecoderTangent(c["decoder"], c["encoder"], **kw)


def _dec_ref(c, x):
    """The same basis with float inputs, for comparison."""
    return _dec(c).basis(x.float())


case("dec-callable", lambda c: DecoderTangent("d", c["encoder"]), Raises(TypeError, "`decoder` to be callable"))
case("dec-enc-callable", lambda c: DecoderTangent(c["decoder"], 3), Raises(TypeError, "`encoder` to be callable"))
case("dec-chunk", lambda c: _dec(c, chunk_size=0), Raises(ValueError, "`chunk_size` to be >= 1"))
case("dec-latent-chunk", lambda c: _dec(c, latent_chunk_size=-1), Raises(ValueError, "`latent_chunk_size`"))
case("dec-rtol", lambda c: _dec(c, rtol=math.nan), Raises(ValueError, "`rtol` to be a finite"))
case("dec-shape-tuple", lambda c: _dec(c, input_shape=((12,), (3,))), Raises(ValueError, "`input_shape` to be one"))
case("dec-nan", lambda c: _dec(c).basis(_nan(c["x"])), Raises(ValueError, "`inputs` to hold finite"))
case("dec-tuple", lambda c: _dec(c).basis((c["x"], c["x"])), Raises(ValueError, "`inputs` to be one tensor"))
case("dec-shape", lambda c: _dec(c, input_shape=(12,)).basis(torch.zeros(2, 6)), Raises(ValueError, "`inputs` to have"))
case(
    "dec-out-shape",
    lambda c: DecoderTangent(nn.Sequential(c["decoder"], nn.Unflatten(1, (3, 4))), c["encoder"]).basis(c["x"]),
    Raises(ValueError, "`decoder` to return the shape of `inputs`"),
)
case(
    "dec-enc-nan",
    lambda c: DecoderTangent(c["decoder"], lambda x: torch.full((x.shape[0], 3), math.nan)).basis(c["x"]),
    Raises(ValueError, "latent codes from `encoder` to be finite"),
)
case("dec-int", lambda c: _dec(c).basis(c["ints"] % 4), Equals(lambda c: _dec_ref(c, c["ints"] % 4), 1e-6))
case(
    "dec-uint8", lambda c: _dec(c).basis((c["ints"] % 4).to(torch.uint8)), Equals(lambda c: _dec_ref(c, c["ints"] % 4))
)
case("dec-f64-inputs", lambda c: _dec(c).basis(c["x"].double()).float(), Equals(lambda c: _dec_ref(c, c["x"]), 1e-6))
case("dec-bf16", lambda c: _dec(c).basis(_bf(c["x"])), Equals(lambda c: _dec_ref(c, _bf(c["x"]).float()), 1e-6))


# ------------------------------------------------------------------------------- DenoiserTangent
def _den(c, **kw):
    return DenoiserTangent(c["denoiser"], sigma=0.1, dim=3, oversampling=2, **kw)


def _den_plane():
    return torch.eye(12, dtype=torch.float64)[:3]


def _near_plane(out, atol=1e-2):
    return float(principal_angles(out.double(), _den_plane())[:, -1].max()) < atol


case("den-type", lambda c: DenoiserTangent("d", 0.1, 2), Raises(TypeError, "`denoiser` to be a ScoreModel"))
case("den-sigma-neg", lambda c: DenoiserTangent(c["denoiser"], -1.0, 2), Raises(ValueError, "`sigma` to be a finite"))
case("den-sigma-nan", lambda c: DenoiserTangent(c["denoiser"], math.nan, 2), Raises(ValueError, "`sigma` to be a"))
case("den-sigma-str", lambda c: DenoiserTangent(c["denoiser"], "0.1", 2), Raises(TypeError, "`sigma` to be a number"))
case("den-sigma-0-score", lambda c: DenoiserTangent(c["mix"], 0.0, 2), Raises(ValueError, "`sigma` to be > 0"))
case("den-dim0", lambda c: DenoiserTangent(c["denoiser"], 0.1, 0), Raises(ValueError, "`dim` to be >= 1"))
case("den-dim-D", lambda c: DenoiserTangent(c["mix"], 0.1, 12), Raises(ValueError, "`dim` to be < D = 12"))
case(
    "den-dim-D-call", lambda c: _den(c, input_shape=None).basis(torch.zeros(2, 3)), Raises(ValueError, "`dim` to be <")
)
case("den-iter", lambda c: _den(c, iterations=-1), Raises(ValueError, "`iterations` to be >= 0"))
case("den-probe-chunk", lambda c: _den(c, probe_chunk_size=0), Raises(ValueError, "`probe_chunk_size` to be >= 1"))
case("den-method", lambda c: _den(c, method="svd"), Raises(ValueError, "`method` to be one of"))
case("den-seed", lambda c: _den(c, seed=0.5), Raises(TypeError, "`seed` to be an int"))
case("den-fn-target", lambda c: _den(c, target=1), Raises(ValueError, "`target=None` for a plain denoiser"))
case(
    "den-uncond-cond",
    lambda c: DenoiserTangent(c["mix"], 0.1, 2, conditional=False, target=5).basis(c["x"]),
    Raises(ValueError, "`target` labels in"),
)
case("den-call-target", lambda c: _den(c).basis(c["x"], target=1), Raises(ValueError, "`target=None` for Denoiser"))
case(
    "den-cond-no-target",
    lambda c: DenoiserTangent(c["mix"], 0.1, 2, conditional=True).basis(c["x"]),
    Raises(ValueError, "`target` \\(class labels"),
)
case(
    "den-cond-bad-label",
    lambda c: DenoiserTangent(c["mix"], 0.1, 2, conditional=True).basis(c["x"], target=7),
    Raises(ValueError, "`target` labels in"),
)
case(
    "den-cond-float-label",
    lambda c: DenoiserTangent(c["mix"], 0.1, 2, conditional=True).basis(c["x"], target=torch.tensor([0.5] * 4)),
    Raises((TypeError, ValueError), "`target`"),
)
case("den-nan", lambda c: _den(c).basis(_nan(c["x"])), Raises(ValueError, "`inputs` to hold finite"))
case("den-tuple", lambda c: _den(c).basis((c["x"], c["x"])), Raises(ValueError, "`inputs` to be one tensor"))
case(
    "den-out",
    lambda c: DenoiserTangent(lambda x, s: x[:, :5], 0.1, 2).basis(c["x"]),
    Raises(ValueError, "`denoiser` to return the shape of `inputs`"),
)
case(
    "den-detached",
    lambda c: DenoiserTangent(lambda x, s: x.detach(), 0.1, 2).basis(c["x"]),
    Raises(ValueError, "`denoiser` to be differentiable"),
)
case(
    "den-nan-jac",
    lambda c: DenoiserTangent(lambda x, s: x * math.nan, 0.1, 2).basis(c["x"]),
    Raises(ValueError, "Jacobian of `denoiser` to be finite"),
)
case("den-plane", lambda c: _den(c).basis(c["x"]), Warns("", lambda out, c: _near_plane(out)))
case("den-int", lambda c: _den(c).basis(c["ints"] % 3), Equals(lambda c: _den(c).basis((c["ints"] % 3).float()), 1e-6))
case(
    "den-bf16",
    lambda c: _den(c).basis(_bf(c["x"])),
    Equals(lambda c: _den(c).basis(_bf(c["x"]).float()), 1e-6),
)
case(
    "den-f64-inputs",
    lambda c: _den(c).basis(c["x"].double()),
    Equals(lambda c: _den(c).basis(c["x"]).double(), 1e-6),
)
case("den-general", lambda c: _den(c, method="general").basis(c["x"]), Warns("", lambda out, c: _near_plane(out)))
case("den-spectrum", lambda c: intrinsic_dimension(_den(c).spectrum(c["x"])), Equals(lambda c: torch.full((4,), 3), 0))

# ------------------------------------------------------------------------------- functions
pa = principal_angles
case("pa-list", lambda c: pa([[1.0]], torch.eye(1)), Raises(TypeError, "`basis_a` to be a torch.Tensor"))
case("pa-1d", lambda c: pa(torch.eye(3), torch.ones(3)), Raises(ValueError, "`basis_b` to have shape"))
case("pa-D", lambda c: pa(torch.eye(3)[:1], torch.eye(4)[:1]), Raises(ValueError, "`basis_a` and `basis_b` to have"))
case("pa-nan", lambda c: pa(_nan(torch.eye(3)), torch.eye(3)), Raises(ValueError, "`basis_a` to hold finite"))
case("pa-scaled", lambda c: pa(torch.eye(3), 3 * torch.eye(3)), Raises(ValueError, "`basis_b` to have orthonormal"))
case("pa-skew", lambda c: pa(torch.tensor([[1.0, 0.0], [0.8, 0.6]]), torch.eye(2)), Raises(ValueError, "`basis_a` to"))
case("pa-complex", lambda c: pa(torch.eye(2) * 1j, torch.eye(2)), Raises(TypeError, "`basis_a` to be a real"))
case(
    "pa-int",
    lambda c: pa(torch.eye(3, dtype=torch.int64)[:2], torch.eye(3)[1:]),
    Equals(lambda c: torch.tensor([0.0, math.pi / 2])),
)
case(
    "pa-bf16",
    lambda c: pa(_bf(torch.eye(4)[:2]), _bf(torch.eye(4)[1:3])).float(),
    Equals(lambda c: torch.tensor([0.0, math.pi / 2]), 1e-2),
)
case(
    "pa-mixed",
    lambda c: pa(torch.eye(4)[:2], torch.eye(4, dtype=torch.float64)[:2]),
    Equals(lambda c: torch.zeros(2, dtype=torch.float64), 1e-12),
)
ID = intrinsic_dimension
case("id-list", lambda c: ID([1.0, 0.5]), Raises(TypeError, "`spectrum` to be a torch.Tensor"))
case("id-short", lambda c: ID(torch.ones(1)), Raises(ValueError, "`spectrum` to have shape"))
case("id-rising", lambda c: ID(torch.tensor([0.1, 1.0])), Raises(ValueError, "`spectrum` to be in descending"))
case("id-neg", lambda c: ID(torch.tensor([1.0, -0.1])), Raises(ValueError, "`spectrum` to hold finite"))
case("id-nan", lambda c: ID(torch.tensor([1.0, math.nan])), Raises(ValueError, "`spectrum` to hold finite"))
case("id-int", lambda c: ID(torch.tensor([9, 8, 0])), Equals(lambda c: torch.tensor(2), 0))
OR = orthonormal_rows
case("or-list", lambda c: OR([[1.0]]), Raises(TypeError, "`basis` to be a torch.Tensor"))
case("or-1d", lambda c: OR(torch.ones(3)), Raises(ValueError, "`basis` to have shape"))
case("or-rows", lambda c: OR(torch.ones(3, 2)), Raises(ValueError, "`basis` to have at most D=2"))
case("or-rank", lambda c: OR(torch.ones(2, 3)), Raises(ValueError, "`basis` to have full rank"))
case("or-int", lambda c: OR(torch.tensor([[0, 5]])).abs(), Equals(lambda c: torch.tensor([[0.0, 1.0]]), 1e-7))
case(
    "por-int",
    lambda c: project_onto_rows(torch.eye(2)[:1], torch.tensor([[[3, 4]]])),
    Equals(lambda c: torch.tensor([[[3.0, 0.0]]]), 0),
)
CT = CachedTangent
case("ct-space", lambda c: CT(torch.eye(3), c["x"]), Raises(TypeError, "`space` to be a TangentSpace"))
case("ct-nan", lambda c: CT(c["space"], _nan(c["x"])), Raises(ValueError, "`points` to hold finite"))
case(
    "ct-int",
    lambda c: CT(c["space"], c["ints"]).basis(c["ints"]).double(),
    Equals(lambda c: c["space"].basis(c["ints"].float()).double(), 0),
)


def run_case(fn: Callable[[dict], Any], expect: Any) -> str:
    """Run one case on a fresh context; return 'refused', 'warned' or 'right' (or raise AssertionError)."""
    c = make_context()
    before = [snapshot(m) for m in c["networks"]]
    try:
        if isinstance(expect, Raises):
            assert "`" in expect.match, "a refusal must name the argument"
            with pytest.raises(expect.error, match=expect.match):
                fn(c)
            kind = "refused"
        elif isinstance(expect, Warns):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fn(c)
            if expect.match:
                assert any(expect.match in str(w.message) for w in caught), [str(w.message) for w in caught]
                kind = "warned"
            else:
                kind = "right"
            assert expect.check(out, c)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the exactly right answer comes without a warning
                out = fn(c)
            ref = expect.reference(c)
            if isinstance(ref, torch.dtype):
                assert out == ref
            else:
                assert (isinstance(out, torch.Tensor) and out.dtype.is_floating_point) or out.dtype == ref.dtype
                torch.testing.assert_close(out.to(ref.dtype), ref, rtol=0, atol=expect.atol)
            kind = "right"
    finally:
        for m, snap in zip(c["networks"], before):
            assert_unchanged(m, snap)
    return kind


@pytest.mark.parametrize(("name", "fn", "expect"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, fn, expect):
    run_case(fn, expect)


if __name__ == "__main__":
    counts = {"refused": 0, "warned": 0, "right": 0}
    for _name, fn, expect in CASES:
        counts[run_case(fn, expect)] += 1
    print(f"tried {len(CASES)}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
