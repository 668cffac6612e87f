"""Captum attribution methods built on manifold geometry and diffusion scores."""

from .manifold_gradient import ManifoldGradient, input_gradients

__all__ = ["ManifoldGradient", "input_gradients"]
