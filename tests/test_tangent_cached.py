import pytest
import torch
from torch import nn

from captum_pags.manifold import CachedTangent, DecoderTangent, LinearSubspace


class CountingSpace(LinearSubspace):
    calls = 0

    def _basis(self, inputs):
        CountingSpace.calls += inputs[0].shape[0]
        return super()._basis(inputs)


@pytest.fixture
def decoder_space():
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 20), nn.Unflatten(1, (1, 4, 5)))
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(20, 3))
    return DecoderTangent(decoder, encoder)


def test_cached_bases_equal_the_estimator_and_skip_it(decoder_space):
    x = torch.randn(10, 1, 4, 5)
    cached = CachedTangent(decoder_space, x)
    torch.testing.assert_close(cached.basis(x), decoder_space.basis(x))
    torch.testing.assert_close(cached.basis(x[3:7]), decoder_space.basis(x[3:7]))  # chunks of the cached points
    v = torch.randn(4, 1, 4, 5)
    torch.testing.assert_close(cached.project(x[3:7], v), decoder_space.project(x[3:7], v))
    assert cached.hits == 10 + 4 + 4
    assert cached.dim == decoder_space.dim


def test_changed_or_other_points_go_to_the_estimator(decoder_space):
    x = torch.randn(6, 1, 4, 5)
    cached = CachedTangent(decoder_space, x)
    moved = x + 1e-6
    torch.testing.assert_close(cached.basis(moved), decoder_space.basis(moved))
    mixed = torch.cat([x[:2], torch.randn(1, 1, 4, 5)])
    torch.testing.assert_close(cached.basis(mixed), decoder_space.basis(mixed))
    assert cached.hits == 0


def test_the_wrapped_estimator_runs_once_for_cached_points():
    CountingSpace.calls = 0
    space = CountingSpace(torch.randn(2, 8))
    x = torch.randn(5, 8)
    cached = CachedTangent(space, x)
    for _ in range(3):
        cached.project(x, torch.randn(5, 8))
    assert CountingSpace.calls == 5
    cached.basis(x.double())  # same values, other dtype: not served from the cache
    assert CountingSpace.calls == 10 and cached.hits == 15


def test_bad_arguments():
    with pytest.raises(TypeError, match="`space` to be a TangentSpace"):
        CachedTangent(torch.eye(3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="`points`"):
        CachedTangent(LinearSubspace(torch.eye(3)[:1]), torch.zeros(0, 3))


class LabelSpace(LinearSubspace):
    """A plane without a label; with label ``y``, the axis ``e_y`` (a space whose basis reads the target)."""

    @property
    def takes_target(self):
        return True

    def _basis_for(self, inputs, target):
        if target is None:
            return super()._basis(inputs)
        n, d = inputs[0].shape[0], inputs[0][0].numel()
        return torch.eye(d, dtype=inputs[0].dtype)[int(target)].expand(n, 1, d)


def test_a_call_with_a_target_goes_to_the_estimator_with_its_target():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    cached = CachedTangent(LabelSpace(torch.eye(4)[:1] * 0.6 + torch.eye(4)[1:2] * 0.8), x)
    assert cached.takes_target
    torch.testing.assert_close(cached.basis(x, target=2), torch.eye(4)[2].expand(3, 1, 4))
    assert cached.hits == 0
    torch.testing.assert_close(cached.basis(x), LabelSpace(torch.eye(4)[:1] * 0.6 + torch.eye(4)[1:2] * 0.8).basis(x))
    assert cached.hits == 3


def test_tuple_inputs_are_cached_and_passed_on_whole():
    from captum_pags.manifold import LocalPCATangent

    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(100, 4, generator=gen), torch.randn(100, 2, 3, generator=gen)
    space = LocalPCATangent((a, b), dim=2, n_neighbors=8)
    qa, qb = torch.randn(5, 4, generator=gen), torch.randn(5, 2, 3, generator=gen)
    cached = CachedTangent(space, (qa[:3], qb[:3]))
    torch.testing.assert_close(cached.basis((qa[:3], qb[:3])), space.basis((qa[:3], qb[:3])))
    assert cached.hits == 3
    torch.testing.assert_close(cached.basis((qa, qb)), space.basis((qa, qb)))  # not all cached: estimated
    assert cached.hits == 3


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float32])
def test_points_of_any_dtype_are_found_again(dtype):
    points = (torch.arange(12).reshape(3, 4) * 3 - 5).to(dtype)
    cached = CachedTangent(LinearSubspace(torch.eye(4)[:2]), points)
    cached.basis(points)
    assert cached.hits == 3


def test_the_cache_keeps_the_estimators_input_shape_and_names_points():
    cached = CachedTangent(LinearSubspace(torch.eye(4)[:2]), torch.zeros(2, 4))
    assert cached.input_shape == cached.space.input_shape
    with pytest.raises(ValueError, match="per-example shape"):
        cached.basis(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="`points`"):
        CachedTangent(LinearSubspace(torch.eye(4)[:2]), [[0.0] * 4])
