"""Embedded data: ``digits16`` and synthetic data with a known manifold and exact score."""

from .digits import DIGITS16_SHAPE, Digits16, digits16_subspace, load_digits16, upsample_digits
from .gaussian_subspace import GaussianSubspaceMixture

__all__ = [
    "DIGITS16_SHAPE",
    "Digits16",
    "GaussianSubspaceMixture",
    "digits16_subspace",
    "load_digits16",
    "upsample_digits",
]
