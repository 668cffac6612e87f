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
from .regimes import (
    REGIMES,
    UNDETERMINED,
    RegimeDecision,
    RegimeReference,
    RegimeThresholds,
    place_model,
    regime_decisions,
    regime_rule_text,
    robustness_regime,
    sweep_reference,
)
from .robustness import ManifoldRobustness, RobustnessAccumulator, manifold_robustness

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
