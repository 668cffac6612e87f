"""Small reference networks and loaders for the weights the package ships."""

from .autoencoder import (
    DIGITS16_AUTOENCODER_DIR,
    Digits16Autoencoder,
    digits16_decoder_tangent,
    load_digits16_autoencoder,
)
from .classifiers import MLP, SmallCNN
from .score_unet import DIGITS16_NULL_CLASS, DIGITS16_SCORE_WEIGHTS, digits16_score_unet, load_digits16_score_model

__all__ = [
    "DIGITS16_AUTOENCODER_DIR",
    "DIGITS16_NULL_CLASS",
    "DIGITS16_SCORE_WEIGHTS",
    "MLP",
    "Digits16Autoencoder",
    "SmallCNN",
    "digits16_decoder_tangent",
    "digits16_score_unet",
    "load_digits16_autoencoder",
    "load_digits16_score_model",
]
