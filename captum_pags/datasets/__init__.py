"""Embedded data: ``digits16``, ``shapes32`` (an exactly known curved manifold) and synthetic mixtures."""

from .digits import DIGITS16_SHAPE, Digits16, digits16_subspace, load_digits16, upsample_digits
from .gaussian_subspace import GaussianSubspaceMixture
from .shapes32 import SHAPES32_SIZES, Shapes32, load_shapes32
from .shapes32_render import (
    SHAPES32_CLASSES,
    SHAPES32_FACTOR_RANGES,
    SHAPES32_FACTORS,
    SHAPES32_SHAPE,
    render_shapes32,
)
from .shapes32_tangent import Shapes32Tangent, compare_tangents, shapes32_jacobian, shapes32_tangent

__all__ = [
    "DIGITS16_SHAPE",
    "SHAPES32_CLASSES",
    "SHAPES32_FACTORS",
    "SHAPES32_FACTOR_RANGES",
    "SHAPES32_SHAPE",
    "SHAPES32_SIZES",
    "Digits16",
    "GaussianSubspaceMixture",
    "Shapes32",
    "Shapes32Tangent",
    "compare_tangents",
    "digits16_subspace",
    "load_digits16",
    "load_shapes32",
    "render_shapes32",
    "shapes32_jacobian",
    "shapes32_tangent",
    "upsample_digits",
]
