"""Tangent spaces of the data manifold: where is the data at ``x``."""

from .base import TangentSpace, orthonormal_rows, principal_angles, project_onto_rows
from .cached import CachedTangent
from .decoder import DecoderTangent
from .denoiser import DenoiserTangent, intrinsic_dimension
from .local_pca import LocalPCATangent
from .subspace import LinearSubspace

__all__ = [
    "CachedTangent",
    "DecoderTangent",
    "DenoiserTangent",
    "LinearSubspace",
    "LocalPCATangent",
    "TangentSpace",
    "intrinsic_dimension",
    "orthonormal_rows",
    "principal_angles",
    "project_onto_rows",
]
