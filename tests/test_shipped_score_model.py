import socket

import pytest
import torch
import torch.nn.functional as F

from captum_pags.attr import ScoreAttribution
from captum_pags.datasets import load_digits16
from captum_pags.models import DIGITS16_SCORE_WEIGHTS, load_digits16_score_model
from captum_pags.scores import DiffusersScore


@pytest.fixture(scope="module")
def model():
    return load_digits16_score_model()


@pytest.fixture(scope="module")
def held_out():
    return load_digits16("test")


def _noisy(images, sigma, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return images + sigma * torch.randn(images.shape, generator=gen)


def test_shipped_files_are_small_safetensors_and_load_offline(monkeypatch):
    files = [p for p in DIGITS16_SCORE_WEIGHTS.rglob("*") if p.is_file()]
    names = sorted(p.relative_to(DIGITS16_SCORE_WEIGHTS).as_posix() for p in files)
    assert names == [
        "scheduler/scheduler_config.json",
        "score_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    assert sum(p.stat().st_size for p in files) < 3 * 2**20

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    loaded = load_digits16_score_model()
    assert isinstance(loaded, DiffusersScore)
    assert (loaded.num_classes, loaded.null_class, loaded.in_channels) == (10, 10, 1)
    assert loaded.supports_unconditional and not loaded.unet.training
    assert loaded.to_config()["data_range"] == [0.0, 1.0] and loaded.prediction_type == "epsilon"


@pytest.mark.parametrize("conditional", [True, False])
def test_tweedie_denoise_cuts_the_error_at_least_five_fold(model, held_out, conditional):
    sigma = 0.25
    clean = held_out.images
    noisy = _noisy(clean, sigma)
    labels = held_out.labels if conditional else None
    used = model.resolve_sigma(sigma)
    assert abs(used - sigma) / sigma < 0.01
    denoised = noisy + used**2 * model.score(noisy, sigma, labels, batch_size=128)
    torch.testing.assert_close(denoised, model.denoise(noisy, sigma, labels))
    ratio = F.mse_loss(noisy, clean) / F.mse_loss(denoised, clean)
    assert ratio >= 5.0


def test_conditional_scores_differ_by_class_and_the_true_class_denoises_best(model, held_out):
    sigma = 0.5
    clean, labels = held_out.images[:200], held_out.labels[:200]
    noisy = _noisy(clean, sigma, seed=1)
    errors = torch.stack(
        [((model.denoise(noisy, sigma, c) - clean) ** 2).flatten(1).mean(1) for c in range(10)], dim=1
    )  # (N, 10)
    true_error = errors.gather(1, labels[:, None]).squeeze(1)
    wrong_error = (errors.sum(1) - true_error) / 9
    assert float(true_error.mean()) < 0.7 * float(wrong_error.mean())
    # the class with the smallest error is the true one for most images
    assert float((errors.argmin(1) == labels).float().mean()) > 0.75
    scores = torch.stack([model.score(noisy[:20], sigma, c) for c in range(10)], dim=1).flatten(2)
    for a in range(10):
        for b in range(a + 1, 10):
            rel = (scores[:, a] - scores[:, b]).norm(dim=1) / scores[:, a].norm(dim=1)
            assert float(rel.mean()) > 0.05


def test_bayes_map_of_the_shipped_model(model, held_out):
    x, y = held_out.images[:8], held_out.labels[:8]
    bayes = ScoreAttribution(model, 0.25, mode="bayes").attribute(x, target=y)
    expected = model.score(x, 0.25, y) - model.score(x, 0.25)
    torch.testing.assert_close(bayes, expected)
    assert bool((bayes.flatten(1).norm(dim=1) > 0).all())
