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
from .paper_units import PAPER_BATCH_SIZE, PAPER_GRIDS, from_paper_strength, to_paper_strength
from .smoothing import ABSTAIN, Certificate, SmoothedClassifier

__all__ = [
    "ABSTAIN",
    "PAPER_BATCH_SIZE",
    "PAPER_GRIDS",
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
    "from_paper_strength",
    "load_checkpoint",
    "to_paper_strength",
]
