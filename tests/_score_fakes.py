"""Fake and tiny diffusers UNets shared by the score-model tests.

``ExactUNet`` returns the prediction of an exact Gaussian-mixture score, so every conversion in
the wrappers can be checked to float precision; ``tiny_unet`` builds a small real
``UNet2DModel`` (optionally with attention, at any size).
"""

import math
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from torch import nn


def log_sigmas(scheduler):
    abar = scheduler.alphas_cumprod.double()
    return 0.5 * torch.log((1 - abar) / abar)


class ExactUNet(nn.Module):
    """A fake diffusers UNet whose prediction comes from an exact score, computed independently in float64.

    It reads sigma_t off the timestep it is given (integer: the scheduler's alphas_cumprod;
    fractional: log sigma_t interpolated linearly between neighbouring timesteps) and returns
    eps = -sigma_t * score, or the v / x0 equivalent, at x_t, in model units x_m = a x + b.
    """

    def __init__(self, exact, scheduler, prediction_type, null_class=None, data_range=(0.0, 1.0), conditional=True):
        super().__init__()
        self.exact, self.prediction_type, self.null_class = exact, prediction_type, null_class
        self.log_sigmas = log_sigmas(scheduler).numpy()
        self.a = 2.0 / (data_range[1] - data_range[0])
        self.b = -1.0 - self.a * data_range[0]
        embeds = None if not conditional else exact.num_classes + (null_class is not None)
        self.config = {"in_channels": 1, "num_class_embeds": embeds}
        self.weight = nn.Parameter(torch.zeros(()))  # gives the model a dtype and a state to check
        self.timesteps_seen = []

    def forward(self, sample, timestep, class_labels=None):
        assert timestep.shape == (sample.shape[0],) and bool((timestep == timestep[0]).all())
        self.timesteps_seen.append(timestep[0].item())
        log_sigma = np.interp(float(timestep[0]), np.arange(self.log_sigmas.size), self.log_sigmas)
        sigma_t = math.exp(log_sigma)
        abar = 1.0 / (1.0 + sigma_t**2)
        x_t = sample.double()
        x_m = x_t / math.sqrt(abar)
        x_u, sigma_u = (x_m - self.b) / self.a, sigma_t / self.a
        if class_labels is None:
            score_u = self.exact.score(x_u, sigma_u)
        else:
            null = torch.zeros_like(class_labels, dtype=torch.bool)
            labels = class_labels.clone()
            if self.null_class is not None:
                null = class_labels == self.null_class
                labels = labels - (labels > self.null_class).long()
            cond = self.exact.score(x_u, sigma_u, labels.clamp(0, self.exact.num_classes - 1))
            score_u = torch.where(null.view(-1, 1, 1, 1), self.exact.score(x_u, sigma_u), cond)
        score_m = score_u / self.a
        eps = -sigma_t * score_m
        if self.prediction_type == "epsilon":
            out = eps
        elif self.prediction_type == "sample":
            out = x_m + sigma_t**2 * score_m
        else:
            out = math.sqrt(abar) * eps - math.sqrt(1 - abar) * (x_m + sigma_t**2 * score_m)
        return SimpleNamespace(sample=out.to(sample.dtype) + self.weight)


class ExactUNetLearnedTime(ExactUNet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config = {**self.config, "time_embedding_type": "learned"}


def tiny_unet(num_class_embeds=None, **overrides):
    settings = dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_class_embeds,
        dropout=0.1,
    )
    settings.update(overrides)
    return UNet2DModel(**settings)


def attention_unet(size=32, channels=3, num_class_embeds=None):
    """A random-init UNet2DModel with an attention block at ``channels x size x size``, small widths."""
    return tiny_unet(
        num_class_embeds,
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        dropout=0.0,
    )


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
