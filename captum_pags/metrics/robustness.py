"""On- and off-manifold robustness of a classifier (its regime: :mod:`captum_pags.metrics.regimes`).

Srinivas, Bordt & Lakkaraju (NeurIPS 2023), "Which Models have Perceptually-Aligned Gradients? An
Explanation via Off-Manifold Robustness": models whose outputs change little off the data
manifold but still follow the data along it have perceptually aligned gradients; too little
off-manifold robustness ("weak") or robustness on the manifold too ("excessive") loses it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from .._kernel._autodiff import check_model_dtype
from .._kernel._captum_compat import run_forward
from .._kernel._model_state import preserved_state
from .._kernel._tensors import (
    chunks,
    feature_shapes,
    flatten_features,
    index_examples,
    num_features,
    unflatten_features,
)
from .._kernel._validation import check_choice, check_int, check_positive
from ..manifold.base import TangentSpace
from ._common import TensorOrTuple
from .tangent import _geometry_chunk

__all__ = [
    "ManifoldRobustness",
    "manifold_robustness",
]

Distance = Literal["softmax_l1", "kl"]
DISTANCES: tuple[str, ...] = ("softmax_l1", "kl")


# ---------------------------------------------------------------------------------------- result
@dataclass(frozen=True)
class ManifoldRobustness:
    r"""On- and off-manifold output changes of :func:`manifold_robustness`.

    Attributes
    ----------
    on : Tensor
        ``(N, E)`` mean output change for unit tangent (on-manifold) perturbations of size
        ``epsilons[j]``.
    off : Tensor
        ``(N, E)`` the same for unit perturbations orthogonal to the tangent space (off-manifold).
    epsilons : Tensor
        ``(E,)`` perturbation sizes.
    relative : Tensor
        ``(N, E)`` relative off-manifold robustness :math:`\text{on} / \text{off}` (computed).
        Large values mean the model reacts much more to moves along the data than off it: it is
        robust off the manifold relative to on it (the Bayes-optimal classifier of data on a
        subspace is off-manifold invariant, so its value is very large). About 1 means no
        preference; below 1, the model is more sensitive off the manifold. ``inf`` where ``off``
        is exactly 0 and ``on`` is not; NaN where both are 0.

    Examples
    --------
    >>> r = ManifoldRobustness(on=torch.tensor([[0.4, 0.8]]), off=torch.tensor([[0.1, 0.4]]),
    ...                        epsilons=torch.tensor([0.5, 1.0]))
    >>> r.relative
    tensor([[4., 2.]])
    """

    on: Tensor
    off: Tensor
    epsilons: Tensor
    relative: Tensor = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "relative", self.on / self.off)

    def mean(self) -> ManifoldRobustness:
        r"""Average over examples: ``on`` and ``off`` become ``(1, E)`` means (NaN values left out).

        ``relative`` of the result is the ratio of the means,
        :math:`\overline{\text{on}} / \overline{\text{off}}`, which is stable when a few examples
        have a tiny ``off``.
        """
        return ManifoldRobustness(
            self.on.nanmean(0, keepdim=True), self.off.nanmean(0, keepdim=True), self.epsilons.clone()
        )

    def as_dict(self) -> dict[str, list]:
        """Plain nested lists (JSON-serialisable) of every field."""
        return {
            "epsilons": self.epsilons.tolist(),
            "on": self.on.tolist(),
            "off": self.off.tolist(),
            "relative": self.relative.tolist(),
        }


# ---------------------------------------------------------------------------------------- helpers
def _check_epsilons(epsilons: Any) -> list[float]:
    if isinstance(epsilons, Tensor):
        values = epsilons.detach().reshape(-1).tolist()
    elif isinstance(epsilons, (int, float)) and not isinstance(epsilons, bool):
        values = [epsilons]
    elif isinstance(epsilons, Sequence) and not isinstance(epsilons, str):
        values = list(epsilons)
    else:
        raise TypeError(
            f"Expected `epsilons` to be a number, a sequence or a 1-d tensor but got {type(epsilons).__name__}"
        )
    if not values:
        raise ValueError("Expected `epsilons` to hold at least one value but got none")
    for v in values:
        try:
            check_positive("epsilons", v)
        except ValueError:
            raise ValueError(f"Expected every value of `epsilons` to be a finite number > 0 but got {v}") from None
    return [float(v) for v in values]


def _distance(clean: Tensor, perturbed: Tensor, distance: str) -> Tensor:
    """Per-row change of class probabilities: L1 of softmax differences, or KL(clean || perturbed)."""
    if distance == "softmax_l1":
        return (torch.softmax(clean, dim=1) - torch.softmax(perturbed, dim=1)).abs().sum(1)
    log_p, log_q = torch.log_softmax(clean, dim=1), torch.log_softmax(perturbed, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


def _forward_scores(forward_func: Callable[..., Tensor], inputs: tuple[Tensor, ...], args: Any, n: int) -> Tensor:
    out = run_forward(forward_func, inputs, None, args)
    if out.dim() != 2 or out.shape[0] != n:
        raise ValueError(
            f"Expected `forward_func` to return (N, C) class scores for N={n} inputs but got shape {tuple(out.shape)}"
        )
    return out


def _clean_scores(forward_func: Callable[..., Tensor], inputs: tuple[Tensor, ...], args: Any, n: int) -> Tensor:
    out = _forward_scores(forward_func, inputs, args, n)
    if out.is_floating_point() and not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).any(1).sum())
        raise ValueError(
            f"Expected `forward_func` to return finite class scores at the unperturbed inputs but {bad} of {n} "
            "example(s) have NaN or inf scores"
        )
    return out


#: Directions are drawn in blocks of this many examples, each from its own generator, so that memory
#: stays bounded and results do not depend on ``max_examples_per_batch``.
DRAW_BLOCK = 64
_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def block_seed(seed: int, block: int) -> int:
    """Seed of the directions of examples ``[64 b, 64 (b + 1))``: ``seed`` itself for block 0.

    Later blocks use a SplitMix64 mix of ``(seed, block)`` (63 bits), so blocks never share a stream.

    Examples
    --------
    >>> block_seed(7, 0)
    7
    >>> block_seed(7, 1) == block_seed(7, 1) != block_seed(8, 1)
    True
    """
    if block == 0:
        return seed
    return _splitmix64((seed & _MASK64) ^ _splitmix64(block)) >> 1


def _block_draws(n: int, block: int, n_samples: int, d: int, dtype: torch.dtype, seed: int) -> Tensor:
    """Gaussian draws ``(m, S, D)`` (CPU) of the examples of draw block ``block`` among ``n``."""
    lo, hi = block * DRAW_BLOCK, min((block + 1) * DRAW_BLOCK, n)
    gen = torch.Generator().manual_seed(block_seed(seed, block))
    return torch.randn(hi - lo, n_samples, d, generator=gen, dtype=dtype)


def _unit_directions(inputs_t: tuple[Tensor, ...], tangent_space: TangentSpace, raw: Tensor) -> tuple[Tensor, Tensor]:
    r"""Unit tangent and orthogonal directions ``(m, 2, S, D)`` and a mask ``(m, 2, S)`` of vanished parts.

    The draws ``raw`` ``(m, S, D)`` are split by the tangent space's own projection (``[:, 0]``
    tangent, ``[:, 1]`` orthogonal), then each part is normalised. Parts that are zero up to
    rounding (a full-dimensional or empty tangent space) are returned as zeros and flagged in the mask.
    """
    m, n_samples = raw.shape[:2]
    shapes = feature_shapes(inputs_t)
    geometry_inputs = tuple(t.detach() for t in inputs_t)
    on, off = tangent_space.components(geometry_inputs, unflatten_features(raw, shapes, (m, n_samples)))
    parts = torch.stack([flatten_features(on, lead=2).detach(), flatten_features(off, lead=2).detach()], dim=1)
    norms = torch.linalg.vector_norm(parts, dim=3, keepdim=True)
    # a part this much shorter than its draw is rounding noise of the projection, not a direction
    tiny = 64 * torch.finfo(parts.dtype).eps * torch.linalg.vector_norm(raw, dim=2)[:, None, :, None]
    vanished = ~(norms > tiny)
    scale = torch.where(vanished, torch.zeros_like(norms), 1.0 / norms.clamp_min(torch.finfo(norms.dtype).tiny))
    return parts * scale, vanished.squeeze(3)


def _chunk_changes(
    forward_func: Callable[..., Tensor],
    inputs_t: tuple[Tensor, ...],
    dirs: Tensor,
    eps_t: Tensor,
    distance: str,
    chunk: int | None,
    args: Any,
) -> Tensor:
    """``(m, 2, E, S)`` output changes of ``m`` examples along their directions ``dirs`` ``(m, 2, S, D)``."""
    m, _, n_samples, _ = dirs.shape
    n_eps = eps_t.shape[0]
    shapes = feature_shapes(inputs_t)
    x_flat = flatten_features([t.detach() for t in inputs_t])
    clean = torch.cat(
        [
            _clean_scores(
                forward_func,
                tuple(t[sl].detach() for t in inputs_t),
                index_examples(args, torch.arange(sl.start, sl.stop), m),
                sl.stop - sl.start,
            )
            for sl in chunks(m, chunk)
        ]
    )
    per_example = 2 * n_eps * n_samples
    eps_view = eps_t.reshape(1, 1, n_eps, 1, 1)
    changes = []
    # perturbed copies are laid out (example, part, epsilon, draw); a forward batch is a contiguous range
    # of them, built by broadcasting over the few examples it touches
    for sl in chunks(m * per_example, chunk):
        lo, hi = sl.start // per_example, -(-sl.stop // per_example)
        block = torch.addcmul(x_flat[lo:hi, None, None, None, :], eps_view, dirs[lo:hi, :, None])
        start = sl.start - lo * per_example
        batch = block.reshape(-1, x_flat.shape[1])[start : start + sl.stop - sl.start]
        k = batch.shape[0]
        ex = torch.arange(sl.start, sl.stop, device=x_flat.device) // per_example
        out = _forward_scores(forward_func, unflatten_features(batch, shapes, [k]), index_examples(args, ex, m), k)
        changes.append(_distance(clean[ex], out, distance))
    return torch.cat(changes).reshape(m, 2, n_eps, n_samples)


def _robustness_values(
    forward_func: Callable[..., Tensor],
    inputs_t: tuple[Tensor, ...],
    tangent_space: TangentSpace,
    eps: list[float],
    n_samples: int,
    distance: str,
    chunk: int | None,
    seed: int,
    additional_forward_args: Any,
) -> tuple[Tensor, Tensor]:
    """``(N, E)`` on- and off-manifold changes of validated arguments; shared by the function and the accumulator.

    Streams over the examples: draws per block of :data:`DRAW_BLOCK` examples, tangent geometry
    (bases, projections) per chunk of at most ``chunk`` examples, model inputs per forward call of
    at most ``chunk``. Nothing of size N x S x D or N x k x D is ever held.
    """
    x0 = inputs_t[0]
    n = x0.shape[0]
    d = num_features(feature_shapes(inputs_t))
    geometry_chunk = min(DRAW_BLOCK, _geometry_chunk(tangent_space, d, chunk))
    eps_t = torch.tensor(eps, dtype=x0.dtype, device=x0.device)
    results, undefined_parts = [], []
    non_finite = 0
    with torch.no_grad(), preserved_state(forward_func, train=False):
        for block in range(-(-n // DRAW_BLOCK)):
            raw_block = _block_draws(n, block, n_samples, d, x0.dtype, seed)
            base = block * DRAW_BLOCK
            for sl in chunks(raw_block.shape[0], geometry_chunk):
                idx = slice(base + sl.start, base + sl.stop)
                xs = tuple(t[idx] for t in inputs_t)
                args = index_examples(additional_forward_args, torch.arange(idx.start, idx.stop), n)
                dirs, undefined = _unit_directions(xs, tangent_space, raw_block[sl].to(x0.device))
                change = _chunk_changes(forward_func, xs, dirs, eps_t, distance, chunk, args)
                # nanmean: a rare draw whose part vanishes is left out; a part that always vanishes gives NaN.
                # A model output that is not finite is never left out: its mean is NaN.
                broken = torch.isnan(change) & ~undefined.unsqueeze(2)
                mean = change.masked_fill(undefined.unsqueeze(2), math.nan).nanmean(3)
                results.append(mean.masked_fill(broken.any(3), math.nan))
                undefined_parts.append(undefined.all(2).any())
                non_finite += int(broken.sum())
    change = torch.cat(results)
    if non_finite:
        warnings.warn(
            f"`forward_func` returned non-finite class scores for {non_finite} perturbed input(s); the robustness "
            "of their examples is NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    if bool(torch.stack(undefined_parts).any()):
        warnings.warn(
            "Some random directions have no tangent or no orthogonal part (is the tangent space empty or "
            "full-dimensional at some inputs?); their robustness is NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    return change[:, 0], change[:, 1]


def _check_robustness_args(
    forward_func: Any, tangent_space: Any, epsilons: Any, n_samples: Any, distance: Any, chunk: Any, seed: Any
) -> list[float]:
    if not callable(forward_func):
        raise TypeError(f"Expected `forward_func` to be callable but got {type(forward_func).__name__}")
    if not isinstance(tangent_space, TangentSpace):
        raise TypeError(
            f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
        )
    eps = _check_epsilons(epsilons)
    check_int("n_samples", n_samples, minimum=1)
    check_choice("distance", distance, DISTANCES)
    if chunk is not None:
        check_int("max_examples_per_batch", chunk, minimum=1)
    if seed is not None:
        check_int("seed", seed)
    return eps


def _check_robustness_inputs(inputs: TensorOrTuple, tangent_space: TangentSpace) -> tuple[Tensor, ...]:
    inputs_t = tangent_space.check_inputs(inputs)
    for x in inputs_t:
        if not x.is_floating_point():
            raise TypeError(f"Expected `inputs` to be floating point tensors but got dtype {x.dtype}")
    if len({(x.dtype, x.device) for x in inputs_t}) != 1:
        raise ValueError("Expected every tensor of `inputs` to share one dtype and device")
    return inputs_t


def _resolve_seed(seed: int | None) -> int:
    # ``None`` follows torch's global generator, so ``torch.manual_seed`` still makes runs repeatable
    return int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed


# ---------------------------------------------------------------------------------------- functions
def manifold_robustness(
    forward_func: Callable[..., Tensor],
    inputs: TensorOrTuple,
    tangent_space: TangentSpace,
    epsilons: float | Sequence[float] | Tensor,
    n_samples: int = 10,
    distance: Distance = "softmax_l1",
    *,
    max_examples_per_batch: int | None = None,
    seed: int | None = 0,
    additional_forward_args: Any = None,
) -> ManifoldRobustness:
    r"""Per-example change of a classifier's output under random on- and off-manifold perturbations.

    For each example :math:`x` draw :math:`S` Gaussian directions :math:`z_s`, split each by the
    tangent projector of ``tangent_space`` and normalise the parts,

    .. math::

        u_s = \frac{P_T(x) z_s}{\lVert P_T(x) z_s\rVert}, \qquad
        w_s = \frac{(I - P_T(x)) z_s}{\lVert (I - P_T(x)) z_s\rVert},

    and measure the mean change of the class probabilities :math:`p(x) = \operatorname{softmax}(f(x))`
    at every :math:`\varepsilon`:

    .. math::

        \text{on}(x, \varepsilon) = \frac{1}{S}\sum_s \Delta\big(p(x), p(x + \varepsilon u_s)\big),
        \qquad
        \text{off}(x, \varepsilon) = \frac{1}{S}\sum_s \Delta\big(p(x), p(x + \varepsilon w_s)\big),

    with :math:`\Delta(p, q) = \lVert p - q\rVert_1` (``"softmax_l1"``) or
    :math:`\operatorname{KL}(p \,\Vert\, q)` (``"kl"``). Lower is more robust. Srinivas, Bordt &
    Lakkaraju (NeurIPS 2023) show that models robust off the manifold (small ``off``) relative to
    on it have perceptually aligned gradients; ``relative = on / off`` summarises this.

    The computation streams over the examples: the tangent geometry (bases, projections) of at
    most ``max_examples_per_batch`` examples at a time (and at most 64, and at most
    :math:`2^{24}` basis entries), and the perturbed copies
    (examples x draws x epsilons x {on, off}) in forward calls of at most
    ``max_examples_per_batch`` inputs, so memory does not grow with ``N``.

    Parameters
    ----------
    forward_func : Callable
        Classifier returning ``(N, C)`` logits. An :class:`torch.nn.Module` is evaluated in eval
        mode under ``no_grad``, and its mode, ``requires_grad`` and ``.grad`` are restored.
    inputs : Tensor or tuple of Tensor
        ``(N, *shape)`` floating-point inputs (a tuple for multi-input models; directions span
        their concatenated features).
    tangent_space : TangentSpace
        Any tangent-space estimator; its projection splits the directions.
    epsilons : float, sequence of float or Tensor
        ``E`` perturbation sizes (each > 0), in input units.
    n_samples : int
        Number of random directions ``S`` per example (>= 1).
    distance : {"softmax_l1", "kl"}
        Output change measure.
    max_examples_per_batch : int, optional
        Most model inputs per forward call (like :func:`captum.metrics.infidelity`), and most
        examples whose tangent basis is held at once; if None, the perturbed copies of up to 64
        examples go through the model together. On the CPU, chunks of a few thousand small inputs
        run faster than one huge pass (they stay in cache).
    seed : int or None
        Seeds the directions. They are drawn on the CPU in the inputs' dtype, per block of
        ``DRAW_BLOCK`` = 64 examples: block :math:`b` (examples :math:`64b` to
        :math:`64b + 63`) is ``torch.randn(m_b, S, D, generator=torch.Generator().manual_seed(block_seed(seed, b)))``
        with ``block_seed`` (``seed`` itself for the first block), so results do not depend on
        the device or on ``max_examples_per_batch``. ``None`` draws the seed from torch's global
        generator.
    additional_forward_args : Any, optional
        Extra arguments of ``forward_func``; tensors with a batch dimension are per-example.

    Returns
    -------
    ManifoldRobustness
        ``on``, ``off`` and ``relative`` of shape ``(N, E)`` and ``epsilons`` ``(E,)``, on the
        inputs' device.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[4.0, 0.0], [-4.0, 0.0]]))
    >>> result = manifold_robustness(model, torch.zeros(1, 2), LinearSubspace(torch.tensor([[1.0, 0.0]])), [0.1])
    >>> result.on, result.off
    (tensor([[0.3799]]), tensor([[0.]]))
    """
    eps = _check_robustness_args(
        forward_func, tangent_space, epsilons, n_samples, distance, max_examples_per_batch, seed
    )
    inputs_t = _check_robustness_inputs(inputs, tangent_space)
    check_model_dtype(forward_func, inputs_t)
    on, off = _robustness_values(
        forward_func,
        inputs_t,
        tangent_space,
        eps,
        n_samples,
        distance,
        max_examples_per_batch,
        _resolve_seed(seed),
        additional_forward_args,
    )
    return ManifoldRobustness(on, off, torch.tensor(eps, dtype=on.dtype, device=on.device))
