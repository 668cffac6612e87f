"""ManifoldGradient (linear subspace) against Captum's Saliency on the same model and batch.

Prints the time ratio ManifoldGradient / Saliency measured in one run; the goal is <= 1.3x.
Run: python benchmarks/bench_manifold_gradient.py
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(__file__))

import torch
from _timing import median_times
from captum.attr import Saliency
from torch import nn

from captum_pags import LinearSubspace, ManifoldGradient, digits16_subspace, load_digits16


def small_cnn(channels: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, classes),
    ).eval()


def mlp(d: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, classes)
    ).eval()


def case(name: str, model: nn.Module, space: LinearSubspace, x: torch.Tensor, y: torch.Tensor) -> None:
    sal, mg = Saliency(model), ManifoldGradient(model, space)
    times = median_times(
        {
            "saliency": lambda: sal.attribute(x, target=y, abs=False),
            "manifold_on": lambda: mg.attribute(x, target=y, component="on"),
            "manifold_off": lambda: mg.attribute(x, target=y, component="off"),
        }
    )
    base = times["saliency"]
    print(
        f"{name:<44} saliency {base * 1e3:8.2f} ms | on {times['manifold_on'] / base:5.2f}x "
        f"| off {times['manifold_off'] / base:5.2f}x"
    )


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    data = load_digits16("test")
    sub = digits16_subspace()
    for n in (128, 360):
        x, y = data.images[:n], data.labels[:n]
        case(f"digits16 MLP, batch {n}, k=64", mlp(256), sub, x, y)
        case(f"digits16 CNN, batch {n}, k=64", small_cnn(1), sub, x, y)
    x32 = torch.rand(128, 3, 32, 32)
    y32 = torch.randint(0, 10, (128,))
    space32 = LinearSubspace(torch.randn(128, 3, 32, 32))
    case("3x32x32 CNN, batch 128, random k=128", small_cnn(3), space32, x32, y32)


if __name__ == "__main__":
    main()
