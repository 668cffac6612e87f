"""Tangent spaces of the data manifold: where is the data at ``x``."""

from .base import TangentSpace, orthonormal_rows, project_onto_rows
from .subspace import LinearSubspace

__all__ = ["LinearSubspace", "TangentSpace", "orthonormal_rows", "project_onto_rows"]
