"""Checks shared by the losses, the attack and the smoothed classifier, before any forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._kernel._model_state import owning_module, unwrap_parallel


def check_float_inputs(name: str, tensors: tuple[Tensor, ...], model: Any) -> None:
    """Floating-point inputs of the dtype of the model's floating-point parameters (if it has any).

    Integer inputs would be truncated by the noise and the steps; a dtype other than the model's
    fails deep inside its first layer, so both are refused here with the argument's name.
    """
    for t in tensors:
        if not t.is_floating_point():
            raise TypeError(f"Expected `{name}` to be a floating point tensor but got dtype {t.dtype}")
    module = owning_module(unwrap_parallel(model))
    if module is None:
        return
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    if len(dtypes) != 1:
        return
    (dtype,) = dtypes
    for t in tensors:
        if t.dtype != dtype:
            raise TypeError(
                f"Expected `{name}` to have the dtype of the model's parameters ({dtype}) but got {t.dtype}"
            )


def format_labels(name: str, targets: Any, n: int, device: torch.device) -> Tensor:
    """``(n,)`` int64 class labels from an int, a sequence of ints or an integer tensor.

    Floating-point labels (fractional or NaN) are refused rather than cast, booleans and None too.
    """
    if targets is None or isinstance(targets, bool):
        raise TypeError(
            f"Expected `{name}` to be class labels (an int, a list of ints or an integer tensor) but got {targets!r}"
        )
    if isinstance(targets, int):
        return torch.full((n,), targets, dtype=torch.long, device=device)
    if not isinstance(targets, (list, tuple, Tensor)):
        raise TypeError(
            f"Expected `{name}` to be class labels (an int, a list of ints or an integer tensor) "
            f"but got {type(targets).__name__}"
        )
    try:
        labels = torch.as_tensor(targets, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"Expected `{name}` to be class labels but could not read them: {err}") from err
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"Expected `{name}` to hold integer class labels but got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"Expected `{name}` to have shape ({n},) but got {tuple(labels.shape)}")
    return labels.long()


def check_labels_nonnegative(labels: Tensor) -> int:
    """The largest label (one synchronisation), after checking none is negative."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"Expected `targets` to be class labels >= 0 but got values in [{low}, {high}]")
    return high


def check_logits(logits: Any, n: int, label_max: int) -> Tensor:
    """``(n, C)`` logits whose class count covers every label."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != n:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"Expected `model` to return logits of shape ({n}, C) but got {shape}")
    if label_max >= logits.shape[1]:
        raise ValueError(
            f"Expected `targets` labels in [0, {logits.shape[1]}) (the model's classes) but got a label {label_max}"
        )
    return logits


__all__ = ["check_float_inputs", "check_labels_nonnegative", "check_logits", "format_labels"]
