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


@pytest.mark.parametrize(("method", "schedule"), [("symmetric", (0, 1, 9)), ("general", (0, 1, 4))])
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
    # the Krylov space stops growing once it fills R^10 (10 products), and is exact there
    assert counts == ([3, 6, 10] if method == "symmetric" else [6, 12, 30])


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


def nonsymmetric_linear_denoiser(seed, d=12, k=3):
    """D(x) = U S V^T x with unrelated U, V: a learned-style, non-symmetric Jacobian with a known SVD."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64)).Q
    s = torch.cat([torch.tensor([1.0, 0.9, 0.8]), 1e-2 * torch.rand(d - k, generator=gen)]).double()
    jac = (u * s) @ v.T
    return (lambda x, sigma: x @ jac.T), u[:, :k].T, s


@pytest.mark.parametrize("seed", range(4))
def test_general_method_finds_left_singular_vectors_of_a_nonsymmetric_denoiser(seed):
    fn, left, s = nonsymmetric_linear_denoiser(seed)
    x = torch.randn(3, 12, dtype=torch.float64)
    space = DenoiserTangent(fn, sigma=0.1, dim=3, oversampling=4, method="general")
    basis = space.basis(x)
    assert float(principal_angles(basis, left)[:, -1].max()) < 1e-10
    torch.testing.assert_close(space.last_spectrum[:, :3], s[:3].expand(3, 3), rtol=1e-10, atol=0)
    # the symmetric shortcut answers another question here (the dominant space of J^T): the option matters
    sym = DenoiserTangent(fn, sigma=0.1, dim=3, oversampling=4, method="symmetric").basis(x)
    assert float(principal_angles(sym, left)[:, -1].min()) > 1e-3


def test_symmetric_method_is_as_accurate_as_general_on_symmetric_cases_with_fewer_products():
    gen = torch.Generator().manual_seed(7)
    d = 40
    means = torch.randn(3, d, generator=gen, dtype=torch.float64)
    factors = torch.randn(3, d, 2, generator=gen, dtype=torch.float64)
    mixture = GaussianMixtureScore(means, factors @ factors.transpose(1, 2) + 0.01 * torch.eye(d, dtype=torch.float64))
    x = torch.randn(4, d, generator=gen, dtype=torch.float64)
    _, vecs = exact_jacobian_eigh(mixture, x, 0.3)
    errors, counts = {}, {}
    for method in ("symmetric", "general"):
        space = DenoiserTangent(mixture, sigma=0.3, dim=2, oversampling=3, method=method)
        errors[method] = float(principal_angles(space.basis(x), vecs[:, :2])[:, -1].max())
        counts[method] = space.last_products_per_example
    assert counts == {"symmetric": 3 * 5, "general": 6 * 5}  # defaults: q = 2 for both, m = 5 (< D / 3)
    assert errors["symmetric"] < 1e-6 and errors["symmetric"] <= errors["general"]
    data = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=6, shape=(1, 8, 8), off_std=1e-3, seed=0)
    xs, _ = data.sample(6, seed=2, dtype=torch.float64)
    for method in ("symmetric", "general"):
        space = DenoiserTangent(data.score_model, sigma=0.05, dim=6, oversampling=6, method=method)
        assert float(principal_angles(space.basis(xs), data.basis)[:, -1].max()) < 1e-6


def _attention_unet(num_class_embeds=None):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        num_class_embeds=num_class_embeds,
        dropout=0.1,
    )


def _sdpa_flags():
    return (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
    )


@pytest.mark.parametrize("method", ["symmetric", "general"])
def test_unet_with_attention_works_and_is_left_unchanged(method):
    from diffusers import DDPMScheduler

    from captum_pags.scores import DiffusersScore

    unet = _attention_unet().train()
    before, flags = model_snapshot(unet), _sdpa_flags()
    score = DiffusersScore(unet, DDPMScheduler())
    x = torch.rand(2, 3, 32, 32)
    space = DenoiserTangent(score, sigma=0.1, dim=3, oversampling=2, iterations=1, method=method, chunk_size=1)
    basis = space.basis(x)
    assert basis.shape == (2, 3, 3 * 32 * 32) and bool(torch.isfinite(basis).all())
    torch.testing.assert_close(basis @ basis.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-4, rtol=0)
    assert_model_unchanged(unet, before)
    assert unet.training and _sdpa_flags() == flags
    # the products are those of the network: <u, J v> computed by forward mode equals <J^T u, v> by reverse mode
    fn = space._denoise_fn(None)
    u, v = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        from captum_pags.manifold._subspace_iteration import JacobianProducts, transformable_attention

        with transformable_attention():
            unet.eval()
            prods = JacobianProducts(fn, x[:1], None, True)
            jv = prods.jvp(v.reshape(1, 1, -1))
            jtu = prods.vjp(u.reshape(1, 1, -1))
            unet.train()
    torch.testing.assert_close(
        (u.reshape(-1) @ jv.reshape(-1)), (jtu.reshape(-1) @ v.reshape(-1)), rtol=1e-4, atol=1e-5
    )


def test_class_labels_are_taken_per_call_for_any_batch_size():
    from captum.attr import NoiseTunnel
    from diffusers import DDPMScheduler

    from captum_pags.attr import ManifoldGradient
    from captum_pags.scores import DiffusersScore

    unet = _attention_unet(num_class_embeds=4).eval()
    score = DiffusersScore(unet, DDPMScheduler(), null_class=3)
    space = DenoiserTangent(score, sigma=0.1, dim=2, oversampling=2, iterations=1, conditional=True, chunk_size=2)
    assert space.takes_target
    x = torch.rand(3, 3, 32, 32)
    three = space.basis(x, target=torch.tensor([0, 1, 2]))
    two = space.basis(x[:2], target=[0, 1])
    torch.testing.assert_close(three[:2], two, atol=1e-5, rtol=0)
    other = space.basis(x[:1], target=2)
    assert float(principal_angles(other, three[:1])[:, -1].max()) > 1e-3  # the label matters
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    nt = NoiseTunnel(ManifoldGradient(model, space))
    attr = nt.attribute(x[:2], nt_samples=2, stdevs=0.01, target=torch.tensor([0, 1]))
    assert attr.shape == (2, 3, 32, 32) and bool(torch.isfinite(attr).all())
    with pytest.raises(ValueError, match="Expected `target=None` for LinearSubspace"):
        from captum_pags.manifold import LinearSubspace

        LinearSubspace(torch.eye(4)[:2]).basis(torch.zeros(1, 4), target=1)
    with pytest.raises(ValueError, match="Expected `conditional=False` for an unconditional score model"):
        DenoiserTangent(DiffusersScore(_attention_unet(), DDPMScheduler()), sigma=0.1, dim=2, conditional=True)


def test_probe_chunks_and_method_defaults_do_not_change_results(mixture10):
    x = torch.randn(5, 10, dtype=torch.float64)
    ref = DenoiserTangent(mixture10, sigma=0.3, dim=2, oversampling=3, probe_chunk_size=None).basis(x)
    for kwargs in ({"probe_chunk_size": 1}, {"probe_chunk_size": 2, "chunk_size": 2}, {"vectorize": False}):
        basis = DenoiserTangent(mixture10, sigma=0.3, dim=2, oversampling=3, **kwargs).basis(x)
        torch.testing.assert_close(basis, ref, rtol=0, atol=1e-10)
    space = DenoiserTangent(mixture10, sigma=0.3, dim=2)
    assert (space.method, space.iterations, space.chunk_size, space.probe_chunk_size) == ("symmetric", 2, 4, 8)
    assert DenoiserTangent(mixture10, sigma=0.3, dim=2, method="general").iterations == 2
    with pytest.raises(ValueError, match="Expected `method` to be one of 'symmetric', 'general'"):
        DenoiserTangent(mixture10, sigma=0.3, dim=2, method="lanczos")


def test_a_conditional_spectrum_reads_the_labels_it_is_given():
    # p(x | y) = N(mu_y, S): the conditional denoiser's Jacobian is S (S + s^2 I)^-1 at every x and
    # for every label, while the unconditional one at the midpoint of two classes adds their
    # between-class spread; a spectrum that dropped its labels would see the latter (or fail)
    data = GaussianSubspaceMixture(num_classes=2, intrinsic_dim=3, shape=(12,), class_sep=3.0, off_std=1e-2, seed=4)
    sigma = 0.5
    space = DenoiserTangent(data.score_model, sigma=sigma, dim=3, oversampling=2, conditional=True, probe_chunk_size=5)
    mid = data.means.mean(0, keepdim=True) @ data.basis  # midpoint of the two class means, in pixels
    on_var = data.on_std**2 + data.off_std**2  # the off-manifold noise is isotropic, so it adds along the plane too
    on = on_var / (on_var + sigma**2)
    off = data.off_std**2 / (data.off_std**2 + sigma**2)
    expected = torch.tensor([[on, on, on, off, off]], dtype=torch.float64)
    for label in (0, 1):
        torch.testing.assert_close(space.spectrum(mid, target=label).double(), expected, rtol=1e-6, atol=1e-8)
        assert space.intrinsic_dimension(mid, target=[label]).tolist() == [3]
    unconditional = DenoiserTangent(data.score_model, sigma=sigma, dim=3, oversampling=2, probe_chunk_size=5)
    assert float(unconditional.spectrum(mid)[0, 0]) > on + 0.1
    with pytest.raises(ValueError, match="Expected `target=None` for DenoiserTangent"):
        unconditional.spectrum(mid, target=0)


def test_the_general_spectrum_comes_back_in_the_inputs_dtype(mixture10):
    space = DenoiserTangent(mixture10, sigma=0.5, dim=2, method="general", oversampling=2)
    x = torch.randn(3, 10, dtype=torch.float64)
    assert space.spectrum(x).dtype == torch.float64
    assert space.spectrum(x.float()).dtype == torch.float32
    assert (
        repr(space)
        == "DenoiserTangent(GaussianMixtureScore, sigma=0.5, dim=2, method='general', input_shape=torch.Size([10]))"
    )


def test_bad_oversampling_and_chunk_sizes_are_refused_naming_the_argument(mixture10):
    with pytest.raises(ValueError, match=r"Expected `oversampling` to be >= 0 but got -1"):
        DenoiserTangent(mixture10, sigma=0.1, dim=2, oversampling=-1)
    with pytest.raises(TypeError, match=r"Expected `oversampling` to be an int"):
        DenoiserTangent(mixture10, sigma=0.1, dim=2, oversampling=2.0)
    with pytest.raises(ValueError, match=r"Expected `chunk_size` to be >= 1 but got 0"):
        DenoiserTangent(mixture10, sigma=0.1, dim=2, chunk_size=0)
    assert DenoiserTangent(mixture10, sigma=0.1, dim=2, oversampling=0).oversampling == 0


def test_probes_are_kept_per_dtype_so_a_float64_call_after_a_float32_one_is_exact(mixture10):
    x = torch.randn(3, 10, dtype=torch.float64)
    vals, _ = exact_jacobian_eigh(mixture10, x, 0.5)
    space = DenoiserTangent(mixture10, sigma=0.5, dim=3, oversampling=20, iterations=1)
    space.basis(x.float())
    space.basis(x)
    assert space.last_spectrum.dtype == torch.float64
    torch.testing.assert_close(space.last_spectrum, vals, rtol=1e-10, atol=1e-12)


def test_the_networks_of_a_score_model_run_frozen_in_eval_mode_and_come_back_as_they_were():
    from captum_pags.models import load_digits16_score_model

    score_model = load_digits16_score_model()
    unet = score_model.unet.train()
    seen = []
    handle = unet.register_forward_pre_hook(
        lambda module, args: seen.append((module.training, any(p.requires_grad for p in module.parameters())))
    )
    try:
        DenoiserTangent(score_model, 0.05, dim=2, oversampling=2, iterations=0).basis(torch.rand(2, 1, 16, 16))
    finally:
        handle.remove()
    assert seen and set(seen) == {(False, False)}
    assert unet.training and all(p.requires_grad for p in unet.parameters())


def test_project_orthogonal_passes_the_labels_on(mixture10):
    space = DenoiserTangent(mixture10, sigma=0.5, dim=2, oversampling=4, conditional=True)
    x, v = torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64)
    for label in (0, 2):
        expected = v - space.project(x, v, target=label)
        torch.testing.assert_close(space.project_orthogonal(x, v, target=label), expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(space.project(x, v, target=0), space.project(x, v, target=2))


def test_canonical_signs_make_the_largest_entry_of_each_row_positive():
    from captum_pags.manifold._subspace_iteration import canonical_signs

    rows = torch.tensor([[[0.6, -0.8], [0.8, 0.6]], [[-0.6, 0.8], [-0.8, -0.6]]], dtype=torch.float64)
    out = canonical_signs(rows)
    expected = torch.tensor([[[-0.6, 0.8], [0.8, 0.6]], [[-0.6, 0.8], [0.8, 0.6]]], dtype=torch.float64)
    assert torch.equal(out, expected)
    assert torch.equal(canonical_signs(out), out)  # idempotent


def test_the_spectrum_is_none_until_the_first_call(mixture10):
    space = DenoiserTangent(mixture10, sigma=0.5, dim=2)
    assert space.last_spectrum is None
    space.basis(torch.randn(2, 10, dtype=torch.float64))
    assert space.last_spectrum.shape == (2, min(space.dim + space.oversampling, 10))  # m = min(k + p, D)
