"""Metrics in captum.metrics style: alignment, robustness and regimes."""

from .accumulators import AlignmentAccumulator, AlignmentSummary, RobustnessAccumulator, TangentAlignmentAccumulator
from .alignment import perceptual_alignment, score_alignment
from .robustness import REGIMES, ManifoldRobustness, manifold_robustness, robustness_regime
from .tangent import random_tangent_alignment, tangent_alignment

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
