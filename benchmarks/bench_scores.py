"""Scores per second of the shipped digits16 score model on CPU: one batched call vs a per-image loop.

python benchmarks/bench_scores.py [--batch 256] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time

from captum_pags.datasets import load_digits16
from captum_pags.models import load_digits16_score_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=0.25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_digits16_score_model()
    data = load_digits16("test")
    idx = torch.arange(args.batch) % len(data)
    x, y = data.images[idx], data.labels[idx]
    n = args.batch

    def batched_conditional():
        return model.score(x, args.sigma, y)

    def batched_unconditional():
        return model.score(x, args.sigma)

    def naive_loop():
        return torch.cat([model.score(x[i : i + 1], args.sigma, y[i : i + 1]) for i in range(n)])

    torch.testing.assert_close(batched_conditional(), naive_loop(), atol=1e-4, rtol=1e-4)
    t_batch = best_time(batched_conditional, args.repeats)
    t_uncond = best_time(batched_unconditional, args.repeats)
    t_loop = best_time(naive_loop, max(1, args.repeats // 2))
    print(f"shipped digits16 score model, CPU, {args.threads} thread(s), batch {n}, sigma {args.sigma}")
    print(f"  batched conditional   : {n / t_batch:9.0f} scores/s  ({t_batch * 1e3:7.1f} ms per batch)")
    print(f"  batched unconditional : {n / t_uncond:9.0f} scores/s  ({t_uncond * 1e3:7.1f} ms per batch)")
    print(f"  naive per-image loop  : {n / t_loop:9.0f} scores/s  ({t_loop * 1e3:7.1f} ms for {n} images)")
    print(f"  speed-up batched / loop: {t_loop / t_batch:.1f}x")


if __name__ == "__main__":
    main()
