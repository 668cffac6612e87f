"""Scores of Gaussian-smoothed data densities: which way the density rises at ``x``."""

from .analytic import (
    AnalyticMixtureScore,
    BayesOptimalClassifier,
    GaussianMixtureScore,
    SubspaceGaussianMixtureScore,
)
from .base import ScoreModel, format_target
from .denoiser import DenoiserScore
from .diffusers import DiffusersScore, NoiseLevel

__all__ = [
    "AnalyticMixtureScore",
    "BayesOptimalClassifier",
    "DenoiserScore",
    "DiffusersScore",
    "GaussianMixtureScore",
    "NoiseLevel",
    "ScoreModel",
    "SubspaceGaussianMixtureScore",
    "format_target",
]
