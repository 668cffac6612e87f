"""The exact shapes32 tangent space: batched forward-mode Jacobians against per-image loops.

Three ways to get the 7 Jacobian columns (and the orthonormal basis) at N images:

* naive reverse mode: one ``torch.autograd.functional.jacobian`` per image (3,072 backward
  passes through the renderer each), then a per-image SVD;
* naive finite differences: 14 renders per image (central differences, one factor at a time),
  then a per-image SVD (approximate, but the obvious cheap baseline);
* ``Shapes32Tangent.basis_at``: ``torch.func.jvp`` of the 7 factor directions under ``vmap``,
  chunked, one batched SVD per chunk.

Then the time per image of the three estimated tangent spaces built from the shipped pieces
(``shapes32_tangent_estimators``: decoder, local PCA over the training split, denoiser), which a
shapes32 sweep computes once for its test images, and the peak resident memory of
``Shapes32Tangent.basis`` streamed over 200 and 2,000 test images in batches of 64 (each in a fresh
process), to show that it does not grow with N.

Run: ``python benchmarks/bench_shapes32.py`` (``--threads`` sets torch's CPU threads, default 1).
"""

import argparse
import multiprocessing as mp
import os
import resource
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time, timed

from captum_pags.datasets import SHAPES32_FACTOR_RANGES, Shapes32Tangent, load_shapes32, render_shapes32


def factors_and_labels(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    low, high = SHAPES32_FACTOR_RANGES.unbind(1)
    factors = low + (high - low) * torch.rand(n, 7, generator=gen, dtype=torch.float64)
    return factors, torch.randint(0, 5, (n,), generator=gen)


def naive_reverse(factors, labels):
    out = []
    for f, y in zip(factors, labels):
        jac = torch.autograd.functional.jacobian(lambda g, y=y: render_shapes32(g[None], y[None]).reshape(-1), f)
        out.append(torch.linalg.svd(jac.T, full_matrices=False)[2])
    return torch.stack(out)


def naive_differences(factors, labels, h=1e-5):
    out = []
    eye = torch.eye(7, dtype=factors.dtype)
    for f, y in zip(factors, labels):
        cols = [
            (render_shapes32((f + h * e)[None], y[None]) - render_shapes32((f - h * e)[None], y[None])) / (2 * h)
            for e in eye
        ]
        out.append(torch.linalg.svd(torch.cat(cols).reshape(7, -1), full_matrices=False)[2])
    return torch.stack(out)


def _peak_child(n, queue):
    torch.set_num_threads(1)
    test = load_shapes32("test")
    space = Shapes32Tangent(test.factors, test.labels, test.images)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = 0.0
    for start in range(0, n, 64):
        index = torch.arange(start, min(start + 64, n)) % len(test)  # cycle through the known images
        total += float(space.basis(test.images[index]).square().sum())
    queue.put((before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, total))


def peak_rss_kib(n):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(n, queue))
    proc.start()
    before, after, total = queue.get()
    proc.join()
    return before, after, total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--naive-images", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    factors, labels = factors_and_labels(args.images)
    space = Shapes32Tangent(factors[:1], labels[:1], chunk_size=64)
    t_ours = best_time(lambda: space.basis_at(factors, labels), repeats=3) / args.images
    nf, nl = factors[: args.naive_images], labels[: args.naive_images]
    t_rev, rev = timed(lambda: naive_reverse(nf, nl))
    t_rev /= args.naive_images
    t_fd = best_time(lambda: naive_differences(nf, nl), repeats=3) / args.naive_images
    ours = space.basis_at(nf, nl)
    from captum_pags.manifold import principal_angles

    angle = float(torch.rad2deg(principal_angles(ours, rev)).max())
    print(f"exact tangent basis, ms per image ({args.threads} thread(s)):")
    print(f"  naive reverse mode     {1e3 * t_rev:9.2f}   ({t_rev / t_ours:6.1f}x ours)")
    print(f"  naive finite diffs     {1e3 * t_fd:9.2f}   ({t_fd / t_ours:6.1f}x ours)")
    print(f"  Shapes32Tangent        {1e3 * t_ours:9.2f}")
    print(f"  largest principal angle ours vs reverse mode: {angle:.2e} deg")

    from captum_pags.models import shapes32_tangent_estimators

    test = load_shapes32("test")
    x = test.images[: args.images // 4]
    print(f"estimated tangent spaces, ms per image over {x.shape[0]} test images:")
    for name, est in shapes32_tangent_estimators().items():
        t = best_time(lambda est=est: est.basis(x), repeats=1, warmup=0) / x.shape[0]
        print(f"  {name:10s} {1e3 * t:9.1f}")

    small, large = peak_rss_kib(200), peak_rss_kib(2000)
    growth_small, growth_large = small[1] - small[0], large[1] - large[0]
    print("peak resident memory of basis() streamed in batches of 64 (fresh process each):")
    print(f"  N =  200: {small[1] / 1024:7.1f} MiB (+{growth_small / 1024:.1f} MiB during the loop)")
    print(f"  N = 2000: {large[1] / 1024:7.1f} MiB (+{growth_large / 1024:.1f} MiB during the loop)")
    print(f"  ratio N=2000 / N=200 of the peak: {large[1] / small[1]:.2f}")


if __name__ == "__main__":
    main()
