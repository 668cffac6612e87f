"""Time of one training step with each robust loss, relative to plain cross-entropy.

A small CNN on 1x16x16 inputs, batch 128, CPU. Blocks of consecutive steps of each loss (as in a
training loop) are interleaved round robin, so that load on a shared machine affects all losses
alike; the median and the minimum time per step are reported.

Goals: PGD with k steps <= 1.1 (k + 1) x, gradient norm <= 3x, finite difference <= 2.2x. The row
"cross-entropy, unchecked" is plain ``F.cross_entropy`` without the losses' input checks: its ratio
is the cost of those checks (close to 1).

    python benchmarks/bench_training.py [--repeats 10] [--block 5] [--threads 1] [--activation softplus] [--device cpu]

Cost model: with F a forward pass, B the backward pass of plain training and B_x a backward pass
to the input (no weight gradients, but the first layer's input gradient), PGD-k costs
k (F + B_x) + F + B, the finite-difference penalty 2F + B_x + 2B (both graphs are differentiated
with respect to the weights), double backprop F + B_x + B + (backward of B_x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from captum_pags.datasets import GaussianSubspaceMixture
from captum_pags.models import SmallCNN
from captum_pags.training import (
    AdversarialLoss,
    GradientNormLoss,
    NoiseConsistencyLoss,
    RandomizedSmoothingLoss,
    ScoreAlignmentLoss,
    StandardLoss,
)


class _NaiveGradientNorm:
    """The obvious batch-size independent penalty: one double backprop per example."""

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def __call__(self, model, x, y):
        total = 0.0
        for i in range(x.shape[0]):
            xi = x[i : i + 1].clone().requires_grad_(True)
            ce = F.cross_entropy(model(xi), y[i : i + 1])
            (g,) = torch.autograd.grad(ce, xi, create_graph=True)
            total = total + ce + self.lam * g.pow(2).sum()
        return total / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--activation", choices=["softplus", "relu"], default="softplus")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    data = GaussianSubspaceMixture(num_classes=10, intrinsic_dim=16, shape=(1, 16, 16), basis="smooth", seed=0)
    x, y = data.sample(args.batch, seed=1)
    x, y = x.float().to(device), y.to(device)
    model = SmallCNN(width=16, activation=args.activation).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    losses = {
        "cross-entropy": (StandardLoss(), None),
        "gradient norm (double backprop)": (GradientNormLoss(1.0), 3.0),
        "gradient norm (finite difference)": (GradientNormLoss(1.0, method="finite_difference"), 2.2),
        "noise consistency": (NoiseConsistencyLoss(1.0, sigma=0.1), None),
        "randomized smoothing": (RandomizedSmoothingLoss(sigma=0.1), None),
        "score alignment (exact scores)": (ScoreAlignmentLoss(1.0, data.score_model, sigma=0.1), None),
    }
    losses["gradient norm, per-example loop (naive)"] = (_NaiveGradientNorm(1.0), None)
    # the input, label and logit checks of the losses (and their BatchNorm safeguard) against none at all
    losses["cross-entropy, unchecked (F.cross_entropy)"] = (lambda m, x, y: F.cross_entropy(m(x), y), None)
    for k in (1, 3, 7, 10):
        losses[f"PGD-{k} (L2)"] = (AdversarialLoss(epsilon=1.0, steps=k, norm="l2"), 1.1 * (k + 1))
    losses["PGD-10 (Linf)"] = (AdversarialLoss(epsilon=0.03, steps=10, norm="linf"), 1.1 * 11)

    def step(criterion) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        criterion(model, x, y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in losses}
    for r in range(args.warmup + args.repeats):
        for name, (criterion, _) in losses.items():
            block = [step(criterion) for _ in range(args.block)]
            if r >= args.warmup:
                times[name] += block[1:]  # the first step of a block pays for the switch

    base = statistics.median(times["cross-entropy"])
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"SmallCNN(width=16, activation={args.activation!r}), batch {args.batch}, {args.repeats} x {args.block} steps"
    )
    base_min = min(times["cross-entropy"])
    print(f"{'loss':36s} {'median ms':>9s} {'x CE':>6s} {'min ms':>7s} {'x CE':>6s}  goal")
    for name, (_, goal) in losses.items():
        t, t_min = statistics.median(times[name]), min(times[name])
        ratio = t / base
        verdict = "" if goal is None else (f"<= {goal:.1f} " + ("ok" if ratio <= goal else "MISSED"))
        print(f"{name:36s} {1e3 * t:9.2f} {ratio:6.2f} {1e3 * t_min:7.2f} {t_min / base_min:6.2f}  {verdict}")


if __name__ == "__main__":
    main()
