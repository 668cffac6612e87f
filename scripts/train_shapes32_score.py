"""Train the shipped class-conditional score model of shapes32 (reproducible, one CPU thread, minutes).

    python scripts/train_shapes32_score.py --out captum_pags/models/weights/shapes32_score

Run from the repository root with the package importable (installed, or ``PYTHONPATH=.``).
About 2000 steps take about 8 CPU-minutes on one thread (47 min of wall time on a busy shared machine).

Recipe: the UNet of ``captum_pags.models.shapes32_score_unet`` on images mapped to 2x - 1, the
default ``DDPMScheduler`` (1000 linear-beta steps, epsilon prediction); half of each batch draws
its timestep uniformly, the other half uniformly among the timesteps whose noise level (in [0, 1]
image units) lies in [0.05, 1], where the analysis evaluates scores. Labels are replaced by the
null label 5 with probability 0.15; AdamW (lr 1e-3), batch 32, gradient clipping at 1, an
exponential moving average of the weights (decay 0.999 with the usual warm-up) which is what gets
saved. Fresh images are rendered for every batch (the renderer is cheap and the manifold is known),
so the model sees the data distribution rather than the 5000 training images; the test split is
only used for the final report. Bit-for-bit reproducible for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
import torch.nn.functional as F

from captum_pags.datasets import SHAPES32_CLASSES, SHAPES32_FACTOR_RANGES, load_shapes32, render_shapes32
from captum_pags.models.shapes32 import SHAPES32_NULL_CLASS, shapes32_score_unet
from captum_pags.scores import DiffusersScore


def tweedie_ratio(model: DiffusersScore, images: torch.Tensor, labels: torch.Tensor | None, sigma: float) -> float:
    """MSE of the noisy images over MSE of their one-step Tweedie denoise (higher is better)."""
    gen = torch.Generator().manual_seed(1234)
    noisy = images + sigma * torch.randn(images.shape, generator=gen)
    with torch.no_grad():
        denoised = torch.cat(
            [
                model.denoise(n, sigma, None if y is None else y)
                for n, y in zip(noisy.split(100), labels.split(100) if labels is not None else [None] * 100)
            ]
        )
    return float(F.mse_loss(noisy, images) / F.mse_loss(denoised, images))


def sample_batch(batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = SHAPES32_FACTOR_RANGES.unbind(1)
    factors = low + (high - low) * torch.rand(batch_size, len(low), generator=gen, dtype=torch.float64)
    labels = torch.randint(0, len(SHAPES32_CLASSES), (batch_size,), generator=gen)
    return render_shapes32(factors, labels).float(), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="captum_pags/models/weights/shapes32_score")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--label-dropout", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from diffusers import DDPMScheduler

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    scheduler = DDPMScheduler()
    abar = scheduler.alphas_cumprod.float()
    num_t = scheduler.config.num_train_timesteps
    sigma_data = ((1 - abar) / abar).sqrt() / 2  # noise std in [0, 1] image units
    band = torch.nonzero((sigma_data >= 0.05) & (sigma_data <= 1.0)).flatten()

    unet = shapes32_score_unet()
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr)
    unet.train()
    start = time.perf_counter()
    running = 0.0
    half = args.batch_size // 2
    for step in range(1, args.steps + 1):
        images, y = sample_batch(args.batch_size, gen)
        x0 = images * 2 - 1
        drop = torch.rand(args.batch_size, generator=gen) < args.label_dropout
        y[drop] = SHAPES32_NULL_CLASS
        t_uniform = torch.randint(0, num_t, (half,), generator=gen)
        t_band = band[torch.randint(0, len(band), (args.batch_size - half,), generator=gen)]
        t = torch.cat([t_uniform, t_band])
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(unet(x_t, t, class_labels=y).sample, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), unet.parameters()):
                p_ema.lerp_(p, 1 - decay)
        running = loss.item() if step == 1 else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {running:.4f}  {time.perf_counter() - start:6.1f}s", flush=True)

    model = DiffusersScore(ema.eval(), scheduler, data_range=(0.0, 1.0), null_class=SHAPES32_NULL_CLASS)
    model.save_pretrained(args.out)
    print(f"saved to {args.out} after {time.perf_counter() - start:.1f}s")

    test = load_shapes32("test")
    for sigma in (0.1, 0.25, 0.5):
        cond = tweedie_ratio(model, test.images, test.labels, sigma)
        uncond = tweedie_ratio(model, test.images, None, sigma)
        print(f"sigma {sigma}: Tweedie MSE reduction conditional {cond:.2f}x, unconditional {uncond:.2f}x")
    if not math.isfinite(running):
        raise SystemExit("training diverged")


if __name__ == "__main__":
    main()
