"""A training run in its own process, for the tests of `fit` that kill a run or start several ranks.

Usage: python tests/_training_worker.py --out W.safetensors [--checkpoint-dir D] [--resume]
[--block-at K --marker M] [--world-size 2 --rank R --store S] [--batch-size B] [--loss noise|gradnorm]

`--block-at K` makes the K-th loss call of this process write `M` and sleep, so that the test can
kill the process at a known step with a signal.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

from captum_pags.datasets import load_digits16
from captum_pags.models import MLP
from captum_pags.training import GradientNormLoss, NoiseConsistencyLoss, fit

NUM_EXAMPLES = 160  # 10 steps of 16 per epoch


def make_model() -> MLP:
    torch.manual_seed(1234)
    return MLP(hidden=(32,), num_classes=10)


def make_dataset() -> TensorDataset:
    digits = load_digits16("train")
    return TensorDataset(digits.images[:NUM_EXAMPLES], digits.labels[:NUM_EXAMPLES])


class Blocking:
    """Calls the loss; on call number `block_at` writes a marker file and waits to be killed."""

    def __init__(self, loss, block_at: int | None, marker: Path | None) -> None:
        self.loss, self.block_at, self.marker, self.calls = loss, block_at, marker, 0

    def __call__(self, model, inputs, targets):
        self.calls += 1
        if self.calls == self.block_at:
            self.marker.write_text(str(self.calls))
            time.sleep(600)
        return self.loss(model, inputs, targets)


def train(
    out: Path,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 4,
    resume: bool = False,
    block_at: int | None = None,
    marker: Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 16,
    epochs: int = 2,
    loss_name: str = "noise",
) -> None:
    """Train the test model on 160 digits16 images and save its weights (rank 0) to `out`."""
    model = make_model()
    loader = DataLoader(make_dataset(), batch_size=batch_size, shuffle=True)
    if loss_name == "noise":
        loss = NoiseConsistencyLoss(lam=0.5, sigma=0.3)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    else:
        loss = GradientNormLoss(lam=0.5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    fit(
        model,
        Blocking(loss, block_at, marker),
        loader,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every if checkpoint_dir else None,
        resume=resume,
        seed=7,
        quiet=True,
    )
    if rank == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--block-at", type=int)
    parser.add_argument("--marker", type=Path)
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--loss", choices=["noise", "gradnorm"], default="noise")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.world_size > 1:
        dist.init_process_group("gloo", init_method=f"file://{args.store}", rank=args.rank, world_size=args.world_size)
    train(
        args.out,
        args.checkpoint_dir,
        args.checkpoint_every,
        args.resume,
        args.block_at,
        args.marker,
        args.rank,
        args.world_size,
        args.batch_size,
        args.epochs,
        args.loss,
    )
    if args.world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
