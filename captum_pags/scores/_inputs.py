"""What score models accept: class labels, input dtypes and devices, and the dtype results come back in."""

from __future__ import annotations

import torch
from torch import Tensor

TargetLike = None | int | Tensor | list
#: Dtypes evaluated in float32 and returned in their own precision.
LOW_PRECISION = (torch.float16, torch.bfloat16)

__all__ = ["LOW_PRECISION", "TargetLike", "cast_result", "check_has_data", "format_target", "promote_inputs"]


def format_target(target: TargetLike, n: int, device: torch.device, num_classes: int | None) -> Tensor | None:
    """Turn ``target`` (None, int, list or tensor) into a ``(N,)`` long tensor on ``device``.

    Raises :class:`ValueError` for wrong lengths or labels outside ``[0, num_classes)``.

    Examples
    --------
    >>> format_target(1, 3, torch.device("cpu"), num_classes=2)
    tensor([1, 1, 1])
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("Expected `target` to be an int, a list of ints or a tensor but got bool")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long, device=device)
    elif isinstance(target, (list, tuple, Tensor)):
        t = torch.as_tensor(target, device=device)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"Expected `target` to hold integer labels but got dtype {t.dtype}")
        t = t.long()
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"Expected `target` to have shape ({n},) but got {tuple(t.shape)}")
    else:
        raise TypeError(f"Expected `target` to be an int, a list of ints or a tensor but got {type(target).__name__}")
    if num_classes is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(
            f"Expected `target` labels in [0, {num_classes}) but got values in [{int(t.min())}, {int(t.max())}]"
        )
    return t


def promote_inputs(inputs: Tensor) -> Tensor:
    """Integer inputs as floats of the default dtype (never truncated, uint8 never wraps); floats unchanged.

    Examples
    --------
    >>> promote_inputs(torch.tensor([[0, 255]], dtype=torch.uint8))
    tensor([[  0., 255.]])
    """
    if inputs.is_complex() or inputs.dtype == torch.bool:
        raise TypeError(f"Expected `inputs` to be a real floating or integer tensor but got dtype {inputs.dtype}")
    return inputs if inputs.is_floating_point() else inputs.to(torch.get_default_dtype())


def check_has_data(name: str, inputs: Tensor) -> None:
    """Refuse tensors without data (the ``meta`` device), whose values no check can read."""
    if inputs.device.type == "meta":
        raise ValueError(f"Expected `{name}` on a device that holds data (cpu, cuda, ...) but got a meta tensor")


def cast_result(out: Tensor, dtype: torch.dtype) -> Tensor:
    """``out`` in ``dtype``; a score that overflows a low-precision dtype is refused, never returned as inf.

    A model that returns NaN or inf for the (finite, validated) inputs is refused too: its
    scores would otherwise decide results silently.
    """
    if not bool(torch.isfinite(out.detach().sum())) and not bool(torch.isfinite(out.detach()).all()):
        raise ValueError(
            "Expected the score model to return finite scores for finite `inputs` but it returned NaN or inf; "
            "check the network's weights and `sigma`"
        )
    if out.dtype == dtype:
        return out
    cast = out.to(dtype)
    if dtype in LOW_PRECISION and not bool(torch.isfinite(cast).all()):
        raise ValueError(
            f"Expected scores representable in the inputs' dtype {dtype} but they overflow it (largest magnitude "
            f"{float(out.abs().max()):.3g}); pass float32 `inputs`"
        )
    return cast
