"""Input checks shared by every public entry point.

Each helper raises :class:`ValueError` or :class:`TypeError` with a message that names the
argument, what was expected and what came, e.g. ``Expected `sigma` to be > 0 but got -1.0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def check_tensor(name: str, value: Any) -> Tensor:
    """Return ``value`` if it is a tensor, else raise a :class:`TypeError`."""
    if not isinstance(value, Tensor):
        raise TypeError(f"Expected `{name}` to be a torch.Tensor but got {type(value).__name__}")
    return value


def check_tensor_or_tuple(name: str, value: Any) -> tuple[Tensor, ...]:
    """Format a tensor or a tuple of tensors into a non-empty tuple of tensors."""
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, tuple) and value and all(isinstance(v, Tensor) for v in value):
        return value
    raise TypeError(
        f"Expected `{name}` to be a torch.Tensor or a non-empty tuple of tensors but got {type(value).__name__}"
    )


def check_batch(name: str, tensors: Sequence[Tensor], *, finite: bool = True) -> int:
    """Check that tensors share a non-empty batch dimension and hold finite values.

    Returns
    -------
    int
        The batch size ``N``.
    """
    sizes = set()
    for t in tensors:
        if t.dim() == 0:
            raise ValueError(f"Expected `{name}` to have a batch dimension but got a 0-d tensor")
        sizes.add(t.shape[0])
    if len(sizes) != 1:
        raise ValueError(f"Expected every tensor of `{name}` to have the same batch size but got {sorted(sizes)}")
    n = sizes.pop()
    if n == 0:
        raise ValueError(f"Expected `{name}` to hold at least one example but got an empty batch")
    if finite:
        for t in tensors:
            # a finite sum proves every value finite in one pass; only an overflowing sum needs the full check
            if t.is_floating_point() and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
                raise ValueError(f"Expected `{name}` to hold finite values but it contains NaN or inf")
    return n


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, Tensor) and value.numel() == 1:
            value = float(value.item())
        else:
            raise TypeError(f"Expected `{name}` to be a number but got {type(value).__name__}")
    value = float(value)
    bad = value < 0 if allow_zero else value <= 0
    if bad or not math.isfinite(value):
        op = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Expected `{name}` to be a finite number {op} but got {value}")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` after checking it is an int (not a bool) and ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected `{name}` to be an int but got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"Expected `{name}` to be >= {minimum} but got {value}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"Expected `{name}` to be one of {allowed} but got {value!r}")
    return value


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Check that two tensors have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"Expected `{name_a}` and `{name_b}` to have the same shape but got {tuple(a.shape)} and {tuple(b.shape)}"
        )
