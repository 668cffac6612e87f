"""``digits16``: scikit-learn's 8x8 digits, scaled to [0, 1] and upsampled to 16x16."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from .._kernel._validation import check_choice
from ..manifold.subspace import LinearSubspace

__all__ = ["DIGITS16_SHAPE", "Digits16", "digits16_subspace", "load_digits16", "upsample_digits"]

#: Per-example shape of ``digits16`` images.
DIGITS16_SHAPE = (1, 16, 16)
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


def upsample_digits(images8: Tensor) -> Tensor:
    r"""The linear map :math:`A: \mathbb{R}^{64} \to \mathbb{R}^{256}` that makes ``digits16``.

    Bilinear upsampling (``align_corners=False``) of ``(N, 1, 8, 8)`` images to ``(N, 1, 16, 16)``.
    Every output pixel is a convex combination of input pixels, so [0, 1] stays [0, 1].

    Examples
    --------
    >>> upsample_digits(torch.ones(1, 1, 8, 8)).shape
    torch.Size([1, 1, 16, 16])
    """
    return F.interpolate(images8, size=(16, 16), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class Digits16:
    """One split of ``digits16``.

    Attributes
    ----------
    images : Tensor
        ``(N, 1, 16, 16)`` float32 in [0, 1].
    labels : Tensor
        ``(N,)`` int64 in 0..9.

    Examples
    --------
    >>> split = load_digits16("test")
    >>> len(split), len(split.dataset())
    (360, 360)
    """

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dataset(self) -> TensorDataset:
        """The split as a :class:`torch.utils.data.TensorDataset` of ``(image, label)``."""
        return TensorDataset(self.images, self.labels)


@lru_cache(maxsize=1)
def _all_digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x8 = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        range(len(y)), test_size=_TEST_FRACTION, stratify=bunch.target, random_state=_SPLIT_SEED
    )
    x16 = upsample_digits(x8)
    return x16, y, torch.as_tensor(idx_train), torch.as_tensor(idx_test)


def load_digits16(split: Literal["train", "test", "all"] = "train") -> Digits16:
    """Load ``digits16`` (shipped with scikit-learn; nothing is downloaded).

    The train/test split is stratified and fixed (80/20, seed 0): 1437 training and 360 test
    images.

    Parameters
    ----------
    split : {"train", "test", "all"}
        Which part to return.

    Returns
    -------
    Digits16
        Images ``(N, 1, 16, 16)`` in [0, 1] and labels ``(N,)``.

    Examples
    --------
    >>> d = load_digits16("test")
    >>> d.images.shape, d.labels.shape
    (torch.Size([360, 1, 16, 16]), torch.Size([360]))
    """
    check_choice("split", split, ("train", "test", "all"))
    x, y, idx_train, idx_test = _all_digits()
    if split == "all":
        return Digits16(x.clone(), y.clone())
    idx = idx_train if split == "train" else idx_test
    return Digits16(x[idx].clone(), y[idx].clone())


def digits16_subspace() -> LinearSubspace:
    r"""The exact 64-dimensional subspace that holds every ``digits16`` image.

    ``digits16`` images are :math:`A x_8` for the linear upsampling map :math:`A`
    (:func:`upsample_digits`), so they all lie in :math:`\operatorname{range}(A)`, spanned by the
    images of the 64 one-pixel 8x8 images (orthonormalised).

    Examples
    --------
    >>> space = digits16_subspace()
    >>> space.dim, tuple(space.input_shape)
    (64, (1, 16, 16))
    """
    eye = torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)
    return LinearSubspace(upsample_digits(eye).reshape(64, -1), input_shape=DIGITS16_SHAPE)
