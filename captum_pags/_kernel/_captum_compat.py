"""The one place where Captum's private helpers are used.

Captum keeps these under ``captum._utils``; wrapping them here means a change in Captum touches
one file, which ``tests/test_captum_compat.py`` checks against Captum's own behaviour.
"""

from __future__ import annotations

from typing import Any

from captum._utils.common import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _run_forward,
    _select_targets,
)
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from torch import Tensor

__all__ = [
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
    "expand_forward_args",
    "expand_target",
    "format_output",
    "run_forward",
]


def run_forward(
    forward_func: Any, inputs: tuple[Tensor, ...], target: Any = None, additional_forward_args: Any = None
) -> Tensor:
    """Call ``forward_func(*inputs, *additional_forward_args)`` and select ``target`` like Captum.

    Captum's target selection raises bare ``AssertionError`` for malformed targets; these become
    :class:`ValueError` naming ``target``.
    """
    out = _run_forward(forward_func, inputs, None, additional_forward_args)
    if not isinstance(out, Tensor):
        raise TypeError(f"Expected `forward_func` to return a torch.Tensor but it returned {type(out).__name__}")
    if target is None:
        return out
    try:
        return _select_targets(out, target)
    except AssertionError as err:  # only Captum's target checks: the model's own errors pass unchanged
        raise ValueError(f"Expected `target` to index the model's output but got {target!r}: {err}") from err


def format_output(is_tuple: bool, outputs: tuple[Tensor, ...]) -> Any:
    """Return a single tensor or a tuple, mirroring the form of the user's inputs."""
    return _format_output(is_tuple, outputs)


def _expansion(interleave: bool) -> ExpansionTypes:
    return ExpansionTypes.repeat_interleave if interleave else ExpansionTypes.repeat


def expand_target(target: Any, n_samples: int, *, interleave: bool = False) -> Any:
    """Repeat a per-example ``target`` ``n_samples`` times.

    ``interleave=False`` tiles the batch (``[a, b, a, b]``, Captum's default, used by NoiseTunnel);
    ``interleave=True`` repeats each example in place (``[a, a, b, b]``).
    """
    return _expand_target(target, n_samples, _expansion(interleave))


def expand_forward_args(additional_forward_args: Any, n_samples: int, *, interleave: bool = False) -> Any:
    """Repeat per-example additional forward arguments ``n_samples`` times (see :func:`expand_target`)."""
    args = _format_additional_forward_args(additional_forward_args)
    if args is None:
        return None
    return _expand_additional_forward_args(args, n_samples, _expansion(interleave))
