"""The shipped class-conditional score model of ``digits16`` (a tiny diffusers UNet)."""

from __future__ import annotations

from typing import Any

import torch

from ..scores.diffusers import DiffusersScore, TimestepRule
from ..scores.load import SHIPPED_SCORE_MODELS

__all__ = ["DIGITS16_NULL_CLASS", "DIGITS16_SCORE_WEIGHTS", "digits16_score_unet", "load_digits16_score_model"]

#: Label embedding used for "no class" (labels 0..9 are the digits).
DIGITS16_NULL_CLASS = 10
#: Directory of the shipped weights (``DiffusersScore.save_pretrained`` layout).
DIGITS16_SCORE_WEIGHTS = SHIPPED_SCORE_MODELS["digits16"]


def digits16_score_unet() -> Any:
    r"""The (untrained) architecture of the shipped ``digits16`` score model.

    A diffusers ``UNet2DModel`` on ``(1, 16, 16)`` images: two resolutions with 16 and 32
    channels, one ResNet layer per block, no attention, and 11 label embeddings (the digits and
    the null label :data:`DIGITS16_NULL_CLASS` used with probability 0.15 in training, so that

    .. math::

        \nabla_x \log p_\sigma(x) \text{ and } \nabla_x \log p_\sigma(x \mid y)

    come from one network). ``scripts/train_digits16_score.py`` trains it.

    Returns
    -------
    diffusers.UNet2DModel
        About 160k parameters.

    Examples
    --------
    >>> unet = digits16_score_unet()
    >>> unet.config.num_class_embeds, unet.config.block_out_channels
    (11, (16, 32))
    """
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        add_attention=False,
        num_class_embeds=DIGITS16_NULL_CLASS + 1,
    )


def load_digits16_score_model(
    device: str | torch.device | None = None, *, timestep_rule: TimestepRule = "nearest"
) -> DiffusersScore:
    r"""Load the shipped class-conditional score model of ``digits16`` (no download).

    Scores are in the units of :func:`~captum_pags.datasets.load_digits16` images ([0, 1]); the
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
        ``num_classes == 10``, ``supports_unconditional``, inputs ``(N, 1, 16, 16)``.

    Examples
    --------
    >>> model = load_digits16_score_model()
    >>> model.num_classes, model.null_class
    (10, 10)
    >>> model.score(torch.full((2, 1, 16, 16), 0.5), sigma=0.25, target=[3, 7]).shape
    torch.Size([2, 1, 16, 16])
    """
    if not DIGITS16_SCORE_WEIGHTS.is_dir():
        raise FileNotFoundError(
            "The shipped digits16 score weights are missing; reinstall captum_pags or run "
            "scripts/train_digits16_score.py"
        )
    return DiffusersScore.from_pretrained(DIGITS16_SCORE_WEIGHTS, device=device, timestep_rule=timestep_rule)
