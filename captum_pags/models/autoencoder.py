"""A tiny convolutional autoencoder for ``digits16`` and its shipped weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .._kernel._validation import check_int
from ..manifold.decoder import DecoderTangent
from ._weights import WEIGHTS_DIR, load_weights

__all__ = ["DIGITS16_AUTOENCODER_DIR", "Digits16Autoencoder", "digits16_decoder_tangent", "load_digits16_autoencoder"]

#: Folder of the shipped ``digits16`` autoencoder (``model.safetensors`` and ``config.json``).
DIGITS16_AUTOENCODER_DIR = WEIGHTS_DIR / "digits16_autoencoder"


class Digits16Autoencoder(nn.Module):
    r"""A small convolutional autoencoder for ``(N, 1, 16, 16)`` images in [0, 1].

    .. math::

        E: \mathbb{R}^{1\times 16\times 16} \to \mathbb{R}^k, \qquad
        G: \mathbb{R}^k \to [0, 1]^{1\times 16\times 16}, \qquad \hat x = G(E(x)).

    The encoder is two stride-2 convolutions and a linear layer; the decoder mirrors it with
    transposed convolutions and ends in a sigmoid. SiLU activations keep the decoder smooth, so
    its Jacobian (the tangent space of :class:`~captum_pags.manifold.DecoderTangent`) varies
    smoothly along the data.

    Parameters
    ----------
    latent_dim : int
        ``k``, the size of the code.
    channels : sequence of int
        Channels of the two convolutional stages.

    Examples
    --------
    >>> ae = Digits16Autoencoder(latent_dim=4, channels=(2, 3))
    >>> ae.encode(torch.zeros(2, 1, 16, 16)).shape, ae(torch.zeros(2, 1, 16, 16)).shape
    (torch.Size([2, 4]), torch.Size([2, 1, 16, 16]))
    """

    def __init__(self, latent_dim: int = 16, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        if len(channels) != 2:
            raise ValueError(f"Expected `channels` to hold 2 ints but got {list(channels)}")
        c1, c2 = (check_int("channels", int(c), minimum=1) for c in channels)
        self.channels = (c1, c2)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, c2 * 4 * 4),
            nn.SiLU(),
            nn.Unflatten(1, (c2, 4, 4)),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, inputs: Tensor) -> Tensor:
        """Codes ``(N, k)`` of ``(N, 1, 16, 16)`` images."""
        return self.encoder(inputs)

    def decode(self, latents: Tensor) -> Tensor:
        """Images ``(N, 1, 16, 16)`` in (0, 1) from ``(N, k)`` codes."""
        return self.decoder(latents)

    def forward(self, inputs: Tensor) -> Tensor:
        """Reconstructions ``(N, 1, 16, 16)``."""
        return self.decode(self.encode(inputs))


def load_digits16_autoencoder(
    device: str | torch.device = "cpu", folder: str | Path | None = None
) -> Digits16Autoencoder:
    """Load the shipped ``digits16`` autoencoder (no download), in eval mode.

    The weights were made by ``scripts/train_digits16_autoencoder.py`` (seeded); its settings and
    test reconstruction error are in ``config.json`` next to them.

    Parameters
    ----------
    device : str or torch.device
        Where to put the model.
    folder : str or Path, optional
        A folder with ``model.safetensors`` and ``config.json`` (e.g. retrained weights);
        defaults to the shipped ones.

    Returns
    -------
    Digits16Autoencoder
        The model, in eval mode.

    Examples
    --------
    >>> ae = load_digits16_autoencoder()
    >>> ae.latent_dim, ae.training
    (16, False)
    """
    state, config = load_weights(DIGITS16_AUTOENCODER_DIR if folder is None else folder, device)
    model = Digits16Autoencoder(latent_dim=config["latent_dim"], channels=config["channels"])
    model.load_state_dict(state)
    return model.to(device).eval()


def digits16_decoder_tangent(
    model: Digits16Autoencoder | None = None, *, device: str | torch.device = "cpu", chunk_size: int | None = 64
) -> DecoderTangent:
    r"""The decoder tangent space of the ``digits16`` autoencoder, ready to use.

    .. math::

        B(x) = \operatorname{orth}\Big(\frac{\partial G}{\partial z}\Big|_{z = E(x)}\Big)^{\top}
        \in \mathbb{R}^{k \times 256}

    Parameters
    ----------
    model : Digits16Autoencoder, optional
        Defaults to :func:`load_digits16_autoencoder`.
    device : str or torch.device
        Device for the default model.
    chunk_size : int, optional
        Images per batch of Jacobians (see :class:`~captum_pags.manifold.DecoderTangent`).

    Returns
    -------
    DecoderTangent
        A ``k = 16`` dimensional tangent space for ``(N, 1, 16, 16)`` inputs.

    Examples
    --------
    >>> space = digits16_decoder_tangent()
    >>> space.basis(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 16, 256])
    """
    if model is None:
        model = load_digits16_autoencoder(device)
    return DecoderTangent(model.decode, model.encode, input_shape=(1, 16, 16), chunk_size=chunk_size)
