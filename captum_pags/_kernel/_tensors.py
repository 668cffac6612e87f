"""Flattening of per-example features and chunked evaluation, written once for the package."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor


def feature_shapes(inputs: Sequence[Tensor]) -> tuple[torch.Size, ...]:
    """Per-example shapes (everything after the batch dimension) of each input tensor."""
    return tuple(t.shape[1:] for t in inputs)


def num_features(shapes: Sequence[torch.Size]) -> int:
    """Total number of features ``D`` of one example over several inputs."""
    total = 0
    for s in shapes:
        total += int(torch.Size(s).numel())
    return total


def flatten_features(tensors: Sequence[Tensor], lead: int = 1) -> Tensor:
    """Concatenate tensors into ``(*lead_dims, D)`` keeping the first ``lead`` dimensions.

    ``lead=1`` turns ``(N, *shape_i)`` tensors into ``(N, D)``; ``lead=2`` turns
    ``(N, M, *shape_i)`` into ``(N, M, D)``.
    """
    parts = [t.reshape(*t.shape[:lead], -1) for t in tensors]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def unflatten_features(flat: Tensor, shapes: Sequence[torch.Size], lead_shape: Sequence[int]) -> tuple[Tensor, ...]:
    """Inverse of :func:`flatten_features`: split ``(*lead, D)`` into tensors ``(*lead, *shape_i)``."""
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    pieces = torch.split(flat, sizes, dim=-1) if len(sizes) > 1 else (flat,)
    return tuple(p.reshape(*lead_shape, *s) for p, s in zip(pieces, shapes))


def chunks(n: int, chunk_size: int | None) -> Iterator[slice]:
    """Slices that cover ``range(n)`` in pieces of at most ``chunk_size`` (all at once if None)."""
    step = n if chunk_size is None or chunk_size <= 0 else chunk_size
    for start in range(0, n, max(step, 1)):
        yield slice(start, min(start + step, n))


def chunked_map(fn: Callable[..., Tensor], *tensors: Tensor, chunk_size: int | None) -> Tensor:
    """Apply ``fn`` to matching chunks of ``tensors`` along dim 0 and concatenate the results."""
    n = tensors[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(*tensors)
    return torch.cat([fn(*(t[s] for t in tensors)) for s in chunks(n, chunk_size)], dim=0)


def index_examples(args: Any, index: Tensor, n: int, name: str = "additional_forward_args") -> Any:
    """Select examples ``index`` from per-example arguments, Captum style.

    Like Captum's expansion of ``additional_forward_args``: every tensor with a batch dimension is
    treated as per-example and indexed along dim 0; 0-d tensors and non-tensors pass unchanged.
    Used where perturbed copies of the ``n`` examples are evaluated in an arbitrary order.
    """
    if args is None:
        return None
    single = not isinstance(args, tuple)
    items = (args,) if single else args
    out = []
    for a in items:
        if isinstance(a, Tensor) and a.dim() > 0:
            if a.shape[0] != n:
                raise ValueError(
                    f"Expected tensors in `{name}` to have batch size {n} like the inputs but got {tuple(a.shape)}"
                )
            a = a[index.to(a.device)]
        out.append(a)
    return out[0] if single else tuple(out)
