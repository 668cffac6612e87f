"""What makes models robust: losses, attacks, smoothing and a training loop."""

from .attacks import PGD
from .checkpoint import load_checkpoint
from .fit import FitHistory, fit
from .losses import (
    AdversarialLoss,
    GradientNormLoss,
    LossParts,
    NoiseConsistencyLoss,
    RandomizedSmoothingLoss,
    ScoreAlignmentLoss,
    StandardLoss,
    TrainingLoss,
)
from .smoothing import ABSTAIN, Certificate, SmoothedClassifier

__all__ = [
    "ABSTAIN",
    "PGD",
    "AdversarialLoss",
    "Certificate",
    "FitHistory",
    "GradientNormLoss",
    "LossParts",
    "NoiseConsistencyLoss",
    "RandomizedSmoothingLoss",
    "ScoreAlignmentLoss",
    "SmoothedClassifier",
    "StandardLoss",
    "TrainingLoss",
    "fit",
    "load_checkpoint",
]
