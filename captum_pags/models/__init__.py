"""Small reference networks and loaders for the weights the package ships."""

from .autoencoder import (
    DIGITS16_AUTOENCODER_DIR,
    Digits16Autoencoder,
    digits16_decoder_tangent,
    load_digits16_autoencoder,
)
from .classifiers import MLP, ConvNet, SmallCNN
from .score_unet import DIGITS16_NULL_CLASS, DIGITS16_SCORE_WEIGHTS, digits16_score_unet, load_digits16_score_model
from .shapes32 import (
    SHAPES32_AUTOENCODER_DIR,
    SHAPES32_NULL_CLASS,
    SHAPES32_SCORE_WEIGHTS,
    Shapes32Autoencoder,
    load_shapes32_autoencoder,
    load_shapes32_score_model,
    shapes32_decoder_tangent,
    shapes32_score_unet,
    shapes32_tangent_estimators,
)

__all__ = [
    "DIGITS16_AUTOENCODER_DIR",
    "DIGITS16_NULL_CLASS",
    "DIGITS16_SCORE_WEIGHTS",
    "MLP",
    "SHAPES32_AUTOENCODER_DIR",
    "SHAPES32_NULL_CLASS",
    "SHAPES32_SCORE_WEIGHTS",
    "ConvNet",
    "Digits16Autoencoder",
    "Shapes32Autoencoder",
    "SmallCNN",
    "digits16_decoder_tangent",
    "digits16_score_unet",
    "load_digits16_autoencoder",
    "load_digits16_score_model",
    "load_shapes32_autoencoder",
    "load_shapes32_score_model",
    "shapes32_decoder_tangent",
    "shapes32_score_unet",
    "shapes32_tangent_estimators",
]
