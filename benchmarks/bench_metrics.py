"""Benchmark of captum_pags.metrics against naive per-image loops, and a sanity run on digits16.

1. ``manifold_robustness`` (one batched pass) against two per-image loops measured in the same run:
   the paper's style (one forward call per perturbed image) and a loop over images that batches
   each image's perturbations. 500 digits16 images (1x16x16), the exact digits16 subspace, a small
   MLP, 4 epsilons, 10 draws. Results are checked equal before timings are reported.
2. Peak memory of ``manifold_robustness`` at N = 500 and N = 5000 images of 3x32x32 with a tangent
   space whose bases are per example (k = 128, materialised per chunk), each N in its own
   process (peak resident-set growth during the call, sampled every millisecond); the goal is a
   ratio <= 1.2x. The whole N x k x D basis that a non-streaming implementation holds is printed
   for comparison.
3. ``score_alignment`` (cosine, Pearson, SSIM) / ``tangent_alignment`` throughput against a
   per-example loop.
4. digits16 sanity check: MLPs trained with growing Gaussian input noise; accuracy, tangent
   alignment, perceptual alignment against a Gaussian-mixture Bayes score fitted to the training
   set, relative robustness and the regime of each.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py``
(``--memory-only`` runs section 2 alone).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _timing import timed

from captum_pags._kernel._autodiff import class_gradients
from captum_pags.datasets import digits16_subspace, load_digits16
from captum_pags.manifold import TangentSpace
from captum_pags.metrics import (
    manifold_robustness,
    perceptual_alignment,
    random_tangent_alignment,
    robustness_regime,
    score_alignment,
    tangent_alignment,
)
from captum_pags.metrics.robustness import DRAW_BLOCK, block_seed
from captum_pags.scores import GaussianMixtureScore

EPSILONS = [0.1, 0.25, 0.5, 1.0]
N_SAMPLES = 10
N_IMAGES = 500


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def train(noise: float, x: torch.Tensor, y: torch.Tensor, steps: int = 400, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        xb = x + noise * torch.randn_like(x) if noise > 0 else x
        loss = nn.functional.cross_entropy(model(xb), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ------------------------------------------------------------------------------------ naive baselines
def draws(n, n_samples, d, seed, dtype):
    """The directions manifold_robustness documents: one generator per block of 64 examples."""
    return torch.cat(
        [
            torch.randn(
                min(DRAW_BLOCK, n - lo),
                n_samples,
                d,
                generator=torch.Generator().manual_seed(block_seed(seed, lo // DRAW_BLOCK)),
                dtype=dtype,
            )
            for lo in range(0, n, DRAW_BLOCK)
        ]
    )


def loop_per_perturbation(model, x, space, epsilons, n_samples, seed):
    """The paper's style: one image and one perturbed copy per forward call."""
    n, d = x.shape[0], x[0].numel()
    z = draws(n, n_samples, d, seed, x.dtype)
    on = torch.zeros(n, len(epsilons))
    off = torch.zeros(n, len(epsilons))
    with torch.no_grad():
        for i in range(n):
            xi = x[i : i + 1]
            p0 = torch.softmax(model(xi), 1)
            for s in range(n_samples):
                t = space.project(xi, z[i, s].reshape(xi.shape))
                o = z[i, s].reshape(xi.shape) - t
                for u, store in ((t, on), (o, off)):
                    u = u / u.norm()
                    for j, eps in enumerate(epsilons):
                        q = torch.softmax(model(xi + eps * u), 1)
                        store[i, j] += float((p0 - q).abs().sum()) / n_samples
    return on, off


def loop_per_image(model, x, space, epsilons, n_samples, seed):
    """One image at a time, its draws x epsilons x {on, off} batched in one forward call."""
    n, d = x.shape[0], x[0].numel()
    z = draws(n, n_samples, d, seed, x.dtype)
    eps = torch.tensor(epsilons)
    on, off = [], []
    with torch.no_grad():
        for i in range(n):
            xi = x[i : i + 1]
            p0 = torch.softmax(model(xi), 1)
            t = space.project(xi, z[i].reshape(1, n_samples, *xi.shape[1:])).reshape(n_samples, d)
            u = torch.stack([t, z[i] - t])
            u = u / u.norm(dim=2, keepdim=True)  # (2, S, D)
            batch = xi.reshape(1, 1, 1, d) + eps.reshape(1, -1, 1, 1) * u.unsqueeze(1)  # (2, E, S, D)
            q = torch.softmax(model(batch.reshape(-1, *xi.shape[1:])), 1)
            change = (q - p0).abs().sum(1).reshape(2, len(epsilons), n_samples).mean(2)
            on.append(change[0])
            off.append(change[1])
    return torch.stack(on), torch.stack(off)


def bench_robustness(model, x, space) -> None:
    print(f"== manifold_robustness: {x.shape[0]} images {tuple(x.shape[1:])}, {len(EPSILONS)} eps, {N_SAMPLES} draws")
    t_batched, res = timed(lambda: manifold_robustness(model, x, space, EPSILONS, N_SAMPLES, seed=0), repeats=5)
    t_chunked, res_c = timed(
        lambda: manifold_robustness(model, x, space, EPSILONS, N_SAMPLES, seed=0, max_examples_per_batch=4096),
        repeats=5,
    )
    t_image, (on_i, off_i) = timed(lambda: loop_per_image(model, x, space, EPSILONS, N_SAMPLES, 0), repeats=3)
    t_naive, (on_n, off_n) = timed(lambda: loop_per_perturbation(model, x, space, EPSILONS, N_SAMPLES, 0), repeats=2)
    for on, off in ((on_i, off_i), (on_n, off_n), (res_c.on, res_c.off)):
        torch.testing.assert_close(res.on, on, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(res.off, off, rtol=1e-4, atol=1e-5)
    n_fwd = x.shape[0] * N_SAMPLES * len(EPSILONS) * 2
    print(f"{n_fwd} perturbed forward inputs; best of several runs; speed-ups of one pass / of chunked")
    print(f"batched, 64 images per pass      {t_batched:8.3f} s")
    print(f"batched, chunks of 4096 inputs   {t_chunked:8.3f} s")
    print(
        f"per-image loop (draws batched)   {t_image:8.3f} s   x{t_image / t_batched:.1f} / x{t_image / t_chunked:.1f}"
    )
    print(
        f"per-perturbation loop (paper)    {t_naive:8.3f} s   x{t_naive / t_batched:.1f} / x{t_naive / t_chunked:.1f}"
    )
    print("results of all four agree to 1e-5")


def bench_alignment(space) -> None:
    n = 20000
    a, s = torch.randn(n, 1, 16, 16), torch.randn(n, 1, 16, 16)
    x = torch.rand(n, 1, 16, 16)
    print(f"== alignment throughput: {n} maps of 1x16x16")
    t_cos, cos = timed(lambda: score_alignment(a, s), repeats=3)
    t_pear, _ = timed(lambda: score_alignment(a, s, "pearson"), repeats=3)
    t_tan, _ = timed(lambda: tangent_alignment(a, x, space), repeats=3)
    t_ssim, _ = timed(lambda: score_alignment(a[:5000], s[:5000], "ssim"), repeats=3)

    def loop():
        return torch.stack([nn.functional.cosine_similarity(a[i].flatten(), s[i].flatten(), dim=0) for i in range(n)])

    t_loop, ref = timed(loop)
    torch.testing.assert_close(cos, ref, rtol=1e-4, atol=1e-5)
    print(f"score_alignment cosine    {n / t_cos:12,.0f} maps/s")
    print(f"score_alignment pearson   {n / t_pear:12,.0f} maps/s")
    print(f"score_alignment ssim      {5000 / t_ssim:12,.0f} maps/s")
    print(f"tangent_alignment         {n / t_tan:12,.0f} maps/s")
    print(f"per-example cosine loop   {n / t_loop:12,.0f} maps/s   (cosine speed-up x{t_loop / t_cos:.0f})")


class PerExampleSubspace(TangentSpace):
    """A k-dimensional tangent space returned as a materialised (n, k, D) basis, like an estimator's."""

    def __init__(self, k: int, shape: tuple[int, ...], seed: int = 0) -> None:
        super().__init__(input_shape=shape)
        d = int(torch.Size(shape).numel())
        q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed)))
        self.rows = q.T.contiguous()
        self.peak_examples = 0

    @property
    def dim(self) -> int:
        return self.rows.shape[0]

    def _basis(self, inputs):
        n = inputs[0].shape[0]
        self.peak_examples = max(self.peak_examples, n)
        return self.rows.to(inputs[0]).repeat(n, 1, 1)  # a real (n, k, D) tensor, as estimators return


MEMORY_K, MEMORY_SHAPE, MEMORY_CHUNK = 128, (3, 32, 32), 256


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory_child(n: int) -> None:
    """Run in a fresh process: peak RSS growth (MiB) above the RSS before one manifold_robustness call.

    A thread samples the resident set every millisecond during the call (the process's lifetime
    peak, ``ru_maxrss``, is dominated by import-time transients).
    """
    import threading

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3072, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    space = PerExampleSubspace(MEMORY_K, MEMORY_SHAPE)
    x = torch.rand(n, *MEMORY_SHAPE)
    manifold_robustness(model, x[:8], space, [0.5], 4, seed=0, max_examples_per_batch=MEMORY_CHUNK)  # warm-up
    base, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            done.wait(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        result = manifold_robustness(model, x, space, [0.5, 1.0], 4, seed=0, max_examples_per_batch=MEMORY_CHUNK)
    finally:
        done.set()
        thread.join()
    assert result.on.shape == (n, 2) and bool(torch.isfinite(result.on).all())
    print(f"{max(peak[0], _rss_mib()) - base:.1f} {space.peak_examples}")


def bench_memory() -> None:
    print(
        f"== manifold_robustness peak memory: {MEMORY_SHAPE} images, per-example bases k={MEMORY_K}, "
        f"max_examples_per_batch={MEMORY_CHUNK}, 2 eps, 4 draws"
    )
    grown = {}
    for n in (500, 5000):
        # large blocks through mmap: freed memory goes back to the OS, so the resident set tracks live
        # memory instead of glibc's fragmentation (which grows with the number of chunks, not their size)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), MALLOC_MMAP_THRESHOLD_="131072")
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True, env=env, check=True
        ).stdout.split()
        grown[n] = float(out[-2])
        whole = n * MEMORY_K * 3072 * 4 / 2**20
        print(
            f"N={n:5d}: peak resident-set growth {grown[n]:8.1f} MiB; largest basis held {out[-1]} examples "
            f"(a whole N x k x D basis would be {whole:,.0f} MiB)"
        )
    print(f"peak memory ratio N=5000 / N=500: {grown[5000] / max(grown[500], 1e-9):.2f}x (goal <= 1.2x)")


def digits_sanity(space) -> None:
    train_set, test_set = load_digits16("train"), load_digits16("test")
    x, y = train_set.images, train_set.labels
    xt, yt = test_set.images, test_set.labels
    # the Bayes score of a Gaussian mixture fitted to the training set (class means and covariances)
    means = torch.stack([x[y == c].flatten(1).mean(0) for c in range(10)]).double()
    covs = torch.stack([torch.cov(x[y == c].flatten(1).T.double()) for c in range(10)])
    gm = GaussianMixtureScore(means, covs + 1e-4 * torch.eye(256, dtype=torch.float64))
    gm.input_shape = torch.Size((1, 16, 16))
    sigma = 0.5
    print(
        f"== digits16 sanity: MLPs trained with Gaussian input noise; Bayes score of a Gaussian mixture, sigma={sigma}"
    )
    print(f"random tangent-alignment baseline sqrt(k/D) = {random_tangent_alignment(space):.3f}")
    print("noise  test-acc  tangent-align  perceptual-align  on@0.25  off@0.25  relative@0.25")
    noises = [0.0, 0.1, 0.3, 0.6, 1.0, 2.0]
    rows = []
    for noise in noises:
        model = train(noise, x, y)
        with torch.no_grad():
            acc = float((model(xt).argmax(1) == yt).float().mean())
        g = class_gradients(model, xt, yt, kind="log_softmax")
        ta = float(tangent_alignment(g, xt, space).mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pa = float(perceptual_alignment(copy.deepcopy(model).double(), xt.double(), gm, sigma, yt).nanmean())
        rob = manifold_robustness(model, xt, space, [0.25], N_SAMPLES, seed=0).mean()
        rows.append((acc, pa, float(rob.relative[0, 0])))
        print(
            f"{noise:5.1f}  {acc:8.3f}  {ta:13.3f}  {pa:16.3f}  {float(rob.on[0, 0]):7.3f}  "
            f"{float(rob.off[0, 0]):8.3f}  {float(rob.relative[0, 0]):13.2f}"
        )
    regimes = robustness_regime(
        relative_robustness=[r[2] for r in rows], accuracy=[r[0] for r in rows], alignment=[r[1] for r in rows]
    )
    print("regimes:", dict(zip(noises, regimes)))


def main() -> None:
    if "--memory-child" in sys.argv:
        _memory_child(int(sys.argv[sys.argv.index("--memory-child") + 1]))
        return
    if "--memory-only" in sys.argv:
        bench_memory()
        return
    torch.manual_seed(0)
    space = digits16_subspace()
    data = load_digits16("all")
    x = data.images[:N_IMAGES]
    model = train(0.0, load_digits16("train").images, load_digits16("train").labels, steps=200)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench_robustness(model, x, space)
    bench_memory()
    bench_alignment(space)
    digits_sanity(space)


if __name__ == "__main__":
    main()
