r"""How much of a gradient lies in the tangent space of the data manifold, and the random reference.

Srinivas, Bordt & Lakkaraju (NeurIPS 2023): gradients of models robust off the data manifold lie
close to its tangent space; a direction that ignores the manifold has tangent alignment about
:math:`\sqrt{k/D}`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._kernel._tensors import chunks, feature_shapes, flatten_features, unflatten_features
from .._kernel._validation import check_batch, check_same_shape, check_tensor_or_tuple
from ..manifold.base import TangentSpace
from ._common import TensorOrTuple, _check_chunk, _scale_rows, _warn_undefined

__all__ = ["random_tangent_alignment", "tangent_alignment"]

#: Most tangent-basis entries (examples x k x D) held at once, whatever ``max_examples_per_batch``
#: says: 64 MiB of float32 (about 42 CIFAR-size images at k = 128, 1024 digits16 images at k = 64).
GEOMETRY_BUDGET = 2**24


def _geometry_chunk(tangent_space: TangentSpace, d: int, chunk: int | None) -> int:
    """Examples per chunk: at most ``chunk`` and at most what :data:`GEOMETRY_BUDGET` allows."""
    fits = max(1, GEOMETRY_BUDGET // max(1, tangent_space.dim * d))
    return fits if chunk is None else min(chunk, fits)


def tangent_alignment(
    attributions: TensorOrTuple,
    inputs: TensorOrTuple,
    tangent_space: TangentSpace,
    *,
    max_examples_per_batch: int | None = None,
) -> Tensor:
    r"""Per-example fraction of an attribution's norm that lies in the data manifold's tangent space.

    .. math::

        \text{TA}(g; x) = \frac{\lVert P_T(x)\, g\rVert}{\lVert g\rVert} \in [0, 1],

    with the tangent projector :math:`P_T(x)` of ``tangent_space``. Srinivas, Bordt & Lakkaraju
    (NeurIPS 2023) show that gradients of off-manifold robust models lie near the tangent space;
    the Bayes-optimal classifier of data on a linear subspace scores exactly 1. A gradient
    pointing in a random direction scores about :math:`\sqrt{k/D}`
    (:func:`random_tangent_alignment`). An all-zero attribution gives ``NaN`` and a
    :class:`RuntimeWarning`.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        ``(N, *shape)`` maps, same form and shapes as ``inputs`` (any Captum attribution).
    inputs : Tensor or tuple of Tensor
        ``(N, *shape)`` points at which the tangent space is taken.
    tangent_space : TangentSpace
        Any tangent-space estimator of :mod:`captum_pags.manifold`.
    max_examples_per_batch : int, optional
        Project at most this many examples at a time (and never more than fit in
        :math:`2^{24}` basis entries, 64 MiB of float32: per-example bases are ``(n, k, D)``).

    Returns
    -------
    Tensor
        ``(N,)`` values in :math:`[0, 1]` (or NaN) on the device of ``attributions``.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> space = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
    >>> tangent_alignment(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]), torch.zeros(2, 3), space)
    tensor([0.6000, 0.0000])
    """
    inputs_t, attr_t = _check_tangent_args(attributions, inputs, tangent_space)
    chunk = _check_chunk(max_examples_per_batch)
    return _tangent_values(attr_t, inputs_t, tangent_space, chunk)


def _check_tangent_args(
    attributions: TensorOrTuple, inputs: TensorOrTuple, tangent_space: TangentSpace
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    if not isinstance(tangent_space, TangentSpace):
        raise TypeError(
            f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
        )
    inputs_t = tangent_space.check_inputs(inputs)
    attr_t = check_tensor_or_tuple("attributions", attributions)
    if len(attr_t) != len(inputs_t):
        raise ValueError(
            f"Expected `attributions` to hold {len(inputs_t)} tensor(s) like `inputs` but got {len(attr_t)}"
        )
    for a, x in zip(attr_t, inputs_t):
        check_same_shape("attributions", a, "inputs", x)
    check_batch("attributions", attr_t)
    return inputs_t, attr_t


def _tangent_values(
    attr_t: tuple[Tensor, ...], inputs_t: tuple[Tensor, ...], tangent_space: TangentSpace, chunk: int | None
) -> Tensor:
    """Per-example tangent alignment of validated arguments; shared by the function and the accumulator."""
    parts = []
    # per-example bases are (n, k, D): never more than GEOMETRY_BUDGET entries of them at once
    d = sum(int(x[0].numel()) for x in inputs_t)
    for sl in chunks(inputs_t[0].shape[0], _geometry_chunk(tangent_space, d, chunk)):
        xs = tuple(x[sl].detach() for x in inputs_t)
        flat = flatten_features([a[sl].detach() for a in attr_t])
        # promote first: integer maps are never truncated, low-precision maps are scaled in float32
        flat = _scale_rows(flat.to(torch.promote_types(flat.dtype, torch.float32)))
        on, _ = tangent_space.components(xs, unflatten_features(flat, feature_shapes(attr_t), [flat.shape[0]]))
        with torch.no_grad():
            on_norm = torch.linalg.vector_norm(flatten_features([o.detach() for o in on]), dim=1)
            parts.append((on_norm / torch.linalg.vector_norm(flat, dim=1)).clamp(max=1.0))
    values = torch.cat(parts).to(attr_t[0].device)
    _warn_undefined(values, "an all-zero attribution")
    return values


def random_tangent_alignment(tangent_space: TangentSpace, inputs: TensorOrTuple | None = None) -> float | Tensor:
    r"""Tangent alignment of a random direction: the reference level :math:`\sqrt{k/D}`.

    For an isotropic Gaussian direction :math:`g \in \mathbb{R}^D` and a :math:`k`-dimensional
    tangent space,

    .. math::

        \sqrt{\mathbb{E}\!\left[\frac{\lVert P_T g\rVert^2}{\lVert g\rVert^2}\right]}
        = \sqrt{\frac{k}{D}},

    the root-mean-square of :func:`tangent_alignment` for gradients that ignore the manifold.

    Parameters
    ----------
    tangent_space : TangentSpace
        The tangent space used with :func:`tangent_alignment`.
    inputs : Tensor or tuple of Tensor, optional
        ``(N, *shape)`` points. If given, :math:`k` is counted per example as the number of
        non-zero basis rows (estimators may drop directions) and :math:`D` comes from the inputs;
        otherwise :math:`k` = ``tangent_space.dim`` and :math:`D` = ``tangent_space.num_features``.

    Returns
    -------
    float or Tensor
        A float, or ``(N,)`` on the inputs' device when ``inputs`` is given.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> random_tangent_alignment(LinearSubspace(torch.eye(4)[:1]))
    0.5
    """
    if not isinstance(tangent_space, TangentSpace):
        raise TypeError(
            f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
        )
    if inputs is None:
        d = tangent_space.num_features
        if d is None:
            raise ValueError(
                "Expected `inputs` for a tangent space without a fixed `input_shape` (D is unknown) but got None"
            )
        return math.sqrt(tangent_space.dim / d)
    inputs_t = tangent_space.check_inputs(inputs)
    parts = []
    d = sum(int(x[0].numel()) for x in inputs_t)
    for sl in chunks(inputs_t[0].shape[0], _geometry_chunk(tangent_space, d, None)):
        basis = tangent_space.basis(tuple(x[sl] for x in inputs_t))
        k = (torch.linalg.vector_norm(basis, dim=2) > 0).sum(1).to(torch.promote_types(basis.dtype, torch.float32))
        parts.append((k / basis.shape[2]).sqrt())
    return torch.cat(parts)
