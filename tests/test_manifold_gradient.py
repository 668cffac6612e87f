import pytest
import torch
from captum.attr import NoiseTunnel, Saliency
from captum.metrics import infidelity, sensitivity_max
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags import LinearSubspace, ManifoldGradient


def _explicit(model, x, target, p):
    """Float64 reference: a per-example Jacobian row times an explicit projector P."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach().double().requires_grad_()
        (g,) = torch.autograd.grad(model.double()(xi)[0, target[i]], xi)
        out.append(g.reshape(-1) @ p)
    model.float()
    return torch.stack(out).reshape(x.shape)


def test_matches_explicit_projection_for_random_linear_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 4))
    space = LinearSubspace(torch.randn(5, 20, dtype=torch.float64), input_shape=(4, 5))
    x, y = torch.randn(6, 4, 5), torch.tensor([0, 1, 2, 3, 0, 1])
    expected = _explicit(model, x, y, space.projection_matrix())
    got = ManifoldGradient(model, space).attribute(x, target=y)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_matches_explicit_projection_for_bayes_classifier(gaussian_data):
    model = gaussian_data.bayes_classifier()
    x, y = gaussian_data.sample(8, seed=1, dtype=torch.float64)
    space = gaussian_data.tangent_space
    expected = _explicit(model, x, y, space.projection_matrix())
    got = ManifoldGradient(model, space).attribute(x, target=y)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


def test_bayes_gradient_lies_in_the_tangent_space():
    from captum_pags.datasets import GaussianSubspaceMixture

    data = GaussianSubspaceMixture(num_classes=4, intrinsic_dim=5, shape=(1, 8, 8), on_std=1.0, off_std=1e-3, seed=2)
    x, y = data.sample(32, seed=0, dtype=torch.float64)
    mg = ManifoldGradient(data.bayes_classifier(), data.tangent_space)
    full = mg.attribute(x, target=y, component="full")
    off = mg.attribute(x, target=y, component="off")
    rel = off.flatten(1).norm(dim=1) / full.flatten(1).norm(dim=1)
    assert float(rel.max()) < 1e-3


def test_on_plus_off_equals_full_and_projecting_twice(small_net):
    small_net.eval()
    space = LinearSubspace(torch.randn(7, 36), input_shape=(1, 6, 6))
    mg = ManifoldGradient(small_net, space)
    x = torch.randn(5, 1, 6, 6)
    on, off, full = (mg.attribute(x, target=1, component=c) for c in ("on", "off", "full"))
    torch.testing.assert_close(on + off, full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(space.project(x, on), on, atol=1e-6, rtol=1e-5)
    sal = Saliency(small_net).attribute(x, target=1, abs=False)
    torch.testing.assert_close(full, sal)
    torch.testing.assert_close(mg.attribute(x, target=1, component="full", abs=True), sal.abs())


def test_full_dimensional_subspace_gives_back_the_gradient(small_net):
    small_net.eval()
    mg = ManifoldGradient(small_net, LinearSubspace(torch.randn(36, 36), input_shape=(1, 6, 6)))
    x = torch.randn(3, 1, 6, 6)
    torch.testing.assert_close(
        mg.attribute(x, target=0), mg.attribute(x, target=0, component="full"), atol=1e-5, rtol=1e-4
    )


def test_tuple_inputs_and_additional_forward_args():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(4, 2)

        def forward(self, x1, x2, scale):
            return (self.a(x1) + self.b(x2)) * scale

    model = TwoInputs()
    space = LinearSubspace(torch.randn(3, 7), input_shape=((3,), (4,)))
    x = (torch.randn(5, 3), torch.randn(5, 4))
    on = ManifoldGradient(model, space).attribute(x, target=1, additional_forward_args=2.0)
    assert isinstance(on, tuple) and on[0].shape == (5, 3) and on[1].shape == (5, 4)
    g = torch.cat([model.a.weight[1], model.b.weight[1]]).detach().double() * 2.0
    expected = (g @ space.projection_matrix()).float().expand(5, 7)
    torch.testing.assert_close(torch.cat(on, 1), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_identity_and_batching(small_net, nt_type):
    small_net.eval()
    space = LinearSubspace(torch.randn(5, 36), input_shape=(1, 6, 6))
    mg = ManifoldGradient(small_net, space)
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    nt = NoiseTunnel(mg)
    plain = mg.attribute(x, target=y)
    if nt_type == "smoothgrad":
        torch.testing.assert_close(nt.attribute(x, nt_type=nt_type, nt_samples=1, stdevs=0.0, target=y), plain)
    elif nt_type == "smoothgrad_sq":
        torch.testing.assert_close(nt.attribute(x, nt_type=nt_type, nt_samples=1, stdevs=0.0, target=y), plain**2)
    else:
        out = nt.attribute(x, nt_type=nt_type, nt_samples=1, stdevs=0.0, target=y)
        torch.testing.assert_close(out, torch.zeros_like(plain))
    a = nt.attribute(x, nt_type=nt_type, nt_samples=6, stdevs=0.1, target=y, component="off")
    torch.manual_seed(0)
    b = nt.attribute(x, nt_type=nt_type, nt_samples=6, nt_samples_batch_size=4, stdevs=0.1, target=y, component="off")
    assert a.shape == b.shape == x.shape
    if nt_type == "smoothgrad":
        # every noisy gradient is off-manifold, so their mean is too
        torch.testing.assert_close(space.project(x, a), torch.zeros_like(a), atol=1e-5, rtol=0)


def test_captum_metrics_run_and_return_per_example(small_net):
    small_net.eval()
    space = LinearSubspace(torch.randn(5, 36), input_shape=(1, 6, 6))
    mg = ManifoldGradient(small_net, space)
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    attr = mg.attribute(x, target=y)

    def perturb(inputs):
        noise = 0.01 * torch.randn_like(inputs)
        return noise, inputs - noise

    inf = infidelity(small_net, perturb, x, attr, target=y)
    sens = sensitivity_max(mg.attribute, x, target=y, perturb_radius=0.01, n_perturb_samples=3)
    assert inf.shape == (4,) and sens.shape == (4,)
    assert bool(torch.isfinite(inf).all()) and bool((sens >= 0).all())


def test_create_graph_second_order_matches_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    space = LinearSubspace(torch.randn(3, 6, dtype=torch.float64))
    mg = ManifoldGradient(model, space)
    x = torch.randn(4, 6, dtype=torch.float64)

    def penalty():
        return mg.attribute(x, target=1, create_graph=True).pow(2).sum()

    value = penalty()
    assert value.grad_fn is not None
    w = model[0].weight
    (grad_w,) = torch.autograd.grad(value, w)
    assert w.grad is None
    direction = torch.randn_like(w)
    h = 1e-6
    with torch.no_grad():
        w.add_(h * direction)
        up = penalty().item()
        w.sub_(2 * h * direction)
        down = penalty().item()
        w.add_(h * direction)
    fd = (up - down) / (2 * h)
    assert abs(fd - float((grad_w * direction).sum())) < 1e-6 * max(1.0, abs(fd))
    assert mg.attribute(x, target=1).grad_fn is None


def test_model_comes_back_unchanged_also_after_an_error(small_net):
    small_net.train()
    small_net.net[1].weight.requires_grad_(False)
    small_net.net[-1].weight.grad = torch.ones_like(small_net.net[-1].weight)
    before = model_snapshot(small_net)
    space = LinearSubspace(torch.randn(5, 36), input_shape=(1, 6, 6))
    mg = ManifoldGradient(small_net, space)
    x = torch.randn(4, 1, 6, 6)
    mg.attribute(x, target=0)
    assert_model_unchanged(small_net, before)
    with pytest.raises(ValueError):
        mg.attribute(x, target=[0, 1])  # wrong number of targets
    assert_model_unchanged(small_net, before)
    assert not x.requires_grad


def test_bad_input_names_the_argument(small_net):
    space = LinearSubspace(torch.randn(5, 36), input_shape=(1, 6, 6))
    mg = ManifoldGradient(small_net.eval(), space)
    x = torch.randn(2, 1, 6, 6)
    with pytest.raises(ValueError, match="`component` to be one of 'on', 'off', 'full' but got 'tangent'"):
        mg.attribute(x, target=0, component="tangent")
    with pytest.raises(ValueError, match="`inputs` to hold finite values"):
        mg.attribute(torch.full_like(x, float("nan")), target=0)
    with pytest.raises(ValueError, match="empty batch"):
        mg.attribute(x[:0], target=0)
    with pytest.raises(ValueError, match=r"per-example shape \(1, 6, 6\)"):
        ManifoldGradient(lambda z: z.flatten(1)[:, :3], space).attribute(torch.randn(2, 1, 5, 5), target=0)
    with pytest.raises(TypeError, match="`tangent_space`"):
        ManifoldGradient(small_net, torch.eye(3))
    with pytest.raises(TypeError, match="`inputs`"):
        mg.attribute([x], target=0)


class _BatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)


def test_train_mode_model_runs_in_eval_mode_and_keeps_its_batchnorm_statistics():
    torch.manual_seed(1)
    model = _BatchNormNet().train()
    with torch.no_grad():  # non-trivial running statistics, so that eval and train outputs differ
        model.net[2].running_mean.normal_()
        model.net[2].running_var.uniform_(0.5, 2.0)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    before = model_snapshot(model)
    space = LinearSubspace(torch.randn(5, 36), input_shape=(1, 6, 6))
    x = torch.randn(6, 1, 6, 6)
    mg = ManifoldGradient(model, space)
    first, second = mg.attribute(x, target=2), mg.attribute(x, target=2)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    for k, v in model.named_buffers():
        torch.testing.assert_close(v, buffers[k], rtol=0, atol=0)
    assert_model_unchanged(model, before)
    expected = ManifoldGradient(model.eval(), space).attribute(x, target=2)
    model.train()
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    # the documented opt-out runs the model as it is: batch statistics, updated buffers
    ManifoldGradient(model, space, eval_mode=False).attribute(x, target=2)
    assert not torch.equal(model.net[2].running_mean, buffers["net.2.running_mean"])
    with pytest.raises(TypeError, match="`eval_mode` to be a bool"):
        ManifoldGradient(model, space, eval_mode=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_abs_with_every_component_matches_a_float64_projector(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 6), nn.Tanh(), nn.Linear(6, 4)).double()
    space = LinearSubspace(torch.randn(5, 20, dtype=torch.float64), input_shape=(4, 5))
    x, y = torch.randn(6, 4, 5, dtype=torch.float64), torch.randint(0, 4, (6,))
    p = space.projection_matrix()
    full = _explicit(model, x, y, torch.eye(20, dtype=torch.float64))
    model.double()
    on = _explicit(model, x, y, p)
    model.double()
    expected = {"on": on, "off": full - on, "full": full}
    mg = ManifoldGradient(model, space)
    for component, ref in expected.items():
        plain = mg.attribute(x, target=y, component=component)
        absolute = mg.attribute(x, target=y, component=component, abs=True)
        torch.testing.assert_close(plain, ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(absolute, ref.abs(), rtol=1e-10, atol=1e-12)
        assert bool((absolute >= 0).all()) and bool((plain < 0).any())
