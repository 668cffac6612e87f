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
from .load import load_score_model
from .pair import ScorePair

__all__ = [
    "AnalyticMixtureScore",
    "BayesOptimalClassifier",
    "DenoiserScore",
    "DiffusersScore",
    "GaussianMixtureScore",
    "NoiseLevel",
    "ScoreModel",
    "ScorePair",
    "SubspaceGaussianMixtureScore",
    "format_target",
    "load_score_model",
]
