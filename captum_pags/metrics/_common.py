"""Private helpers shared by the metric modules: chunk sizes, undefined values, row scaling."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .._kernel._validation import check_int
from ..manifold.base import TangentSpace

TensorOrTuple = Tensor | tuple[Tensor, ...]


def _check_chunk(max_examples_per_batch: int | None) -> int | None:
    if max_examples_per_batch is not None:
        check_int("max_examples_per_batch", max_examples_per_batch, minimum=1)
    return max_examples_per_batch


def _warn_undefined(values: Tensor, what: str) -> None:
    bad = int(torch.isnan(values).sum())
    if bad:
        warnings.warn(
            f"{bad} of {values.shape[0]} example(s) have {what}; their alignment is NaN", RuntimeWarning, stacklevel=4
        )


def _scale_rows(flat: Tensor) -> Tensor:
    """Divide each row by its largest absolute value (zero rows stay zero): guards norms against under/overflow."""
    peak = flat.abs().amax(dim=1, keepdim=True)
    return flat / torch.where(peak > 0, peak, torch.ones_like(peak))


def _check_tangent_space(tangent_space: object) -> TangentSpace:
    if not isinstance(tangent_space, TangentSpace):
        raise TypeError(
            f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
        )
    return tangent_space
