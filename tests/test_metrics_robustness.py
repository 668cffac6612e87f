import math

import pytest
import torch
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags.datasets import GaussianSubspaceMixture
from captum_pags.manifold import LinearSubspace, TangentSpace
from captum_pags.metrics import ManifoldRobustness, RobustnessAccumulator, manifold_robustness
from captum_pags.metrics.robustness import block_seed


def _reference(model, x, p, epsilons, n_samples, seed, distance="softmax_l1", args=()):
    """Slow float64 reference: one image, one direction, one epsilon at a time, explicit projector ``p``."""
    n = x.shape[0]
    d = x[0].numel()
    # the documented draws: one generator per block of 64 examples, seeded with block_seed(seed, b)
    z = torch.cat(
        [
            torch.randn(
                min(64, n - lo),
                n_samples,
                d,
                generator=torch.Generator().manual_seed(block_seed(seed, lo // 64)),
                dtype=x.dtype,
            )
            for lo in range(0, n, 64)
        ]
    ).double()
    on = torch.zeros(n, len(epsilons), dtype=torch.float64)
    off = torch.zeros_like(on)
    for i in range(n):
        xi = x[i : i + 1]
        argi = tuple(a[i : i + 1] for a in args)
        p0 = torch.softmax(model(xi, *argi).double(), 1)
        for s in range(n_samples):
            t = z[i, s] @ p
            o = z[i, s] - t
            for u, store in ((t, on), (o, off)):
                u = (u / u.norm()).to(x.dtype).reshape(xi.shape)
                for j, eps in enumerate(epsilons):
                    q = torch.softmax(model(xi + eps * u, *argi).double(), 1)
                    if distance == "softmax_l1":
                        change = (p0 - q).abs().sum()
                    else:
                        change = (p0 * (p0.log() - q.log())).sum()
                    store[i, j] += change / n_samples
    return on, off


@pytest.mark.parametrize("distance", ["softmax_l1", "kl"])
def test_matches_a_slow_per_image_loop(small_net, distance):
    small_net.eval()
    space = LinearSubspace(torch.randn(5, 36, dtype=torch.float64), input_shape=(1, 6, 6))
    x = torch.randn(6, 1, 6, 6)
    eps = [0.05, 0.3, 1.0]
    with torch.no_grad():
        on, off = _reference(small_net, x, space.projection_matrix(), eps, 4, seed=7, distance=distance)
    for chunk in (None, 7):
        result = manifold_robustness(small_net, x, space, eps, 4, distance, seed=7, max_examples_per_batch=chunk)
        assert result.on.shape == result.off.shape == result.relative.shape == (6, 3)
        torch.testing.assert_close(result.on.double(), on, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.off.double(), off, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.relative, result.on / result.off)
        torch.testing.assert_close(result.epsilons, torch.tensor(eps))


class _RecordingSubspace(TangentSpace):
    """A fixed subspace given as a per-example basis, recording how many examples each call holds."""

    def __init__(self, basis):
        super().__init__(input_shape=(basis.shape[1],))
        self.rows = basis
        self.sizes = []

    @property
    def dim(self):
        return self.rows.shape[0]

    def _basis(self, inputs):
        n = inputs[0].shape[0]
        self.sizes.append(n)
        return self.rows.to(inputs[0]).expand(n, -1, -1)


@pytest.mark.parametrize("seed", [0, 3])
def test_many_examples_stream_in_bounded_chunks_with_the_same_answer(seed):
    """N > 64: the draws come per block, the geometry per chunk; results do not depend on the chunk size."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    q, _ = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64))
    space = _RecordingSubspace(q.T)
    x = torch.randn(150, 6, dtype=torch.float64)
    eps = [0.1, 0.7]
    with torch.no_grad():
        on, off = _reference(model, x, q @ q.T, eps, 3, seed=seed)
    for chunk in (None, 1, 7, 64, 1000):
        space.sizes.clear()
        result = manifold_robustness(model, x, space, eps, 3, seed=seed, max_examples_per_batch=chunk)
        torch.testing.assert_close(result.on, on, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(result.off, off, rtol=1e-10, atol=1e-12)
        assert sum(space.sizes) == 150 and max(space.sizes) <= min(chunk or 64, 64)


def test_draw_blocks_never_share_directions():
    """Identical examples in different blocks of 64 get different directions; within a call, all differ too."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    q, _ = torch.linalg.qr(torch.randn(6, 2))
    x = torch.randn(1, 6).expand(200, 6).contiguous()
    on = manifold_robustness(model, x, LinearSubspace(q.T), [0.5], 2, seed=5).on[:, 0]
    assert len({round(float(v), 6) for v in on}) == 200
    assert block_seed(5, 1) not in (5, block_seed(5, 2), block_seed(6, 1))


def test_tangent_alignment_holds_a_bounded_number_of_bases(monkeypatch):
    import captum_pags.metrics.tangent as tangent

    monkeypatch.setattr(tangent, "GEOMETRY_BUDGET", 8 * 2 * 6)  # 8 examples of a (2, 6) basis
    q, _ = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64))
    space = _RecordingSubspace(q.T)
    g, x = torch.randn(50, 6, dtype=torch.float64), torch.randn(50, 6, dtype=torch.float64)
    expected = (g @ q @ q.T).norm(dim=1) / g.norm(dim=1)
    for chunk in (None, 3, 100):
        space.sizes.clear()
        torch.testing.assert_close(
            tangent.tangent_alignment(g, x, space, max_examples_per_batch=chunk), expected, rtol=1e-12, atol=1e-14
        )
        assert sum(space.sizes) == 50 and max(space.sizes) == min(chunk or 8, 8)
    space.sizes.clear()
    torch.testing.assert_close(
        tangent.random_tangent_alignment(space, x), torch.full((50,), (2 / 6) ** 0.5, dtype=torch.float64)
    )
    assert max(space.sizes) == 8


def test_tuple_inputs_and_per_example_forward_args():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(2, 4)

        def forward(self, x1, x2, scale):
            return (self.a(x1) + self.b(x2)) * scale

    model = TwoInputs()
    space = LinearSubspace(torch.randn(2, 5, dtype=torch.float64), input_shape=((3,), (2,)))
    x = (torch.randn(4, 3), torch.randn(4, 2))
    scale = torch.tensor([[1.0], [2.0], [0.5], [3.0]])
    result = manifold_robustness(
        model, x, space, [0.1, 0.5], 3, seed=1, additional_forward_args=(scale,), max_examples_per_batch=5
    )

    def joined(z, s):
        return model(z[:, :3], z[:, 3:], s)

    with torch.no_grad():
        on, off = _reference(joined, torch.cat(x, 1), space.projection_matrix(), [0.1, 0.5], 3, 1, args=(scale,))
    torch.testing.assert_close(result.on.double(), on, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.off.double(), off, rtol=1e-5, atol=1e-5)


def test_bayes_classifier_is_far_more_robust_off_the_manifold():
    data = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=4, shape=(1, 8, 8), off_std=1e-3, seed=1)
    x, _ = data.sample(20, seed=3, dtype=torch.float64)
    result = manifold_robustness(data.bayes_classifier(), x, data.tangent_space, [0.05, 0.2, 1.0], 8, seed=0)
    assert float(result.relative[:, 0].min()) >= 10
    assert float(result.mean().relative[0, 0]) >= 10
    # off-manifold moves change the exact posterior only by rounding; on-manifold ones really move it
    assert float(result.off.max()) < 1e-8 < float(result.on[:, 0].mean())


def test_a_model_that_only_sees_off_manifold_coordinates_is_the_opposite():
    data = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=4, shape=(1, 8, 8), off_std=1e-3, seed=1)
    x, _ = data.sample(10, seed=3, dtype=torch.float64)
    w = torch.randn(3, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    w = w - w @ data.tangent_space.projection_matrix()
    result = manifold_robustness(lambda z: z.flatten(1) @ w.T, x, data.tangent_space, [0.1], 6)
    assert float(result.on.max()) < 1e-10 < float(result.off.min())
    assert float(result.relative.max()) < 1e-6


def test_train_mode_model_is_evaluated_in_eval_mode_and_left_unchanged(small_net):
    space = LinearSubspace(torch.randn(4, 36), input_shape=(1, 6, 6))
    x = torch.randn(5, 1, 6, 6)
    small_net.eval()
    expected = manifold_robustness(small_net, x, space, [0.2, 0.4], 3, seed=2)
    small_net.train()
    small_net.net[1].weight.requires_grad_(False)
    small_net.net[-1].weight.grad = torch.ones_like(small_net.net[-1].weight)
    before = model_snapshot(small_net)
    got = manifold_robustness(small_net, x, space, [0.2, 0.4], 3, seed=2)
    torch.testing.assert_close(got.on, expected.on)
    torch.testing.assert_close(got.off, expected.off)
    assert_model_unchanged(small_net, before)
    with pytest.raises(ValueError, match="`additional_forward_args` to have batch size 5"):
        manifold_robustness(lambda z, s: small_net(z) * s, x, space, [0.2], 2, additional_forward_args=torch.ones(3, 1))
    with pytest.raises(TypeError):
        manifold_robustness(small_net, x, space, [0.2], 2, additional_forward_args=(1.0,))
    assert_model_unchanged(small_net, before)


def test_seeds_make_results_repeatable():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    space = LinearSubspace(torch.randn(4, 36), input_shape=(1, 6, 6))
    x = torch.randn(3, 1, 6, 6)
    a = manifold_robustness(model, x, space, [0.5], 2, seed=11)
    b = manifold_robustness(model, x, space, [0.5], 2, seed=11)
    c = manifold_robustness(model, x, space, [0.5], 2, seed=12)
    torch.testing.assert_close(a.on, b.on)
    assert not torch.allclose(a.on, c.on)
    torch.manual_seed(5)
    d = manifold_robustness(model, x, space, [0.5], 2, seed=None)
    torch.manual_seed(5)
    e = manifold_robustness(model, x, space, [0.5], 2, seed=None)
    torch.testing.assert_close(d.off, e.off)


def test_full_dimensional_tangent_space_gives_nan_off_with_a_warning():
    model = nn.Linear(4, 2)
    space = LinearSubspace(torch.randn(4, 4))
    with pytest.warns(RuntimeWarning, match="no tangent or no orthogonal part"):
        result = manifold_robustness(model, torch.randn(3, 4), space, [0.1], 3)
    assert torch.isnan(result.off).all() and torch.isfinite(result.on).all()
    assert torch.isnan(result.relative).all()


def test_mean_and_as_dict():
    r = ManifoldRobustness(
        torch.tensor([[1.0, 2.0], [3.0, math.nan]]), torch.tensor([[0.5, 1.0], [0.5, 2.0]]), torch.tensor([0.1, 0.2])
    )
    m = r.mean()
    torch.testing.assert_close(m.on, torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(m.relative, torch.tensor([[4.0, 4.0 / 3.0]]))
    d = r.as_dict()
    assert d["epsilons"] == pytest.approx([0.1, 0.2]) and d["relative"][0] == [2.0, 2.0]


def test_bad_input_names_the_argument(small_net):
    space = LinearSubspace(torch.randn(4, 36), input_shape=(1, 6, 6))
    x = torch.randn(2, 1, 6, 6)
    with pytest.raises(ValueError, match="every value of `epsilons` to be a finite number > 0 but got 0"):
        manifold_robustness(small_net, x, space, [0.1, 0.0])
    with pytest.raises(ValueError, match="every value of `epsilons`.*got -0.5"):
        manifold_robustness(small_net, x, space, torch.tensor([-0.5]))
    with pytest.raises(ValueError, match="`epsilons` to hold at least one value"):
        manifold_robustness(small_net, x, space, [])
    with pytest.raises(TypeError, match="`epsilons`"):
        manifold_robustness(small_net, x, space, "0.1")
    with pytest.raises(ValueError, match="`n_samples` to be >= 1 but got 0"):
        manifold_robustness(small_net, x, space, [0.1], n_samples=0)
    with pytest.raises(ValueError, match="`distance` to be one of 'softmax_l1', 'kl' but got 'l2'"):
        manifold_robustness(small_net, x, space, [0.1], distance="l2")
    with pytest.raises(ValueError, match=r"per-example shape \(1, 6, 6\) \(the shape this tangent space was built for"):
        manifold_robustness(small_net, torch.randn(2, 1, 5, 5), space, [0.1])
    with pytest.raises(TypeError, match="`tangent_space`"):
        manifold_robustness(small_net, x, torch.eye(36), [0.1])
    with pytest.raises(ValueError, match="`max_examples_per_batch` to be >= 1"):
        manifold_robustness(small_net, x, space, [0.1], max_examples_per_batch=0)
    with pytest.raises(TypeError, match="`inputs` to be floating point"):
        manifold_robustness(small_net, torch.ones(2, 1, 6, 6, dtype=torch.long), space, [0.1])
    with pytest.raises(ValueError, match=r"`forward_func` to return \(N, C\) class scores"):
        manifold_robustness(lambda z: z.flatten(1).sum(1), x, space, [0.1])
    with pytest.raises(TypeError, match="`forward_func` to be callable"):
        manifold_robustness(3, x, space, [0.1])


# ------------------------------------------------------------------------------------ accumulator
def test_accumulator_equals_per_batch_calls_with_its_seed_sequence():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.Tanh(), nn.Linear(8, 3))
    space = LinearSubspace(torch.randn(4, 36), input_shape=(1, 6, 6))
    x = torch.randn(9, 1, 6, 6)
    acc = RobustnessAccumulator(model, space, [0.1, 0.5], 3, seed=4, max_examples_per_batch=10)
    parts = []
    for b, sl in enumerate((slice(0, 4), slice(4, 9))):
        acc.update(x[sl])
        parts.append(manifold_robustness(model, x[sl], space, [0.1, 0.5], 3, seed=4 + b))
    got = acc.compute()
    on = torch.cat([p.on for p in parts]).mean(0, keepdim=True)
    off = torch.cat([p.off for p in parts]).mean(0, keepdim=True)
    torch.testing.assert_close(got.on, on)
    torch.testing.assert_close(got.off, off)
    torch.testing.assert_close(got.relative, on / off)
    assert got.on.dtype == torch.float32 and acc.epsilons == [0.1, 0.5]
    acc.reset()
    with pytest.raises(RuntimeError, match="at least one call to `update`"):
        acc.compute()
    with pytest.raises(ValueError, match="`n_samples` to be >= 1"):
        RobustnessAccumulator(model, space, [0.1], 0)


def test_accumulator_seeds_batches_and_ranks_apart_and_restarts_after_reset(monkeypatch):
    # rank r of W uses seed + b * W + r for its b-th batch; reset starts the sequence again;
    # the default seed is 0
    import captum_pags.metrics.accumulators as accumulators

    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.Tanh(), nn.Linear(8, 3))
    space = LinearSubspace(torch.randn(4, 36, generator=torch.Generator().manual_seed(0)), input_shape=(1, 6, 6))
    x = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(accumulators, "distributed_world", lambda: (1, 3))
    monkeypatch.setattr(accumulators.dist, "all_reduce", lambda tensor, op=None: None)  # the other ranks add 0
    acc = RobustnessAccumulator(model, space, [0.2], 2)
    for _ in range(2):  # before and after a reset
        acc.reset()
        acc.update(x[:3])
        acc.update(x[3:])
        parts = [
            manifold_robustness(model, x[sl], space, [0.2], 2, seed=s) for sl, s in ((slice(0, 3), 1), (slice(3, 6), 4))
        ]
        torch.testing.assert_close(acc.compute().on, torch.cat([p.on for p in parts]).mean(0, keepdim=True))


def test_running_sums_add_the_ranks_states_and_counts_exactly(monkeypatch):
    # a fake two-rank all-reduce (each rank holds the same state): sums and counts double, in
    # float64 so that counts stay exact past 2**24
    import torch.distributed as dist

    import captum_pags.metrics.accumulators as accumulators
    from captum_pags.metrics.accumulators import RunningSums

    sums = RunningSums()
    sums.update(torch.tensor([[1.0], [3.0]]))
    sums.num_examples = 2**24 + 1
    reduced = []

    def all_reduce(tensor, op=None):
        assert op == dist.ReduceOp.SUM
        reduced.append(tensor.dtype)
        tensor.mul_(2)

    monkeypatch.setattr(accumulators, "distributed_world", lambda: (0, 2))
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    state, count = sums.synced()
    assert count == 2 * (2**24 + 1) and reduced == [torch.float64, torch.float64]
    torch.testing.assert_close(state[:3, 0], torch.tensor([8.0, 20.0, 4.0], dtype=torch.float64))


def test_splitmix64_matches_the_reference_stream():
    # Vigna's splitmix64 from state 0: the first outputs of the reference C implementation
    from captum_pags.metrics.robustness import _splitmix64

    assert _splitmix64(0) == 0xE220A8397B1DCDAF
    assert _splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


def test_epsilons_as_a_number_equal_a_one_element_list_and_other_containers_are_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    space = LinearSubspace(torch.randn(4, 36, generator=torch.Generator().manual_seed(2)), input_shape=(1, 6, 6))
    x = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    one = manifold_robustness(model, x, space, 0.3, 2)
    listed = manifold_robustness(model, x, space, [0.3], 2)
    torch.testing.assert_close(one.on, listed.on, rtol=0, atol=0)
    for bad in ({0.3}, "0.3", None):
        with pytest.raises(TypeError, match="Expected `epsilons` to be a number, a sequence or a 1-d tensor"):
            manifold_robustness(model, x, space, bad, 2)


def test_the_model_is_called_on_at_most_max_examples_per_batch_perturbed_copies():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    space = LinearSubspace(torch.randn(4, 36, generator=torch.Generator().manual_seed(2)), input_shape=(1, 6, 6))
    x = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    sizes = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        chunked = manifold_robustness(model, x, space, [0.1, 0.3], 2, max_examples_per_batch=5)
    finally:
        handle.remove()
    # the clean pass and 3 examples x 2 parts x 2 epsilons x 2 draws = 24 perturbed copies
    assert max(sizes) <= 5 and sum(sizes) == 3 + 24
    whole = manifold_robustness(model, x, space, [0.1, 0.3], 2)
    torch.testing.assert_close(chunked.on, whole.on)


def test_an_unseeded_call_draws_its_seed_from_the_whole_63_bit_range():
    from captum_pags.metrics.robustness import _resolve_seed

    torch.manual_seed(0)
    seeds = [_resolve_seed(None) for _ in range(200)]
    assert len(set(seeds)) == 200 and max(seeds) > 2**40  # collisions within 200 draws: ~1e-15
    assert _resolve_seed(7) == 7


def test_running_sums_count_from_zero_after_a_reset():
    from captum_pags.metrics.accumulators import RunningSums

    sums = RunningSums()
    sums.update(torch.tensor([[1.0], [2.0], [4.0]]))
    sums.reset()
    sums.update(torch.tensor([[1.0], [3.0]]))
    mean, _, _, _, count = sums.mean_std()
    assert count == 2 and sums.num_examples == 2
    torch.testing.assert_close(mean, torch.tensor([2.0], dtype=torch.float64))
