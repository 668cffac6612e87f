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
