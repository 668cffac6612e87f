import json

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_model_unchanged, model_snapshot

from captum_pags.datasets import load_digits16
from captum_pags.manifold import DecoderTangent, orthonormal_rows
from captum_pags.models import (
    DIGITS16_AUTOENCODER_DIR,
    Digits16Autoencoder,
    digits16_decoder_tangent,
    load_digits16_autoencoder,
)
from captum_pags.models._weights import save_weights


@pytest.fixture(scope="module")
def ae():
    return load_digits16_autoencoder()


@pytest.fixture(scope="module")
def held_out_images():
    return load_digits16("test").images


def test_shipped_files_are_small_and_match_the_model(ae):
    weights = DIGITS16_AUTOENCODER_DIR / "model.safetensors"
    assert weights.stat().st_size < 2 * 1024 * 1024
    config = json.loads((DIGITS16_AUTOENCODER_DIR / "config.json").read_text())
    assert ae.latent_dim == config["latent_dim"] == 16
    assert not ae.training
    assert sum(p.numel() for p in ae.parameters()) * 4 <= weights.stat().st_size


def test_reconstructs_test_digits_far_better_than_the_mean_image(ae, held_out_images):
    train_mean = load_digits16("train").images.mean(0, keepdim=True)
    with torch.no_grad():
        err = float(F.mse_loss(ae(held_out_images), held_out_images))
    baseline = float(F.mse_loss(train_mean.expand_as(held_out_images), held_out_images))
    assert err < 0.15 * baseline
    config = json.loads((DIGITS16_AUTOENCODER_DIR / "config.json").read_text())
    assert err == pytest.approx(config["metrics"]["test_mse"], rel=1e-3)  # the weights are the ones described


def test_decoder_tangent_matches_per_pixel_float64_jacobian(ae, held_out_images):
    x = held_out_images[:3]
    space = digits16_decoder_tangent(ae)
    basis = space.basis(x)
    assert basis.shape == (3, 16, 256) and space.last_rank.tolist() == [16, 16, 16]
    ae64 = Digits16Autoencoder(ae.latent_dim, ae.channels).double()
    ae64.load_state_dict(ae.state_dict())
    ae64.eval()
    rows = []
    for xi in x.double():
        z = ae64.encode(xi.unsqueeze(0))[0].detach().requires_grad_(True)
        out = ae64.decode(z.unsqueeze(0)).reshape(-1)
        rows.append(torch.stack([torch.autograd.grad(out[p], z, retain_graph=True)[0] for p in range(256)]).T)
    expected = orthonormal_rows(torch.stack(rows))
    torch.testing.assert_close(
        (basis.transpose(1, 2) @ basis).double(), expected.transpose(1, 2) @ expected, rtol=0, atol=1e-5
    )


def test_tangent_space_holds_the_way_to_nearby_digits(ae, held_out_images):
    # The displacement to the nearest training digit lies much more in the 16-dimensional tangent
    # space than in a random 16-dimensional subspace (which would hold 16/256 of its energy).
    train = load_digits16("train").images.reshape(-1, 256)
    x = held_out_images[:40]
    nearest = train[torch.cdist(x.reshape(40, -1), train).argmin(1)]
    with torch.no_grad():
        recon = ae(x).reshape(40, -1)
    step = (nearest - recon).unsqueeze(1)
    basis = digits16_decoder_tangent(ae).basis(x)
    held = ((step @ basis.transpose(1, 2)).square().sum(-1) / step.square().sum(-1)).squeeze(1)
    random = orthonormal_rows(torch.randn(40, 16, 256))
    held_random = ((step @ random.transpose(1, 2)).square().sum(-1) / step.square().sum(-1)).squeeze(1)
    assert float(held.mean()) > 0.5 > 5 * float(held_random.mean())  # measured: 0.84


def test_model_left_unchanged(held_out_images):
    model = load_digits16_autoencoder().train()
    model.decoder[0].weight.grad = torch.ones_like(model.decoder[0].weight)
    before = model_snapshot(model)
    space = DecoderTangent(model.decoder, model.encoder)
    space.basis(held_out_images[:2])
    assert_model_unchanged(model, before)
    assert model.training


def test_round_trip_through_a_custom_folder(tmp_path, held_out_images):
    model = Digits16Autoencoder(latent_dim=4, channels=(2, 3))
    save_weights(tmp_path, model.state_dict(), {"latent_dim": 4, "channels": [2, 3]})
    loaded = load_digits16_autoencoder(folder=tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(held_out_images[:2]), model.eval()(held_out_images[:2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(FileNotFoundError, match="to contain 'model.safetensors'"):
        load_digits16_autoencoder(folder=tmp_path / "missing")
