"""Small reference networks and loaders for the weights the package ships."""

from .score_unet import DIGITS16_NULL_CLASS, DIGITS16_SCORE_WEIGHTS, digits16_score_unet, load_digits16_score_model

__all__ = ["DIGITS16_NULL_CLASS", "DIGITS16_SCORE_WEIGHTS", "digits16_score_unet", "load_digits16_score_model"]
