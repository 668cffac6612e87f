"""Scores of Gaussian-smoothed data densities: which way the density rises at ``x``."""

from .analytic import (
    AnalyticMixtureScore,
    BayesOptimalClassifier,
    GaussianMixtureScore,
    SubspaceGaussianMixtureScore,
)
from .base import ScoreModel, format_target

__all__ = [
    "AnalyticMixtureScore",
    "BayesOptimalClassifier",
    "GaussianMixtureScore",
    "ScoreModel",
    "SubspaceGaussianMixtureScore",
    "format_target",
]
