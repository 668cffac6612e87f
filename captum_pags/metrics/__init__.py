"""Metrics in captum.metrics style: alignment, robustness and regimes."""

from .accumulators import AlignmentAccumulator, AlignmentSummary, RobustnessAccumulator, TangentAlignmentAccumulator
from .alignment import perceptual_alignment, score_alignment
from .placement import place_model
from .regimes import (
    REGIMES,
    UNDETERMINED,
    RegimeDecision,
    RegimeReference,
    RegimeThresholds,
    regime_decisions,
    regime_rule_text,
    robustness_regime,
    sweep_reference,
)
from .robustness import ManifoldRobustness, manifold_robustness
from .tangent import random_tangent_alignment, tangent_alignment

__all__ = [
    "REGIMES",
    "UNDETERMINED",
    "AlignmentAccumulator",
    "AlignmentSummary",
    "ManifoldRobustness",
    "RegimeDecision",
    "RegimeReference",
    "RegimeThresholds",
    "RobustnessAccumulator",
    "TangentAlignmentAccumulator",
    "manifold_robustness",
    "perceptual_alignment",
    "place_model",
    "random_tangent_alignment",
    "regime_decisions",
    "regime_rule_text",
    "robustness_regime",
    "score_alignment",
    "sweep_reference",
    "tangent_alignment",
]
