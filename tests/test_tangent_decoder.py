import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from blob_manifold import BlobGenerator, LookupEncoder, sample_latents
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags.attr import ManifoldGradient
from captum_pags.manifold import DecoderTangent, orthonormal_rows, principal_angles


def largest_angle(a, b):
    return principal_angles(a, b)[..., -1]


class ConvDecoder(nn.Module):
    """k -> (1, 8, 8) with BatchNorm, so that train/eval mode matters."""

    def __init__(self, k=4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(k, 8 * 4 * 4),
            nn.Unflatten(1, (8, 4, 4)),
            nn.BatchNorm2d(8),
            nn.SiLU(),
            nn.ConvTranspose2d(8, 1, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.net(z)


class ConvAutoencoder(nn.Module):
    def __init__(self, k=4):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, k))
        self.dec = ConvDecoder(k)

    def encode(self, x):
        return SimpleNamespace(latent_dist=torch.distributions.Normal(self.enc(x), 1.0))

    def decode(self, z):
        return SimpleNamespace(sample=self.dec(z))


def trained_mode_autoencoder(dtype=torch.float64):
    ae = ConvAutoencoder().to(dtype)
    ae.dec(ae.enc(torch.randn(16, 1, 8, 8, dtype=dtype)))  # non-trivial BatchNorm running statistics
    ae.train()
    return ae


def per_pixel_jacobian(decoder, z):
    """Slow reference: one backward pass per output pixel and image, float64 (what the paper did)."""
    rows = []
    for zi in z:
        zi = zi.detach().clone().requires_grad_(True)
        out = decoder(zi.unsqueeze(0)).reshape(-1)
        jac = torch.stack([torch.autograd.grad(out[p], zi, retain_graph=True)[0] for p in range(out.numel())])
        rows.append(jac.T)  # (k, D)
    return torch.stack(rows)


def test_linear_decoder_is_exact():
    k, d = 5, 48
    decoder = nn.Sequential(nn.Linear(k, d), nn.Unflatten(1, (3, 4, 4)))
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    x = torch.randn(6, 3, 4, 4)
    exact = orthonormal_rows(decoder[0].weight.detach().double().T)
    basis = DecoderTangent(decoder, encoder).basis(x)
    assert basis.shape == (6, k, d) and basis.dtype == torch.float32
    assert float(largest_angle(basis, exact).max()) < 1e-5
    decoder64, encoder64 = decoder.double(), encoder.double()
    basis64 = DecoderTangent(decoder64, encoder64).basis(x.double())
    assert float(largest_angle(basis64, exact).max()) < 1e-12
    torch.testing.assert_close(basis64 @ basis64.transpose(1, 2), torch.eye(k, dtype=torch.float64).expand(6, k, k))


def test_curved_blob_manifold_is_exact():
    gen = BlobGenerator()
    z = sample_latents(12, seed=1, margin=0.1)
    x = gen(z)
    space = DecoderTangent(gen, LookupEncoder(x, z), input_shape=(1, 16, 16))
    assert space.dim == 3
    exact = orthonormal_rows(gen.exact_jacobian(z))
    assert float(largest_angle(space.basis(x), exact).max()) < 1e-10
    # the tangent moves with the point: a rigidly shifted basis would be far off
    shifted = orthonormal_rows(gen.exact_jacobian(z.roll(1, 0)))
    assert float(largest_angle(space.basis(x), shifted).min()) > math.radians(10)


def test_matches_per_pixel_backward_loop_and_leaves_model_unchanged():
    ae = trained_mode_autoencoder()
    ae.dec.net[0].weight.grad = torch.ones_like(ae.dec.net[0].weight)
    before_dec, before_enc = model_snapshot(ae.dec), model_snapshot(ae.enc)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    basis = DecoderTangent(ae.dec, ae.enc).basis(x)
    assert_model_unchanged(ae.dec, before_dec)
    assert_model_unchanged(ae.enc, before_enc)
    ae.eval()
    with torch.no_grad():
        z = ae.enc(x)
    expected = orthonormal_rows(per_pixel_jacobian(ae.dec, z))
    torch.testing.assert_close(basis.transpose(1, 2) @ basis, expected.transpose(1, 2) @ expected, rtol=0, atol=1e-10)


def test_results_identical_across_chunk_sizes_and_vectorisation():
    ae = trained_mode_autoencoder()
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    ref = DecoderTangent(ae.dec, ae.enc, chunk_size=None).basis(x)
    variants = [
        {"chunk_size": 1},
        {"chunk_size": 3},
        {"chunk_size": 3, "latent_chunk_size": 1},
        {"chunk_size": 4, "latent_chunk_size": 3},
        {"chunk_size": None, "vectorize": False},
        {"chunk_size": 2, "latent_chunk_size": None},
    ]
    for kwargs in variants:
        torch.testing.assert_close(DecoderTangent(ae.dec, ae.enc, **kwargs).basis(x), ref, rtol=0, atol=1e-12)


def test_encoder_and_decoder_adapters():
    ae = trained_mode_autoencoder()
    before = model_snapshot(ae)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    ref = DecoderTangent(ae.dec, ae.enc).basis(x)
    # bound methods are evaluated in eval mode; latent_dist.mean and `.sample` are read
    torch.testing.assert_close(DecoderTangent(ae.decode, ae.encode).basis(x), ref, rtol=0, atol=1e-12)
    assert_model_unchanged(ae, before)
    ae.eval()
    tuples = (lambda z: (ae.dec(z), None), lambda x: (ae.enc(x), torch.zeros(1)))  # first elements
    torch.testing.assert_close(DecoderTangent(*tuples).basis(x), ref, rtol=0, atol=1e-12)
    normal = (ae.dec, lambda x: torch.distributions.Normal(ae.enc(x), 2.0))  # `.mean`
    torch.testing.assert_close(DecoderTangent(*normal).basis(x), ref, rtol=0, atol=1e-12)
    ae.train()
    with pytest.raises(RuntimeError, match="updated a buffer in place"):
        DecoderTangent(*tuples).basis(x)  # plain functions hide the module: train-mode BatchNorm
    with pytest.raises(TypeError, match="Expected `encoder` to return a tensor"):
        DecoderTangent(ae.dec, lambda x: {"z": ae.enc(x)}).basis(x)
    with pytest.raises(TypeError, match="Expected `decoder` to return a tensor"):
        DecoderTangent(lambda z: [], ae.enc).basis(x)


def low_rank_decoder(seed, k, rank, d, dtype):
    """decoder = A @ B with A (D, r), B (r, k) random: a Jacobian of exact rank r < k."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank, generator=gen, dtype=torch.float64)
    b = torch.randn(rank, k, generator=gen, dtype=torch.float64)
    decoder = nn.Sequential(nn.Linear(k, rank, bias=False), nn.Tanh(), nn.Linear(rank, d, bias=False)).to(dtype)
    decoder[0].weight.data.copy_(b)
    decoder[2].weight.data.copy_(a)
    return decoder, orthonormal_rows(a.T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rank_deficient_decoder_drops_directions_and_warns_once(dtype):
    k, rank, d = 5, 3, 40
    for seed in range(8):
        decoder, exact = low_rank_decoder(seed, k, rank, d, dtype)
        encoder = nn.Linear(d, k).to(dtype)
        space = DecoderTangent(decoder, encoder)
        x = torch.randn(4, d, dtype=dtype, generator=torch.Generator().manual_seed(100 + seed))
        with pytest.warns(RuntimeWarning, match="rank-deficient at 4 of 4 inputs"):
            basis = space.basis(x)
        assert space.last_rank.tolist() == [rank] * 4, seed
        assert ((basis.norm(dim=-1) > 0.5).sum(-1) == rank).all()
        assert float(basis[:, rank:].abs().max()) == 0.0
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        assert float(largest_angle(basis[:, :rank].double(), exact).max()) < tol
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            space.basis(x)  # warned once per estimator


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weak_but_real_decoder_direction_is_kept(dtype):
    """A latent direction with relative gain 1e-3 is real: it must not be dropped as noise."""
    k, d = 4, 60
    for seed in range(6):
        gen = torch.Generator().manual_seed(seed)
        cols = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64)).Q
        gains = torch.tensor([1.0, 0.7, 0.3, 1e-3], dtype=torch.float64)
        decoder = nn.Linear(k, d, bias=False).to(dtype)
        decoder.weight.data.copy_(cols * gains)
        space = DecoderTangent(decoder, nn.Linear(d, k).to(dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no rank-deficiency warning
            basis = space.basis(torch.randn(3, d, dtype=dtype, generator=gen))
        assert space.last_rank.tolist() == [k] * 3
        tol = 1e-3 if dtype == torch.float32 else 1e-9
        assert float(largest_angle(basis.double(), cols.T).max()) < tol


def test_full_rank_sets_last_rank_and_dim_is_lazy():
    decoder, encoder = nn.Linear(3, 10), nn.Linear(10, 3)
    space = DecoderTangent(decoder, encoder)
    assert space.last_rank is None
    with pytest.raises(RuntimeError, match="known after the first call"):
        _ = space.dim
    space.basis(torch.randn(2, 10))
    assert space.dim == 3 and space.last_rank.tolist() == [3, 3]
    assert DecoderTangent(decoder, encoder, input_shape=(10,)).dim == 3


def test_basis_is_constant_for_autograd_and_works_in_manifold_gradient():
    ae = trained_mode_autoencoder(torch.float32)
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    space = DecoderTangent(ae.dec, ae.enc)
    basis = space.basis(x)
    assert not basis.requires_grad
    assert all(p.grad is None for p in ae.parameters())
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    on = ManifoldGradient(model, space).attribute(x.detach(), target=1, component="on")
    off = ManifoldGradient(model, space).attribute(x.detach(), target=1, component="off")
    grad = model[1].weight[1].detach().reshape(1, 1, 8, 8).expand(3, -1, -1, -1)
    torch.testing.assert_close(on + off, grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(space.project(x.detach(), on), on, rtol=1e-4, atol=1e-6)


def test_bad_input_raises_and_leaves_model_unchanged():
    ae = trained_mode_autoencoder()
    ae.dec.net[0].weight.grad = torch.ones_like(ae.dec.net[0].weight)
    before = model_snapshot(ae)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    wrong_shape = nn.Sequential(ae.dec, nn.Flatten())
    with pytest.raises(ValueError, match=r"Expected `decoder` to return the shape of `inputs` \(2, 1, 8, 8\)"):
        DecoderTangent(wrong_shape, ae.enc).basis(x)
    assert_model_unchanged(ae, before)
    with pytest.raises(ValueError, match="Expected `inputs` to hold finite values"):
        DecoderTangent(ae.dec, ae.enc).basis(torch.full((2, 1, 8, 8), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"latent dimension of `encoder` \(k = 64\) to be < D = 64"):
        DecoderTangent(nn.Unflatten(1, (1, 8, 8)), nn.Flatten()).basis(x)
    with pytest.raises(ValueError, match="latent codes from `encoder` to be finite"):
        DecoderTangent(ae.dec, lambda x: torch.full((2, 4), float("nan"))).basis(x)
    with pytest.raises(ValueError, match=r"latent codes from `encoder` to have shape \(2, \*latent_shape\)"):
        DecoderTangent(ae.dec, lambda x: torch.zeros(4)).basis(x)
    with pytest.raises(ValueError, match="Expected `inputs` to be one tensor"):
        DecoderTangent(ae.dec, ae.enc).basis((x, x))
    with pytest.raises(ValueError, match=r"`inputs` to have per-example shape \(1, 8, 8\)"):
        DecoderTangent(ae.dec, ae.enc, input_shape=(1, 8, 8)).basis(torch.zeros(2, 1, 4, 4))
    with pytest.raises(TypeError, match="Expected `decoder` to be callable"):
        DecoderTangent("decoder", ae.enc)
    with pytest.raises(ValueError, match="Expected `chunk_size` to be >= 1 but got 0"):
        DecoderTangent(ae.dec, ae.enc, chunk_size=0)
    with pytest.raises(ValueError, match="Expected `rtol` to be a finite number > 0"):
        DecoderTangent(ae.dec, ae.enc, rtol=-1.0)
    assert_model_unchanged(ae, before)


def test_an_explicit_rtol_drops_a_weak_decoder_direction_that_the_default_keeps():
    # a linear decoder with column gains 1 and 1e-3: the default threshold (a noise floor near 1e-7)
    # keeps both directions, rtol=1e-2 drops the weak one and leaves an all-zero row
    weights = torch.zeros(6, 2, dtype=torch.float64)
    weights[0, 0], weights[1, 1] = 1.0, 1e-3

    def decoder(z):
        return z @ weights.T

    def encoder(x):
        return x[:, :2]

    x = torch.randn(3, 6, dtype=torch.float64)
    kept = DecoderTangent(decoder, encoder, input_shape=(6,)).basis(x)
    dropped = DecoderTangent(decoder, encoder, input_shape=(6,), rtol=1e-2).basis(x)
    assert bool((kept.norm(dim=-1) > 0.99).all())
    assert bool((dropped[:, 0].norm(dim=-1) > 0.99).all()) and float(dropped[:, 1].abs().max()) == 0.0


@pytest.mark.parametrize("codes", [lambda x: x[:, :2].reshape(-1), lambda x: torch.cat([x[:, :2], x[:1, :2]])])
def test_latent_codes_of_the_wrong_shape_are_refused(codes):
    space = DecoderTangent(lambda z: torch.cat([z, z, z], 1), codes, input_shape=(6,))
    with pytest.raises(ValueError, match="latent codes from `encoder` to have shape"):
        space.basis(torch.randn(3, 6))


@pytest.mark.parametrize(("dtype", "expected"), [(torch.float64, torch.float64), (torch.bfloat16, torch.float32)])
def test_the_basis_of_a_float32_network_comes_in_the_inputs_compute_dtype(dtype, expected):
    # the network runs in its own float32; the basis is returned in the inputs' compute dtype
    # (float64 for float64 inputs, float32 for 16-bit ones), like every other estimator's
    decoder, encoder = nn.Linear(3, 10), nn.Linear(10, 3)
    basis = DecoderTangent(decoder, encoder).basis(torch.randn(2, 10).to(dtype))
    assert basis.dtype == expected
