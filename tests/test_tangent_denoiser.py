import math

import pytest
import torch
from blob_manifold import BlobGenerator, point_mass_denoiser, sample_latents
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags.datasets import GaussianSubspaceMixture
from captum_pags.manifold import DenoiserTangent, intrinsic_dimension, orthonormal_rows, principal_angles
from captum_pags.scores import GaussianMixtureScore


def exact_jacobian_eigh(score_model, x, sigma):
    """Slow float64 reference: the full denoiser Jacobian, one example at a time, and its eigenpairs."""
    vals, vecs = [], []
    for xi in x.double():

        def denoise(v, xi=xi):
            return v + sigma**2 * score_model.score(v.reshape(1, *xi.shape), sigma).reshape(-1)

        jac = torch.autograd.functional.jacobian(denoise, xi.reshape(-1))
        torch.testing.assert_close(jac, jac.T, rtol=0, atol=1e-12)  # Tweedie: a covariance / sigma^2
        w, v = torch.linalg.eigh(jac)
        vals.append(w.flip(0))
        vecs.append(v.flip(1).T)
    return torch.stack(vals), torch.stack(vecs)


@pytest.fixture
def mixture10():
    gen = torch.Generator().manual_seed(4)
    means = torch.randn(3, 10, generator=gen, dtype=torch.float64)
    factors = torch.randn(3, 10, 2, generator=gen, dtype=torch.float64)  # near 2-dimensional components
    covariances = factors @ factors.transpose(1, 2) + 0.01 * torch.eye(10, dtype=torch.float64)
    return GaussianMixtureScore(means, covariances)


def test_full_probe_set_reproduces_exact_eigenpairs(mixture10):
    x = torch.randn(4, 10, dtype=torch.float64)
    vals, vecs = exact_jacobian_eigh(mixture10, x, 0.5)
    space = DenoiserTangent(mixture10, sigma=0.5, dim=3, oversampling=20, iterations=1)
    basis = space.basis(x)
    assert space.last_spectrum.shape == (4, 10)  # m = min(3 + 20, D)
    torch.testing.assert_close(space.last_spectrum, vals, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        basis.transpose(1, 2) @ basis, vecs[:, :3].transpose(1, 2) @ vecs[:, :3], rtol=0, atol=1e-8
    )


@pytest.mark.parametrize(("method", "schedule"), [("symmetric", (0, 2, 9)), ("general", (0, 1, 4))])
def test_subspace_iteration_converges_to_leading_eigenvectors(mixture10, method, schedule):
    # the same product counts for both: symmetric q -> (q + 1) m, general q -> (2q + 2) m
    x = torch.randn(4, 10, dtype=torch.float64)
    vals, vecs = exact_jacobian_eigh(mixture10, x, 0.5)
    errors, counts = [], []
    for iterations in schedule:
        space = DenoiserTangent(
            mixture10, sigma=0.5, dim=2, oversampling=1, iterations=iterations, seed=1, method=method
        )
        errors.append(float(principal_angles(space.basis(x), vecs[:, :2])[:, -1].max()))
        counts.append(space.last_products_per_example)
    torch.testing.assert_close(space.last_spectrum[:, :2], vals[:, :2], rtol=1e-8, atol=0)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6
    assert counts == ([3, 9, 30] if method == "symmetric" else [6, 12, 30])


def test_gaussian_subspace_data_recovers_subspace_and_dimension():
    data = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=6, shape=(1, 8, 8), off_std=1e-3, seed=0)
    x, y = data.sample(16, seed=1)
    space = DenoiserTangent(data.score_model, sigma=0.05, dim=6, oversampling=6, iterations=1)
    angles = torch.rad2deg(principal_angles(space.basis(x).double(), data.basis)[:, -1])
    assert float(angles.max()) < 5.0  # measured: 4e-5 degrees
    torch.testing.assert_close(space.intrinsic_dimension(x), torch.full((16,), 6))
    conditional = DenoiserTangent(data.score_model, sigma=0.05, dim=6, target=y, chunk_size=5)
    angles = torch.rad2deg(principal_angles(conditional.basis(x).double(), data.basis)[:, -1])
    assert float(angles.max()) < 5.0


def test_intrinsic_dimension_found_with_a_larger_dim_request():
    data = GaussianSubspaceMixture(num_classes=2, intrinsic_dim=3, shape=(1, 6, 6), basis="smooth", seed=2)
    x, _ = data.sample(8, seed=3, dtype=torch.float64)
    space = DenoiserTangent(data.score_model, sigma=0.05, dim=8, oversampling=4)
    torch.testing.assert_close(space.intrinsic_dimension(x), torch.full((8,), 3))
    spectrum = space.last_spectrum
    assert spectrum.shape == (8, 12)
    assert bool((spectrum[:, :3] > 0.9).all()) and bool((spectrum[:, 3:] < 1e-2).all())


def test_curved_blob_manifold_with_point_mass_denoiser():
    gen = BlobGenerator()
    denoiser = point_mass_denoiser(gen(sample_latents(20000, seed=0)))
    z = sample_latents(20, seed=1, margin=0.2)
    x = gen(z)
    space = DenoiserTangent(denoiser, sigma=0.2, dim=3, oversampling=5, input_shape=(1, 16, 16))
    angles = torch.rad2deg(principal_angles(space.basis(x), orthonormal_rows(gen.exact_jacobian(z)))[:, -1])
    # measured: mean 0.90, max 1.29 degrees
    assert float(angles.mean()) < 1.5
    assert float(angles.max()) < 3.0
    torch.testing.assert_close(intrinsic_dimension(space.last_spectrum), torch.full((20,), 3))


def test_results_identical_across_chunk_sizes_and_vectorisation(mixture10):
    x = torch.randn(7, 10, dtype=torch.float64)
    ref = DenoiserTangent(mixture10, sigma=0.3, dim=2, oversampling=3, chunk_size=None).basis(x)
    for kwargs in ({"chunk_size": 1}, {"chunk_size": 3}, {"chunk_size": None, "vectorize": False}):
        basis = DenoiserTangent(mixture10, sigma=0.3, dim=2, oversampling=3, **kwargs).basis(x)
        torch.testing.assert_close(basis, ref, rtol=0, atol=1e-12)
    # another seed draws other probes but finds the same space
    other = DenoiserTangent(mixture10, sigma=0.3, dim=2, oversampling=3, iterations=6, seed=5).basis(x)
    assert float(principal_angles(other, ref)[:, -1].max()) < 1e-3


class ModuleDenoiser(nn.Module):
    """D(x, sigma) for the exact 2-plane score, behind BatchNorm and Dropout to make the mode matter."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.5)
        self.scale = nn.Parameter(torch.ones(6))

    def forward(self, x, sigma):
        h = self.drop(self.norm(x)) * self.scale
        mask = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
        return h * mask + h * (1 - mask) * (1e-3 / sigma) ** 2


def test_module_denoiser_runs_in_eval_mode_and_is_left_unchanged():
    model = ModuleDenoiser().train()
    model(torch.randn(32, 6), 0.1)  # running statistics
    model.scale.grad = torch.ones(6)
    before = model_snapshot(model)
    basis = DenoiserTangent(model, sigma=0.1, dim=2, oversampling=2).basis(torch.randn(5, 6))
    assert_model_unchanged(model, before)
    assert model.training
    plane = torch.eye(6)[:2]
    assert float(principal_angles(basis, plane)[:, -1].max()) < 1e-5


def test_intrinsic_dimension_function():
    spectrum = torch.tensor([[1.0, 0.95, 0.2, 0.1], [2.0, 1.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(intrinsic_dimension(spectrum), torch.tensor([2, 3, 1]))
    with pytest.raises(ValueError, match=r"Expected `spectrum` to have shape \(\.\.\., m\) with m >= 2"):
        intrinsic_dimension(torch.ones(3, 1))
    with pytest.raises(ValueError, match="Expected `spectrum` to hold finite values >= 0"):
        intrinsic_dimension(torch.tensor([1.0, -1.0]))


def test_bad_arguments(mixture10):
    x = torch.randn(2, 10, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Expected `dim` to be < D = 10 but got 10"):
        DenoiserTangent(mixture10, sigma=0.1, dim=10)
    with pytest.raises(ValueError, match=r"Expected `dim` to be >= 1 but got 0"):
        DenoiserTangent(mixture10, sigma=0.1, dim=0)
    with pytest.raises(ValueError, match=r"Expected `dim` to be < D = 10 but got 12"):
        DenoiserTangent(lambda v, s: v, sigma=0.1, dim=12).basis(x)
    with pytest.raises(ValueError, match="Expected `sigma` to be a finite number > 0 but got -1.0"):
        DenoiserTangent(lambda v, s: v, sigma=-1.0, dim=2)
    with pytest.raises(ValueError, match="Expected `sigma` to be > 0"):
        DenoiserTangent(mixture10, sigma=0.0, dim=2)
    with pytest.raises(TypeError, match="Expected `denoiser` to be a ScoreModel or a callable"):
        DenoiserTangent("denoiser", sigma=0.1, dim=2)
    with pytest.raises(ValueError, match="Expected `target=None` for a plain denoiser function"):
        DenoiserTangent(lambda v, s: v, sigma=0.1, dim=2, target=1)
    with pytest.raises(ValueError, match=r"Expected `target` labels in \[0, 3\)"):
        DenoiserTangent(mixture10, sigma=0.1, dim=2, target=5).basis(x)
    with pytest.raises(ValueError, match=r"Expected `inputs` to have per-example shape \(10,\)"):
        DenoiserTangent(mixture10, sigma=0.1, dim=2).basis(torch.randn(2, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match="Expected `inputs` to hold finite values"):
        DenoiserTangent(mixture10, sigma=0.1, dim=2).basis(torch.full((2, 10), math.nan, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"Expected `denoiser` to return the shape of `inputs` \(2, 10\)"):
        DenoiserTangent(lambda v, s: v[:, :5], sigma=0.1, dim=2).basis(x)
    with pytest.raises(ValueError, match="Jacobian is zero at some inputs"):
        DenoiserTangent(lambda v, s: v.detach() * 0.5, sigma=0.1, dim=2).basis(x)
    with pytest.raises(ValueError, match="Expected `inputs` to be one tensor"):
        DenoiserTangent(lambda v, s: v, sigma=0.1, dim=2).basis((x, x))
    with pytest.raises(ValueError, match="Expected `iterations` to be >= 0 but got -1"):
        DenoiserTangent(mixture10, sigma=0.1, dim=2, iterations=-1)


def test_score_model_wrapping_a_network_matches_the_plain_denoiser():
    """A ScoreModel that holds a network (the shipped diffusion model) works under torch.func."""
    from conftest import assert_model_unchanged, model_snapshot

    from captum_pags.datasets import load_digits16
    from captum_pags.models import load_digits16_score_model

    score_model = load_digits16_score_model()
    before = model_snapshot(score_model.unet)
    sigma = 0.05
    x = load_digits16("test").images[:3]
    noisy = x + sigma * torch.randn(x.shape)
    from_score = DenoiserTangent(score_model, sigma, dim=6, oversampling=6, seed=0)
    plain = DenoiserTangent(
        lambda z, s: score_model.denoise(z, s), sigma, dim=6, oversampling=6, seed=0, input_shape=(1, 16, 16)
    )
    b1, b2 = from_score.basis(noisy), plain.basis(noisy)
    torch.testing.assert_close(b1 @ b1.transpose(1, 2), torch.eye(6).expand(3, 6, 6), atol=1e-4, rtol=0)
    torch.testing.assert_close(b1.transpose(1, 2) @ b1, b2.transpose(1, 2) @ b2, atol=1e-4, rtol=1e-4)
    assert_model_unchanged(score_model.unet, before)
