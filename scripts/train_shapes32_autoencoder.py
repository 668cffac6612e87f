"""Train the small shapes32 autoencoder shipped with captum_pags (seeded; minutes on one CPU thread).

Usage::

    python scripts/train_shapes32_autoencoder.py            # writes the shipped weights
    python scripts/train_shapes32_autoencoder.py --out DIR  # somewhere else

Trains on the 5000 images of the training split (as a user would with their own data) with a
little Gaussian input noise, Adam and a one-cycle schedule. Writes ``model.safetensors`` and
``config.json`` (architecture, training settings, test reconstruction error) atomically.
"""

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from captum_pags.datasets import load_shapes32
from captum_pags.models._weights import save_weights
from captum_pags.models.shapes32 import SHAPES32_AUTOENCODER_DIR, Shapes32Autoencoder


def mse(model, images):
    with torch.no_grad():
        return float(torch.cat([(model(b) - b).square().flatten(1).mean(1) for b in images.split(500)]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=SHAPES32_AUTOENCODER_DIR)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--channels", type=int, nargs=3, default=(16, 32, 32))
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--noise", type=float, default=0.02, help="std of Gaussian input noise (denoising AE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, test = load_shapes32("train").images, load_shapes32("test").images
    model = Shapes32Autoencoder(args.latent_dim, args.channels)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), args.batch_size):
            batch = train[order[i : i + args.batch_size]]
            noisy = batch + args.noise * torch.randn(batch.shape, generator=gen)
            loss = F.mse_loss(model(noisy), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 10 == 0 or epoch == args.epochs - 1:
            model.eval()
            print(
                f"epoch {epoch:4d}  train mse {mse(model, train):.5f}  test mse {mse(model, test):.5f}  "
                f"{time.perf_counter() - start:6.1f}s",
                flush=True,
            )
    model.eval()
    baseline = float(F.mse_loss(train.mean(0, keepdim=True).expand_as(test), test))
    config = {
        "model": "Shapes32Autoencoder",
        "latent_dim": args.latent_dim,
        "channels": list(args.channels),
        "input_shape": [3, 32, 32],
        "training": {
            "script": "scripts/train_shapes32_autoencoder.py",
            "dataset": "shapes32 train split",
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "schedule": "one-cycle",
            "input_noise_std": args.noise,
            "seed": args.seed,
            "torch": torch.__version__,
            "seconds": round(time.perf_counter() - start, 1),
        },
        "metrics": {
            "train_mse": mse(model, train),
            "test_mse": mse(model, test),
            "test_mse_mean_image": baseline,
        },
    }
    save_weights(args.out, model.state_dict(), config)
    print(f"saved to {args.out.name}/: test mse {config['metrics']['test_mse']:.5f} (mean image {baseline:.5f})")


if __name__ == "__main__":
    main()
