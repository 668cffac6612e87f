"""The shipped shapes32 score model and autoencoder: small, offline, and they do their job on held-out images."""

import json
import socket

import pytest
import torch
import torch.nn.functional as F

from captum_pags.attr import ScoreAttribution
from captum_pags.datasets import load_shapes32
from captum_pags.models import (
    SHAPES32_AUTOENCODER_DIR,
    SHAPES32_SCORE_WEIGHTS,
    Shapes32Autoencoder,
    load_shapes32_autoencoder,
    load_shapes32_score_model,
    shapes32_decoder_tangent,
)
from captum_pags.scores import DiffusersScore


@pytest.fixture(scope="module")
def model():
    return load_shapes32_score_model()


@pytest.fixture(scope="module")
def held_out():
    return load_shapes32("test")


def _noisy(images, sigma, seed):
    gen = torch.Generator().manual_seed(seed)
    return images + sigma * torch.randn(images.shape, generator=gen)


def test_shipped_weights_are_small_safetensors_and_load_offline(monkeypatch):
    score_files = [p for p in SHAPES32_SCORE_WEIGHTS.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(SHAPES32_SCORE_WEIGHTS).as_posix() for p in score_files) == [
        "scheduler/scheduler_config.json",
        "score_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    ae_files = [p for p in SHAPES32_AUTOENCODER_DIR.rglob("*") if p.is_file()]
    assert sorted(p.name for p in ae_files) == ["config.json", "model.safetensors"]
    assert sum(p.stat().st_size for p in score_files + ae_files) < 2 * 2**20

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    loaded = load_shapes32_score_model()
    assert isinstance(loaded, DiffusersScore)
    assert (loaded.num_classes, loaded.null_class, loaded.in_channels) == (5, 5, 3)
    assert loaded.supports_unconditional and not loaded.unet.training
    ae = load_shapes32_autoencoder()
    assert isinstance(ae, Shapes32Autoencoder) and not ae.training


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("conditional", [True, False])
def test_tweedie_denoise_cuts_the_error_on_held_out_images(model, held_out, conditional, seed):
    sigma = 0.25
    clean = held_out.images[seed * 100 : (seed + 1) * 100]
    labels = held_out.labels[seed * 100 : (seed + 1) * 100] if conditional else None
    noisy = _noisy(clean, sigma, seed)
    used = model.resolve_sigma(sigma)
    assert abs(used - sigma) / sigma < 0.01
    denoised = model.denoise(noisy, sigma, labels)
    torch.testing.assert_close(denoised, noisy + used**2 * model.score(noisy, sigma, labels, batch_size=64))
    ratio = float(F.mse_loss(noisy, clean) / F.mse_loss(denoised, clean))
    assert ratio >= 30.0  # measured about 100x at sigma = 0.25 (see the training script)


def test_the_true_class_denoises_best_and_bayes_maps_come_from_one_model(model, held_out):
    sigma = 0.5
    clean, labels = held_out.images[:100], held_out.labels[:100]
    noisy = _noisy(clean, sigma, seed=3)
    errors = torch.stack([((model.denoise(noisy, sigma, c) - clean) ** 2).flatten(1).mean(1) for c in range(5)], 1)
    true_error = errors.gather(1, labels[:, None]).squeeze(1)
    wrong_error = (errors.sum(1) - true_error) / 4
    assert float(true_error.mean()) < float(wrong_error.mean())
    x, y = clean[:4], labels[:4]
    bayes = ScoreAttribution(model, 0.25, mode="bayes").attribute(x, target=y)
    torch.testing.assert_close(bayes, model.score(x, 0.25, y) - model.score(x, 0.25))
    assert bool((bayes.flatten(1).norm(dim=1) > 0).all())


def test_autoencoder_reconstructs_held_out_images(held_out):
    ae = load_shapes32_autoencoder()
    images = held_out.images
    with torch.no_grad():
        err = float(F.mse_loss(ae(images), images))
    train_mean = load_shapes32("train").images.mean(0, keepdim=True)
    baseline = float(F.mse_loss(train_mean.expand_as(images), images))
    assert err < 0.15 * baseline  # measured 0.073 (test MSE 0.0012 against 0.0164 for the mean image)
    config = json.loads((SHAPES32_AUTOENCODER_DIR / "config.json").read_text())
    assert err == pytest.approx(config["metrics"]["test_mse"], rel=1e-3)  # the weights are the ones described
    basis = shapes32_decoder_tangent(ae).basis(images[:3])
    assert basis.shape == (3, ae.latent_dim, 3072)
    torch.testing.assert_close(
        basis @ basis.transpose(1, 2), torch.eye(ae.latent_dim).expand(3, -1, -1), atol=1e-4, rtol=0
    )


def test_estimated_tangent_spaces_are_far_closer_to_the_exact_one_than_a_random_plane(held_out):
    from captum_pags.datasets import compare_tangents, shapes32_tangent
    from captum_pags.manifold import LinearSubspace
    from captum_pags.models import shapes32_tangent_estimators

    idx = torch.tensor([int(torch.nonzero(held_out.labels == c)[0]) for c in range(5)])
    random_plane = LinearSubspace(torch.randn(7, 3072, dtype=torch.float64), input_shape=(3, 32, 32))
    spaces = {**shapes32_tangent_estimators(), "random": random_plane}
    table = compare_tangents(spaces, shapes32_tangent(held_out), held_out.images[idx])
    # on two test images per class the gallery example measures mean angles of 38 (decoder), 44 (local PCA),
    # 54 (denoiser) and 88 degrees (random)
    assert table["random"]["mean"] > 85
    assert table["decoder"]["mean"] < 55 and table["local-pca"]["mean"] < 60 and table["denoiser"]["mean"] < 70
