"""Shared fixtures. The network is never needed: hub access is switched off for every test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def gaussian_data():
    from captum_pags.datasets import GaussianSubspaceMixture

    return GaussianSubspaceMixture(num_classes=3, intrinsic_dim=4, shape=(1, 6, 6), off_std=1e-3, seed=0)


class SmallNet(nn.Module):
    """A model with BatchNorm and Dropout, so that train/eval mode matters."""

    def __init__(self, d_in: int = 36, n_out: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(d_in, 16), nn.BatchNorm1d(16), nn.Softplus(), nn.Dropout(0.1), nn.Linear(16, n_out)
        )

    def forward(self, x):
        return self.net(x)


@pytest.fixture
def small_net():
    return SmallNet()


def model_snapshot(model: nn.Module):
    """Everything a public call must leave as it was: modes, requires_grad, grads, hooks."""
    return {
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    }


def assert_model_unchanged(model: nn.Module, before) -> None:
    after = model_snapshot(model)
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    for a, b in zip(after["grads"], before["grads"]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
    for a, b in zip(after["params"], before["params"]):
        torch.testing.assert_close(a, b)
