"""One reading of Captum-style class targets: an int, a list, a tensor or the predicted class.

Every public entry point that takes a class label per example reads it here, so that a fractional,
NaN, boolean or out-of-range label is refused the same way everywhere, with a message naming the
argument, instead of being cast to an integer without a word.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["PREDICTED", "TargetLike", "predicted_classes", "read_target"]

#: The string that asks for the model's own prediction as the target.
PREDICTED: Literal["predicted"] = "predicted"
TargetLike = None | int | Tensor | list | tuple | str


def _labels_from_values(values: Tensor, name: str) -> Tensor:
    """Integer labels of a tensor: integral floats are accepted, fractional/NaN/inf/bool are refused."""
    if values.dtype == torch.bool:
        raise TypeError(f"Expected `{name}` to hold integer class labels but got dtype {values.dtype}")
    if values.is_complex():
        raise TypeError(f"Expected `{name}` to hold integer class labels but got dtype {values.dtype}")
    if values.is_floating_point():
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            bad = values[~finite].reshape(-1)[0].item()
            raise ValueError(f"Expected `{name}` to hold integer class labels but got {bad}")
        fractional = values != torch.round(values)
        if bool(fractional.any()):
            bad = values[fractional].reshape(-1)[0].item()
            raise ValueError(f"Expected `{name}` to hold integer class labels but got the fractional value {bad}")
        # integral floats beyond 2**53 are not exact; such labels are out of any range anyway
        return values.to(torch.float64).round().long()
    return values.long()


def _as_tensor(target: Any, name: str) -> Tensor:
    if isinstance(target, Tensor):
        return target.detach()
    items = list(target)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, numbers.Real, Tensor)):
            raise TypeError(
                f"Expected `{name}` to hold integer class labels but got an element of type {type(v).__name__}"
            )
        if isinstance(v, Tensor) and v.numel() != 1:
            raise ValueError(
                f"Expected `{name}` to hold one label per example but got an element of shape {tuple(v.shape)}"
            )
    values = [v.item() if isinstance(v, Tensor) else v for v in items]
    if any(isinstance(v, float) and not (math.isfinite(v) and v == int(v)) for v in values):
        bad = next(v for v in values if isinstance(v, float) and not (math.isfinite(v) and v == int(v)))
        raise ValueError(f"Expected `{name}` to hold integer class labels but got {bad}")
    return torch.tensor([int(v) for v in values], dtype=torch.long)


def read_target(
    target: TargetLike,
    n: int,
    device: torch.device | str | None = None,
    *,
    num_classes: int | None = None,
    name: str = "target",
    predict: Callable[[], Tensor] | None = None,
    required: bool = False,
) -> Tensor | None:
    """Turn a Captum-style class target into a ``(N,)`` long tensor (or None).

    Accepted forms: ``None``; one int for every example (Python or NumPy integer); a list, tuple
    or tensor of ``N`` labels (integer dtype, or floats with integral values); the string
    ``"predicted"``, which calls ``predict()`` for ``(N, C)`` class scores and takes their
    arg-max (only where the caller supports it).

    Parameters
    ----------
    target : int, list, tuple, Tensor, "predicted" or None
        The labels.
    n : int
        Number of examples ``N``.
    device : torch.device, optional
        Device of the returned tensor.
    num_classes : int, optional
        If given, every label must lie in ``[0, num_classes)``.
    name : str
        Argument name used in error messages.
    predict : Callable, optional
        Returns ``(N, C)`` class scores; enables ``target="predicted"``. NaN scores are refused
        (a NaN never decides a class).
    required : bool
        Refuse ``None``.

    Returns
    -------
    Tensor or None
        ``(N,)`` ``torch.long`` labels on ``device``.

    Raises
    ------
    TypeError
        For booleans, strings other than ``"predicted"``, complex or boolean tensors and other types.
    ValueError
        For fractional, NaN or infinite labels, wrong lengths, labels outside ``[0, num_classes)``,
        ``None`` when ``required``, and NaN predicted scores.

    Examples
    --------
    >>> read_target(1, 3)
    tensor([1, 1, 1])
    >>> read_target(torch.tensor([2.0, 0.0]), 2, num_classes=3)
    tensor([2, 0])
    >>> read_target("predicted", 2, predict=lambda: torch.tensor([[0.1, 0.9], [2.0, -1.0]]))
    tensor([1, 0])
    """
    if target is None:
        if required:
            raise ValueError(f"Expected `{name}` (the class of each example) but got None")
        return None
    if isinstance(target, str):
        if target != PREDICTED:
            raise TypeError(
                f"Expected `{name}` to be an int, a list of ints, a tensor or 'predicted' but got {target!r}"
            )
        if predict is None:
            raise ValueError(
                f"Expected `{name}` to be class labels here; 'predicted' is not supported by this function"
            )
        labels = predicted_classes(predict(), n, name=name)
    elif isinstance(target, bool):
        raise TypeError(f"Expected `{name}` to be an int, a list of ints or a tensor but got bool")
    elif isinstance(target, numbers.Integral):
        labels = torch.full((n,), int(target), dtype=torch.long)
    elif isinstance(target, numbers.Real):
        labels = _labels_from_values(torch.tensor([float(target)]), name).expand(n)
    elif isinstance(target, (list, tuple, Tensor)):
        labels = _labels_from_values(_as_tensor(target, name), name)
        if labels.dim() == 0:
            labels = labels.expand(n)
        elif labels.shape == (n, 1):  # a column of labels, as Captum accepts
            labels = labels.reshape(n)
        if labels.shape != (n,):
            raise ValueError(
                f"Expected `{name}` to have shape ({n},) (one label per example) but got {tuple(labels.shape)}"
            )
    else:
        raise TypeError(
            f"Expected `{name}` to be an int, a list of ints, a tensor or 'predicted' but got {type(target).__name__}"
        )
    if num_classes is not None and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"Expected `{name}` labels in [0, {num_classes}) but got values in [{lo}, {hi}]")
    elif labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"Expected `{name}` labels to be >= 0 but got {int(labels.min())}")
    return labels.to(device) if device is not None else labels


def predicted_classes(scores: Tensor, n: int, *, name: str = "target") -> Tensor:
    """Arg-max classes of ``(N, C)`` class scores; NaN scores are refused, never decide a class.

    Examples
    --------
    >>> predicted_classes(torch.tensor([[0.0, 1.0], [3.0, 2.0]]), 2)
    tensor([1, 0])
    """
    if not isinstance(scores, Tensor) or scores.dim() != 2 or scores.shape[0] != n:
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"Expected the model to return (N={n}, C) class scores for `{name}`='predicted' but got {got}")
    scores = scores.detach()
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        bad = int(torch.isnan(scores).any(1).sum())
        raise ValueError(
            f"Expected finite class scores to pick the predicted class for `{name}`='predicted' but {bad} example(s) "
            "have NaN scores"
        )
    return scores.argmax(1)
