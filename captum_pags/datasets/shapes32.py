"""``shapes32``: an embedded 3x32x32 colour dataset on an exactly known curved manifold."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from .._kernel._validation import check_choice
from .shapes32_render import _RANGES, SHAPES32_CLASSES, render_shapes32

__all__ = ["SHAPES32_SIZES", "Shapes32", "load_shapes32"]

#: Number of images per split.
SHAPES32_SIZES = {"train": 5000, "test": 1000}
_SEEDS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Shapes32:
    """One split of ``shapes32``.

    Attributes
    ----------
    images : Tensor
        ``(N, 3, 32, 32)`` float32 in [0, 1], ``render_shapes32(factors, labels)``.
    labels : Tensor
        ``(N,)`` int64 shape kinds in 0..4 (:data:`SHAPES32_CLASSES`), balanced.
    factors : Tensor
        ``(N, 7)`` float64 factors (:data:`SHAPES32_FACTORS`), uniform in
        :data:`SHAPES32_FACTOR_RANGES`.

    Examples
    --------
    >>> split = load_shapes32("test")
    >>> len(split), tuple(split.factors.shape), len(split.dataset())
    (1000, (1000, 7), 1000)
    """

    images: Tensor
    labels: Tensor
    factors: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dataset(self) -> TensorDataset:
        """The split as a :class:`torch.utils.data.TensorDataset` of ``(image, label)``."""
        return TensorDataset(self.images, self.labels)


@lru_cache(maxsize=2)
def _split(split: str) -> tuple[Tensor, Tensor, Tensor]:
    n = SHAPES32_SIZES[split]
    gen = torch.Generator().manual_seed(_SEEDS[split])
    labels = torch.arange(n) % len(SHAPES32_CLASSES)
    labels = labels[torch.randperm(n, generator=gen)]
    low, high = torch.tensor(_RANGES, dtype=torch.float64).unbind(1)
    factors = low + (high - low) * torch.rand(n, len(low), generator=gen, dtype=torch.float64)
    # rendered in float64 and rounded once, so the images do not depend on the batch size
    images = torch.cat([render_shapes32(f, y) for f, y in zip(factors.split(500), labels.split(500))])
    return images.float(), labels, factors


def load_shapes32(split: Literal["train", "test"] = "train") -> Shapes32:
    """Load a split of ``shapes32``, rendered on the fly (no files; kept in memory after the first call).

    5000 training and 1000 test images; labels are balanced over the five shape kinds and the
    factors are drawn uniformly from :data:`SHAPES32_FACTOR_RANGES` with a fixed seed per split,
    so every call returns the same tensors. Images are :func:`render_shapes32` of the factors
    (computed in float64, stored as float32).

    Parameters
    ----------
    split : {"train", "test"}
        Which part to return.

    Returns
    -------
    Shapes32
        ``images`` ``(N, 3, 32, 32)`` float32, ``labels`` ``(N,)`` int64, ``factors`` ``(N, 7)``
        float64.

    Examples
    --------
    >>> d = load_shapes32("test")
    >>> d.images.shape, d.labels.dtype, d.factors.shape
    (torch.Size([1000, 3, 32, 32]), torch.int64, torch.Size([1000, 7]))
    >>> bool(torch.equal(render_shapes32(d.factors[:3], d.labels[:3]).float(), d.images[:3]))
    True
    """
    check_choice("split", split, tuple(SHAPES32_SIZES))
    images, labels, factors = _split(split)
    return Shapes32(images.clone(), labels.clone(), factors.clone())
