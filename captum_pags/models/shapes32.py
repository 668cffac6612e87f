"""Shipped ``shapes32`` models: a class-conditional score UNet (with a null label) and an autoencoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._kernel._validation import check_int, check_positive
from ..manifold.base import TangentSpace
from ..manifold.decoder import DecoderTangent
from ..manifold.denoiser import DenoiserTangent
from ..manifold.local_pca import LocalPCATangent
from ..scores.diffusers import DiffusersScore, TimestepRule
from ._weights import WEIGHTS_DIR, load_weights

__all__ = [
    "SHAPES32_AUTOENCODER_DIR",
    "SHAPES32_NULL_CLASS",
    "SHAPES32_SCORE_WEIGHTS",
    "Shapes32Autoencoder",
    "load_shapes32_autoencoder",
    "load_shapes32_score_model",
    "shapes32_decoder_tangent",
    "shapes32_score_unet",
    "shapes32_tangent_estimators",
]

#: Label embedding used for "no class" (labels 0..4 are the shape kinds).
SHAPES32_NULL_CLASS = 5
#: Directory of the shipped score weights (``DiffusersScore.save_pretrained`` layout).
SHAPES32_SCORE_WEIGHTS = WEIGHTS_DIR / "shapes32_score"
#: Folder of the shipped ``shapes32`` autoencoder (``model.safetensors`` and ``config.json``).
SHAPES32_AUTOENCODER_DIR = WEIGHTS_DIR / "shapes32_autoencoder"


def shapes32_score_unet() -> Any:
    r"""The (untrained) architecture of the shipped ``shapes32`` score model.

    A diffusers ``UNet2DModel`` on ``(3, 32, 32)`` images: three resolutions with 16, 32 and 32
    channels, one ResNet layer per block, no attention, and 6 label embeddings (the five shape
    kinds and the null label :data:`SHAPES32_NULL_CLASS`, used with probability 0.15 in training),
    so that :math:`\nabla_x \log p_\sigma(x)` and :math:`\nabla_x \log p_\sigma(x \mid y)` come
    from one network. ``scripts/train_shapes32_score.py`` trains it.

    Returns
    -------
    diffusers.UNet2DModel
        About 264k parameters.

    Examples
    --------
    >>> unet = shapes32_score_unet()
    >>> unet.config.num_class_embeds, unet.config.block_out_channels
    (6, (16, 32, 32))
    """
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
        norm_num_groups=8,
        add_attention=False,
        num_class_embeds=SHAPES32_NULL_CLASS + 1,
    )


def load_shapes32_score_model(
    device: str | torch.device | None = None, *, timestep_rule: TimestepRule = "nearest"
) -> DiffusersScore:
    r"""Load the shipped class-conditional score model of ``shapes32`` (no download).

    Scores are in the units of :func:`~captum_pags.datasets.load_shapes32` images ([0, 1]); the
    model was trained on :math:`2x - 1` with the default ``DDPMScheduler`` (epsilon prediction):

    .. math::

        \nabla_x \log p_\sigma(x \mid y) = -2\, \hat\varepsilon(x_t, t, y) / \sigma_t,
        \qquad \sigma_t \approx 2\sigma.

    ``target=None`` gives the unconditional score (null label).

    Parameters
    ----------
    device : str or torch.device, optional
        Where to put the model (default: CPU).
    timestep_rule : {"nearest", "interpolate"}
        See :class:`~captum_pags.scores.DiffusersScore`.

    Returns
    -------
    DiffusersScore
        ``num_classes == 5``, ``supports_unconditional``, inputs ``(N, 3, 32, 32)``.

    Examples
    --------
    >>> model = load_shapes32_score_model()
    >>> model.num_classes, model.null_class
    (5, 5)
    >>> model.score(torch.full((2, 3, 32, 32), 0.5), sigma=0.25, target=[1, 4]).shape
    torch.Size([2, 3, 32, 32])
    """
    if not SHAPES32_SCORE_WEIGHTS.is_dir():
        raise FileNotFoundError(
            "The shipped shapes32 score weights are missing; reinstall captum_pags or run "
            "scripts/train_shapes32_score.py"
        )
    return DiffusersScore.from_pretrained(SHAPES32_SCORE_WEIGHTS, device=device, timestep_rule=timestep_rule)


class Shapes32Autoencoder(nn.Module):
    r"""A small convolutional autoencoder for ``(N, 3, 32, 32)`` images in [0, 1].

    .. math::

        E: \mathbb{R}^{3\times 32\times 32} \to \mathbb{R}^k, \qquad
        G: \mathbb{R}^k \to [0, 1]^{3\times 32\times 32}, \qquad \hat x = G(E(x)).

    The encoder is three stride-2 convolutions and a linear layer; the decoder mirrors it with
    transposed convolutions and ends in a sigmoid. SiLU activations keep the decoder smooth, so
    its Jacobian (the tangent space of :class:`~captum_pags.manifold.DecoderTangent`) varies
    smoothly along the data.

    Parameters
    ----------
    latent_dim : int
        ``k``, the size of the code (the data manifold has 7 dimensions, two of them periodic,
        so a few more than 7 are needed to embed it).
    channels : sequence of int
        Channels of the three convolutional stages.

    Examples
    --------
    >>> ae = Shapes32Autoencoder(latent_dim=4, channels=(2, 3, 4))
    >>> ae.encode(torch.zeros(2, 3, 32, 32)).shape, ae(torch.zeros(2, 3, 32, 32)).shape
    (torch.Size([2, 4]), torch.Size([2, 3, 32, 32]))
    """

    def __init__(self, latent_dim: int = 10, channels: Sequence[int] = (16, 32, 32)) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        if len(channels) != 3:
            raise ValueError(f"Expected `channels` to hold 3 ints but got {list(channels)}")
        c1, c2, c3 = (check_int("channels", int(c), minimum=1) for c in channels)
        self.channels = (c1, c2, c3)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(c3 * 4 * 4, latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, c3 * 4 * 4),
            nn.SiLU(),
            nn.Unflatten(1, (c3, 4, 4)),
            nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(c1, 3, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, inputs: Tensor) -> Tensor:
        """Codes ``(N, k)`` of ``(N, 3, 32, 32)`` images."""
        return self.encoder(inputs)

    def decode(self, latents: Tensor) -> Tensor:
        """Images ``(N, 3, 32, 32)`` in (0, 1) from ``(N, k)`` codes."""
        return self.decoder(latents)

    def forward(self, inputs: Tensor) -> Tensor:
        """Reconstructions ``(N, 3, 32, 32)``."""
        return self.decode(self.encode(inputs))


def load_shapes32_autoencoder(device: str | torch.device = "cpu", folder: Any = None) -> Shapes32Autoencoder:
    """Load the shipped ``shapes32`` autoencoder (no download), in eval mode.

    The weights were made by ``scripts/train_shapes32_autoencoder.py`` (seeded); its settings and
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
    Shapes32Autoencoder
        The model, in eval mode.

    Examples
    --------
    >>> ae = load_shapes32_autoencoder()
    >>> ae.latent_dim, ae.training
    (10, False)
    """
    state, config = load_weights(SHAPES32_AUTOENCODER_DIR if folder is None else folder, device)
    model = Shapes32Autoencoder(latent_dim=config["latent_dim"], channels=config["channels"])
    model.load_state_dict(state)
    return model.to(device).eval()


def shapes32_decoder_tangent(
    model: Shapes32Autoencoder | None = None, *, device: str | torch.device = "cpu", chunk_size: int | None = 64
) -> DecoderTangent:
    r"""The decoder tangent space of the ``shapes32`` autoencoder, ready to use.

    .. math::

        B(x) = \operatorname{orth}\Big(\frac{\partial G}{\partial z}\Big|_{z = E(x)}\Big)^{\top}
        \in \mathbb{R}^{k \times 3072}

    Parameters
    ----------
    model : Shapes32Autoencoder, optional
        Defaults to :func:`load_shapes32_autoencoder`.
    device : str or torch.device
        Device for the default model.
    chunk_size : int, optional
        Images per batch of Jacobians (see :class:`~captum_pags.manifold.DecoderTangent`).

    Returns
    -------
    DecoderTangent
        A ``k = latent_dim`` dimensional tangent space for ``(N, 3, 32, 32)`` inputs.

    Examples
    --------
    >>> space = shapes32_decoder_tangent()
    >>> space.basis(torch.full((2, 3, 32, 32), 0.2)).shape
    torch.Size([2, 10, 3072])
    """
    if model is None:
        model = load_shapes32_autoencoder(device)
    return DecoderTangent(model.decode, model.encode, input_shape=(3, 32, 32), chunk_size=chunk_size)


class _AtNoisyCopy(TangentSpace):
    """A tangent estimator evaluated at a fixed (seeded) noisy copy of each input: where a denoiser works."""

    def __init__(self, space: TangentSpace, sigma: float, seed: int = 0) -> None:
        super().__init__(space.input_shape)
        self.space, self.sigma, self.seed = space, check_positive("sigma", sigma), seed

    @property
    def dim(self) -> int:
        return self.space.dim

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[0]
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
        return self.space.basis(x + self.sigma * noise)

    def __repr__(self) -> str:
        return f"{self.space!r} at a noisy copy (sigma={self.sigma:g})"


def shapes32_tangent_estimators(
    device: str | torch.device = "cpu",
    *,
    dim: int = 7,
    n_neighbors: int = 40,
    sigma: float = 0.1,
    reference: Tensor | None = None,
) -> dict[str, TangentSpace]:
    r"""The three estimated tangent spaces of ``shapes32`` built from the shipped pieces.

    - ``"decoder"``: :func:`shapes32_decoder_tangent` (``k`` = the code size, 10);
    - ``"local-pca"``: :class:`~captum_pags.manifold.LocalPCATangent` of ``dim`` directions over
      the ``n_neighbors`` nearest training images;
    - ``"denoiser"``: :class:`~captum_pags.manifold.DenoiserTangent` of ``dim`` directions of the
      shipped score model's unconditional denoiser at noise ``sigma``, evaluated at a fixed
      seeded noisy copy :math:`x + \sigma\varepsilon` of each image (a clean image is off a
      denoiser's training distribution: on ten ``shapes32`` test images its mean principal angle
      to the exact space is 72 degrees at the clean images against 54 at the noisy copies).

    Compare them with the exact space by
    :func:`~captum_pags.datasets.compare_tangents` and
    :func:`~captum_pags.datasets.shapes32_tangent`.

    Parameters
    ----------
    device : str or torch.device
        Where the networks run.
    dim : int
        ``k`` of local PCA and the denoiser (default: the number of factors).
    n_neighbors : int
        Neighbours of local PCA.
    sigma : float
        Noise level of the denoiser tangent space, in [0, 1] image units.
    reference : Tensor, optional
        ``(M, 3, 32, 32)`` reference images of local PCA (default: the training split).

    Returns
    -------
    dict of str to TangentSpace
        ``{"decoder": ..., "local-pca": ..., "denoiser": ...}``.

    Examples
    --------
    >>> spaces = shapes32_tangent_estimators(reference=torch.rand(50, 3, 32, 32))
    >>> {name: space.dim for name, space in spaces.items()}
    {'decoder': 10, 'local-pca': 7, 'denoiser': 7}
    """
    from ..datasets.shapes32 import load_shapes32

    if reference is None:
        reference = load_shapes32("train").images
    score_model = load_shapes32_score_model(device)
    denoiser = DenoiserTangent(score_model, sigma, dim=dim, oversampling=8)
    return {
        "decoder": shapes32_decoder_tangent(device=device),
        "local-pca": LocalPCATangent(reference.to(device), dim=dim, n_neighbors=n_neighbors),
        "denoiser": _AtNoisyCopy(denoiser, sigma),
    }
