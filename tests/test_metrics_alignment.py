import math
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from conftest import assert_model_unchanged, model_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from captum_pags.attr import input_gradients
from captum_pags.datasets import GaussianSubspaceMixture
from captum_pags.manifold import LinearSubspace, TangentSpace
from captum_pags.metrics import (
    AlignmentAccumulator,
    TangentAlignmentAccumulator,
    perceptual_alignment,
    random_tangent_alignment,
    score_alignment,
    tangent_alignment,
)
from captum_pags.scores import BayesOptimalClassifier, GaussianMixtureScore


def _cosine_loop(a, b):
    """Float64 reference: one example at a time."""
    out = []
    for i in range(a.shape[0]):
        u, v = a[i].reshape(-1).double(), b[i].reshape(-1).double()
        out.append(float(u @ v) / math.sqrt(float(u @ u) * float(v @ v)))
    return torch.tensor(out, dtype=torch.float64)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


@pytest.fixture
def subspace_data():
    return GaussianSubspaceMixture(num_classes=3, intrinsic_dim=4, shape=(1, 6, 6), off_std=1e-3, seed=0)


# ------------------------------------------------------------------------------------ score_alignment
def test_cosine_and_pearson_match_float64_references():
    a, s = torch.randn(7, 2, 3, 4), torch.randn(7, 2, 3, 4)
    torch.testing.assert_close(score_alignment(a, s).double(), _cosine_loop(a, s), rtol=1e-5, atol=1e-6)
    centred = [t.reshape(7, -1) - t.reshape(7, -1).mean(1, keepdim=True) for t in (a, s)]
    torch.testing.assert_close(score_alignment(a, s, "pearson").double(), _cosine_loop(*centred), rtol=1e-5, atol=1e-6)
    expected = torch.tensor([torch.corrcoef(torch.stack([u.reshape(-1), v.reshape(-1)]))[0, 1] for u, v in zip(a, s)])
    torch.testing.assert_close(score_alignment(a, s, "pearson"), expected, rtol=1e-5, atol=1e-6)


def test_tuple_form_equals_concatenated_maps_and_chunking_changes_nothing():
    a = (torch.randn(5, 3), torch.randn(5, 2, 2))
    s = (torch.randn(5, 3), torch.randn(5, 2, 2))
    cat = lambda t: torch.cat([t[0], t[1].reshape(5, -1)], 1)  # noqa: E731
    torch.testing.assert_close(score_alignment(a, s), score_alignment(cat(a), cat(s)))
    torch.testing.assert_close(score_alignment(a, s, max_examples_per_batch=2), score_alignment(a, s))


def test_tiny_and_huge_maps_do_not_underflow():
    a, s = torch.randn(4, 10), torch.randn(4, 10)
    ref = score_alignment(a, s)
    torch.testing.assert_close(score_alignment(a * 1e-30, s * 1e30), ref, rtol=1e-5, atol=1e-6)


def test_all_zero_and_constant_maps_are_nan_with_a_warning():
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    s = torch.tensor([[1.0, 2.0], [1.0, 1.0], [1.0, -1.0]])
    with pytest.warns(RuntimeWarning, match="1 of 3 example"):
        out = score_alignment(a, s)
    assert torch.isnan(out[1]) and not torch.isnan(out[[0, 2]]).any()
    with pytest.warns(RuntimeWarning, match="2 of 3 example.*constant map"):
        out = score_alignment(a, s, "pearson")
    assert torch.isnan(out[1:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score_alignment(a[[0]], s[[0]])  # defined maps raise no warning


finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda d: st.tuples(st.lists(finite, min_size=d, max_size=d), st.lists(finite, min_size=d, max_size=d))
    ),
    st.floats(1e-3, 1e3),
)
def test_cosine_is_bounded_symmetric_and_scale_invariant(pair, scale):
    a, s = (torch.tensor(v).unsqueeze(0) for v in pair)
    cos = _quiet(score_alignment, a, s)
    if torch.isnan(cos).any():
        assert not bool(a.any()) or not bool(s.any())
        return
    assert -1.0 <= float(cos) <= 1.0
    torch.testing.assert_close(_quiet(score_alignment, s, a), cos)
    torch.testing.assert_close(_quiet(score_alignment, a * scale, s), cos, rtol=1e-4, atol=1e-4)
    pearson = _quiet(score_alignment, a, s, "pearson")
    assert bool(torch.isnan(pearson).all()) or -1.0 <= float(pearson) <= 1.0


def test_score_alignment_bad_input_names_the_argument():
    a = torch.randn(3, 4)
    with pytest.raises(
        ValueError, match=r"`attributions` and `scores` to have the same shape but got \(3, 4\) and \(3, 5\)"
    ):
        score_alignment(a, torch.randn(3, 5))
    with pytest.raises(ValueError, match="same number of tensors but got 2 and 1"):
        score_alignment((a, a), (a,))
    with pytest.raises(ValueError, match="`method` to be one of 'cosine', 'pearson', 'lpips', 'ssim' but got 'l2'"):
        score_alignment(a, a, "l2")
    with pytest.raises(TypeError, match="`scores`"):
        score_alignment(a, [a])
    with pytest.raises(ValueError, match="`max_examples_per_batch` to be >= 1 but got 0"):
        score_alignment(a, a, max_examples_per_batch=0)
    with pytest.raises(ValueError, match="`attributions` to hold finite values"):
        score_alignment(torch.full_like(a, math.nan), a)


# ------------------------------------------------------------------------------------ perceptual_alignment
def test_bayes_classifier_log_softmax_gradient_is_the_bayes_score_difference(subspace_data):
    sigma = 0.3
    x, y = subspace_data.sample(12, seed=1, dtype=torch.float64)
    model = subspace_data.bayes_classifier(sigma)
    score = subspace_data.score_model
    out = perceptual_alignment(model, x, score, sigma, target=y)
    torch.testing.assert_close(out, torch.ones(12, dtype=torch.float64), atol=1e-4, rtol=0)
    # the same through the plain functions
    (g,) = input_gradients(lambda z: torch.log_softmax(model(z), 1), (x,), y)
    diff = score.score(x, sigma, y) - score.score(x, sigma)
    torch.testing.assert_close(score_alignment(g, diff), torch.ones(12, dtype=torch.float64), atol=1e-4, rtol=0)


def test_logit_and_score_choices_match_explicit_maps():
    torch.manual_seed(3)
    mixture = GaussianMixtureScore(torch.randn(3, 6), torch.eye(6) * 0.5)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y, sigma = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1]), 0.4
    xr = x.clone().requires_grad_()
    logit = torch.autograd.grad(model(xr).gather(1, y[:, None]).sum(), xr)[0]
    xr = x.clone().requires_grad_()
    logsm = torch.autograd.grad(torch.log_softmax(model(xr), 1).gather(1, y[:, None]).sum(), xr)[0]
    cond, uncond = mixture.score(x, sigma, y), mixture.score(x, sigma)
    cases = {
        ("logit", "conditional"): (logit, cond),
        ("logit", "unconditional"): (logit, uncond),
        ("log_softmax", "bayes"): (logsm, cond - uncond),
    }
    for (gradient, score), (g, s) in cases.items():
        out = perceptual_alignment(model, x, mixture, sigma, y, gradient=gradient, score=score)
        torch.testing.assert_close(out.double(), _cosine_loop(g, s), rtol=1e-4, atol=1e-5)
    chunked = perceptual_alignment(model, x, mixture, sigma, y, max_examples_per_batch=2)
    torch.testing.assert_close(chunked, perceptual_alignment(model, x, mixture, sigma, y))


def test_captum_attributions_can_replace_the_gradient():
    torch.manual_seed(4)
    mixture = GaussianMixtureScore(torch.randn(3, 6), torch.eye(6))
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y, sigma = torch.randn(4, 6), torch.tensor([0, 1, 2, 0]), 0.5
    s = mixture.score(x, sigma, y) - mixture.score(x, sigma)
    ig = IntegratedGradients(lambda z: torch.log_softmax(model(z), 1)).attribute(x, target=y, n_steps=16)
    out = perceptual_alignment(
        model, x, mixture, sigma, y, attribution=IntegratedGradients, attribute_kwargs={"n_steps": 16}
    )
    torch.testing.assert_close(out, score_alignment(ig, s))
    nt = NoiseTunnel(Saliency(model))
    identity = perceptual_alignment(
        model,
        x,
        mixture,
        sigma,
        y,
        score="conditional",
        attribution=nt,
        attribute_kwargs={"nt_samples": 1, "stdevs": 0.0, "abs": False},
    )
    plain = perceptual_alignment(model, x, mixture, sigma, y, gradient="logit", score="conditional")
    torch.testing.assert_close(identity, plain)
    torch.manual_seed(0)
    noisy = perceptual_alignment(model, x, mixture, sigma, y, attribution=nt, attribute_kwargs={"nt_samples": 4})
    torch.manual_seed(0)
    smooth = nt.attribute(x, target=y, nt_samples=4)
    torch.testing.assert_close(noisy, score_alignment(smooth, s))


def test_perceptual_alignment_leaves_the_model_unchanged_also_after_an_error(small_net):
    mixture = GaussianMixtureScore(torch.randn(3, 1, 6, 6), torch.eye(36))
    small_net.train()
    small_net.net[1].weight.requires_grad_(False)
    small_net.net[-1].weight.grad = torch.ones_like(small_net.net[-1].weight)
    before = model_snapshot(small_net)
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    out = perceptual_alignment(small_net, x, mixture, 0.5, y)
    assert out.shape == (4,)
    assert_model_unchanged(small_net, before)
    # eval mode inside: the same as an explicit eval-mode computation
    small_net.eval()
    torch.testing.assert_close(perceptual_alignment(small_net, x, mixture, 0.5, y), out)
    small_net.train()
    with pytest.raises(TypeError):
        perceptual_alignment(small_net, x, mixture, 0.5, y, attribution=Saliency, attribute_kwargs={"bogus": 1})
    assert_model_unchanged(small_net, before)
    assert not x.requires_grad


def test_perceptual_alignment_bad_input(small_net):
    mixture = GaussianMixtureScore(torch.randn(3, 1, 6, 6), torch.eye(36))
    x = torch.randn(2, 1, 6, 6)
    with pytest.raises(ValueError, match="Expected `target`"):
        perceptual_alignment(small_net, x, mixture, 0.5, None)
    with pytest.raises(ValueError, match=r"`target` to have shape \(2,\)"):
        perceptual_alignment(small_net, x, mixture, 0.5, [0, 1, 2])
    with pytest.raises(ValueError, match="`sigma` to be a finite number >= 0 but got -1.0"):
        perceptual_alignment(small_net, x, mixture, -1.0, 0)
    with pytest.raises(ValueError, match="`gradient` to be one of 'log_softmax', 'logit'"):
        perceptual_alignment(small_net, x, mixture, 0.5, 0, gradient="softmax")
    with pytest.raises(ValueError, match="`score` to be one of 'bayes', 'conditional', 'unconditional'"):
        perceptual_alignment(small_net, x, mixture, 0.5, 0, score="joint")
    with pytest.raises(TypeError, match="`score_model`"):
        perceptual_alignment(small_net, x, lambda z: z, 0.5, 0)
    with pytest.raises(TypeError, match="`attribution` to be a Captum Attribution"):
        perceptual_alignment(small_net, x, mixture, 0.5, 0, attribution=lambda z: z)
    with pytest.raises(ValueError, match=r"per-example shape \(1, 6, 6\)"):
        perceptual_alignment(small_net, torch.randn(2, 36), mixture, 0.5, 0)


# ------------------------------------------------------------------------------------ tangent_alignment
def test_tangent_alignment_matches_an_explicit_projector():
    space = LinearSubspace(torch.randn(5, 2, 3, 3, dtype=torch.float64))
    g, x = torch.randn(6, 2, 3, 3), torch.randn(6, 2, 3, 3)
    p = space.projection_matrix()
    flat = g.reshape(6, -1).double()
    expected = (flat @ p).norm(dim=1) / flat.norm(dim=1)
    torch.testing.assert_close(tangent_alignment(g, x, space).double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tangent_alignment(g, x, space, max_examples_per_batch=4), tangent_alignment(g, x, space))
    assert float(tangent_alignment(space.project(x, g), x, space).min()) > 1 - 1e-5


def test_bayes_gradient_is_tangent_and_an_off_subspace_model_is_not(subspace_data):
    x, y = subspace_data.sample(16, seed=2, dtype=torch.float64)
    space = subspace_data.tangent_space
    model = subspace_data.bayes_classifier()
    (g,) = input_gradients(lambda z: torch.log_softmax(model(z), 1), (x,), y)
    assert float(tangent_alignment(g, x, space).min()) >= 0.99

    # not the global seed: the data's basis was drawn from a generator seeded like it
    w = torch.randn(3, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(123))
    w_off = w - w @ space.projection_matrix()

    def off_only(z):
        return z.reshape(z.shape[0], -1) @ w_off.T

    (g_off,) = input_gradients(off_only, (x,), y)
    assert float(tangent_alignment(g_off, x, space).max()) < 1e-6


def test_random_baseline_is_the_rms_of_random_directions():
    space = LinearSubspace(torch.randn(9, 64))
    assert random_tangent_alignment(space) == pytest.approx(math.sqrt(9 / 64))
    g = torch.randn(4000, 64)
    rms = tangent_alignment(g, torch.zeros(4000, 64), space).double().pow(2).mean().sqrt()
    assert float(rms) == pytest.approx(3 / 8, abs=0.01)
    per_example = random_tangent_alignment(space, torch.zeros(3, 64))
    torch.testing.assert_close(per_example, torch.full((3,), 3 / 8))


class _DroppingSpace(TangentSpace):
    """Per-example bases whose second row is dropped (zero) for odd examples."""

    def __init__(self):
        super().__init__((4,))

    @property
    def dim(self):
        return 2

    def _basis(self, inputs):
        n = inputs[0].shape[0]
        basis = torch.eye(4, dtype=inputs[0].dtype)[:2].expand(n, 2, 4).clone()
        basis[1::2, 1] = 0
        return basis


def test_random_baseline_counts_dropped_directions():
    out = random_tangent_alignment(_DroppingSpace(), torch.zeros(4, 4))
    torch.testing.assert_close(out, torch.tensor([2 / 4, 1 / 4, 2 / 4, 1 / 4]).sqrt())
    g = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2)
    torch.testing.assert_close(tangent_alignment(g, torch.zeros(2, 4), _DroppingSpace()), torch.tensor([1.0, 0.5**0.5]))


def test_tangent_alignment_of_captum_outputs_and_tuple_inputs(small_net):
    small_net.eval()
    space = LinearSubspace(torch.randn(6, 36), input_shape=(1, 6, 6))
    x = torch.randn(3, 1, 6, 6)
    for attr in (
        IntegratedGradients(small_net).attribute(x, target=1, n_steps=8),
        NoiseTunnel(Saliency(small_net)).attribute(x, target=1, nt_samples=3, stdevs=0.1),
    ):
        expected = (attr.reshape(3, -1).double() @ space.projection_matrix()).norm(dim=1) / attr.reshape(
            3, -1
        ).double().norm(dim=1)
        torch.testing.assert_close(tangent_alignment(attr, x, space).double(), expected, rtol=1e-5, atol=1e-6)
    tspace = LinearSubspace(torch.randn(2, 5, dtype=torch.float64), input_shape=((2,), (3,)))
    g = (torch.randn(4, 2), torch.randn(4, 3))
    expected = (torch.cat(g, 1).double() @ tspace.projection_matrix()).norm(dim=1) / torch.cat(g, 1).double().norm(
        dim=1
    )
    torch.testing.assert_close(tangent_alignment(g, (torch.zeros(4, 2), torch.zeros(4, 3)), tspace).double(), expected)


def test_tangent_alignment_zero_maps_and_bad_input():
    space = LinearSubspace(torch.randn(2, 36), input_shape=(1, 6, 6))
    x = torch.randn(2, 1, 6, 6)
    with pytest.warns(RuntimeWarning, match="1 of 2 example.*all-zero attribution"):
        out = tangent_alignment(torch.stack([torch.zeros(1, 6, 6), torch.ones(1, 6, 6)]), x, space)
    assert torch.isnan(out[0]) and torch.isfinite(out[1])
    with pytest.raises(ValueError, match=r"`inputs` to have per-example shape \(1, 6, 6\).*built for.*\(1, 5, 5\)"):
        tangent_alignment(torch.randn(2, 1, 5, 5), torch.randn(2, 1, 5, 5), space)
    with pytest.raises(ValueError, match=r"`attributions` and `inputs` to have the same shape"):
        tangent_alignment(torch.randn(3, 1, 6, 6), x, space)
    with pytest.raises(TypeError, match="`tangent_space` to be a captum_pags TangentSpace"):
        tangent_alignment(x, x, torch.eye(36))
    with pytest.raises(ValueError, match="`attributions` to hold 1 tensor"):
        tangent_alignment((x, x), x, space)
    with pytest.raises(ValueError, match="Expected `inputs` for a tangent space without a fixed"):
        random_tangent_alignment(_NoShape())


class _NoShape(TangentSpace):
    @property
    def dim(self):
        return 1

    def _basis(self, inputs):
        d = inputs[0][0].numel()
        return torch.eye(d, dtype=inputs[0].dtype)[:1]


# ------------------------------------------------------------------------------------ accumulators
def test_alignment_accumulator_equals_the_function_on_all_data():
    a, s = torch.randn(10, 3, 4), torch.randn(10, 3, 4)
    a[3] = 0
    acc = AlignmentAccumulator("pearson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for sl in (slice(0, 4), slice(4, 9), slice(9, 10)):
            acc.update(a[sl], s[sl])
        values = score_alignment(a, s, "pearson").double()
    summary = acc.compute()
    ok = ~torch.isnan(values)
    torch.testing.assert_close(summary.mean, values[ok].mean(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(summary.std, values[ok].std(unbiased=False), rtol=1e-5, atol=1e-7)
    assert (summary.count, summary.num_undefined) == (9, 1)
    acc.reset()
    with pytest.raises(RuntimeError, match="at least one call to `update`"):
        acc.compute()


def test_tangent_alignment_accumulator_equals_the_function(subspace_data):
    space = subspace_data.tangent_space
    g, x = torch.randn(9, 1, 6, 6), torch.randn(9, 1, 6, 6)
    acc = TangentAlignmentAccumulator(space, max_examples_per_batch=2)
    acc.update(g[:5], x[:5])
    acc.update(g[5:], x[5:])
    summary = acc.compute()
    torch.testing.assert_close(summary.mean, tangent_alignment(g, x, space).double().mean(), rtol=1e-6, atol=1e-7)
    assert summary.count == 9 and summary.num_undefined == 0
    assert acc.baseline == pytest.approx(math.sqrt(4 / 36))
    with pytest.raises(ValueError, match=r"per-example shape \(1, 6, 6\)"):
        acc.update(torch.randn(2, 5), torch.randn(2, 5))


def test_bayes_classifier_module_dtype():
    # BayesOptimalClassifier keeps working in float64 through the metrics (no silent float32 cast)
    mixture = GaussianMixtureScore(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.eye(2))
    x = torch.randn(3, 2, dtype=torch.float64)
    out = perceptual_alignment(BayesOptimalClassifier(mixture, 0.2), x, mixture, 0.2, target=[0, 1, 1])
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.ones(3, dtype=torch.float64), atol=1e-10, rtol=0)


def test_perceptual_alignment_batches_the_model_and_the_score_model_by_max_examples_per_batch():
    torch.manual_seed(5)
    mixture = GaussianMixtureScore(torch.randn(3, 6, dtype=torch.float64), torch.eye(6, dtype=torch.float64) * 0.5)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(5, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    model_sizes, score_sizes = [], []
    handle = model.register_forward_pre_hook(lambda m, args: model_sizes.append(args[0].shape[0]))
    original = mixture._score

    def recording(inputs, sigma, target):
        score_sizes.append(inputs.shape[0])
        return original(inputs, sigma, target)

    mixture._score = recording
    try:
        perceptual_alignment(model, x, mixture, 0.4, y, max_examples_per_batch=2)
    finally:
        handle.remove()
    assert model_sizes == [2, 2, 1] and max(score_sizes) == 2 and sum(score_sizes) == 2 * 5
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(1))
    try:  # refused before any gradient is taken
        with pytest.raises(ValueError, match="Expected `lpips_net` only with method='lpips'"):
            perceptual_alignment(model, x, mixture, 0.4, y, lpips_net=lambda a, b: a.sum())
        with pytest.raises(TypeError, match="Expected `lpips_net` to be callable"):
            perceptual_alignment(model, x, mixture, 0.4, y, method="lpips", lpips_net="alexnet")
    finally:
        handle.remove()
    assert calls == []


def test_predicted_gradient_target_passes_every_additional_forward_arg():
    class TwoArgs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 3).double()

        def forward(self, x, scale, shift):
            return self.lin(x) * scale + shift

    torch.manual_seed(6)
    mixture = GaussianMixtureScore(torch.randn(3, 6, dtype=torch.float64), torch.eye(6, dtype=torch.float64) * 0.5)
    model = TwoArgs()
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    shift = torch.tensor([[5.0, 0.0, 0.0]], dtype=torch.float64).expand(4, 3)  # class 0 predicted everywhere
    out = perceptual_alignment(
        model,
        x,
        mixture,
        0.4,
        y,
        gradient="logit",
        score="conditional",
        gradient_target="predicted",
        additional_forward_args=(2.0, shift),
    )
    g = (2.0 * model.lin.weight.detach()[0]).expand(4, 6)
    torch.testing.assert_close(out, _cosine_loop(g, mixture.score(x, 0.4, y)), rtol=1e-10, atol=1e-12)


def test_rows_of_very_different_magnitude_in_one_batch_are_scaled_each_on_its_own():
    a, s = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    scale = torch.tensor([[1e-200], [1.0], [1e200], [1e-30]], dtype=torch.float64)
    torch.testing.assert_close(score_alignment(a * scale, s / scale), _cosine_loop(a, s), rtol=1e-12, atol=1e-12)


def test_perceptual_alignment_freezes_the_model_passes_the_method_and_names_a_bad_attribution(small_net):
    torch.manual_seed(7)
    mixture = GaussianMixtureScore(torch.randn(3, 1, 6, 6), torch.eye(36))
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    frozen = []
    handle = small_net.register_forward_pre_hook(
        lambda m, args: frozen.append(not any(p.requires_grad for p in m.parameters()))
    )
    try:
        pearson = perceptual_alignment(small_net, x, mixture, 0.5, y, method="pearson")
    finally:
        handle.remove()
    assert frozen and all(frozen) and all(p.requires_grad for p in small_net.parameters())
    small_net.eval()  # the mode perceptual_alignment takes the gradients in
    (g,) = input_gradients(lambda z: torch.log_softmax(small_net(z), 1), (x,), y)
    s = mixture.score(x, 0.5, y) - mixture.score(x, 0.5)
    torch.testing.assert_close(pearson, score_alignment(g, s, "pearson"), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(pearson, score_alignment(g, s, "cosine"))

    class NotATensor(Saliency):
        def attribute(self, inputs, **kwargs):
            return inputs.tolist()

    with pytest.raises(TypeError, match="`attribution output`"):
        perceptual_alignment(small_net, x, mixture, 0.5, y, attribution=NotATensor(small_net))


def test_cosine_of_rows_with_norms_near_the_float64_underflow_is_exact():
    # entries of about 1e-160: their squares are subnormal, so the fast path's norm loses digits
    # although the product of the two norms (about 1e-159) is a normal number; the row is redone scaled
    a, s = torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64)
    torch.testing.assert_close(score_alignment(a * 1e-160, s), _cosine_loop(a, s), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(score_alignment(a * 1e-160, s * 1e-160), _cosine_loop(a, s), rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="`attributions`"):
        tangent_alignment("maps", torch.zeros(2, 4), LinearSubspace(torch.eye(4)[:2]))


def test_a_16_bit_score_map_is_compared_in_float32_not_in_its_own_precision():
    gen = torch.Generator().manual_seed(8)
    a = torch.randn(4, 300, generator=gen)
    s = torch.randn(4, 300, generator=gen).half()
    out = score_alignment(a, s)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _cosine_loop(a, s.float()), rtol=0, atol=1e-6)
