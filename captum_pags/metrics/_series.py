"""Metric series of the regime rule: numbers, sequences, arrays, tensors or robustness results, as float64."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def as_series(name: str, value: Any, epsilon_index: int) -> tuple[Tensor | None, bool]:
    """``(M,)`` float64 series of a metric and whether it was given for one model only."""
    if value is None:
        return None, False
    is_robustness = hasattr(value, "relative") and hasattr(value, "mean")  # a ManifoldRobustness
    single = (
        is_robustness
        or (isinstance(value, (int, float)) and not isinstance(value, bool))
        or (isinstance(value, Tensor) and value.dim() == 0)
    )
    items = [value] if single else value
    if not isinstance(items, (Tensor, Sequence)) and hasattr(items, "__array__"):  # NumPy arrays
        items = torch.as_tensor(items.__array__(), dtype=torch.float64)
        if items.dim() == 0:
            items, single = items.reshape(1), True
    if isinstance(items, Tensor):
        if items.dim() != 1:
            raise ValueError(f"Expected `{name}` to be a number or a 1-d series but got shape {tuple(items.shape)}")
        items = items.tolist()
    if not isinstance(items, Sequence) or isinstance(items, str) or len(items) == 0:
        raise TypeError(f"Expected `{name}` to be a number, a non-empty sequence or a 1-d tensor but got {value!r}")
    out = []
    for v in items:
        if hasattr(v, "relative") and hasattr(v, "mean"):
            summary = v.mean()
            if not -summary.relative.shape[1] <= epsilon_index < summary.relative.shape[1]:
                raise ValueError(
                    f"Expected `epsilon_index` to index {summary.relative.shape[1]} epsilons but got {epsilon_index}"
                )
            v = float(summary.relative[0, epsilon_index])
        elif isinstance(v, Tensor) and v.numel() == 1:
            v = float(v.item())
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"Expected `{name}` to hold numbers but got {type(v).__name__}")
        out.append(float(v))
    return torch.tensor(out, dtype=torch.float64), single
