"""Captum attribution methods built on manifold geometry and diffusion scores."""

from .manifold_gradient import ManifoldGradient, input_gradients
from .score_map import ScoreAttribution

__all__ = ["ManifoldGradient", "ScoreAttribution", "input_gradients"]
