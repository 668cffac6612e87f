"""Metrics in captum.metrics style: alignment, robustness and regimes."""

from .alignment import (
    AlignmentAccumulator,
    AlignmentSummary,
    TangentAlignmentAccumulator,
    perceptual_alignment,
    random_tangent_alignment,
    score_alignment,
    tangent_alignment,
)
from .robustness import REGIMES, ManifoldRobustness, RobustnessAccumulator, manifold_robustness, robustness_regime

__all__ = [
    "REGIMES",
    "AlignmentAccumulator",
    "AlignmentSummary",
    "ManifoldRobustness",
    "RobustnessAccumulator",
    "TangentAlignmentAccumulator",
    "manifold_robustness",
    "perceptual_alignment",
    "random_tangent_alignment",
    "robustness_regime",
    "score_alignment",
    "tangent_alignment",
]
