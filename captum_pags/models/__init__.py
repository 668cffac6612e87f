"""Small reference networks and loaders for the weights the package ships."""

from .autoencoder import (
    DIGITS16_AUTOENCODER_DIR,
    Digits16Autoencoder,
    digits16_decoder_tangent,
    load_digits16_autoencoder,
)

__all__ = [
    "DIGITS16_AUTOENCODER_DIR",
    "Digits16Autoencoder",
    "digits16_decoder_tangent",
    "load_digits16_autoencoder",
]
