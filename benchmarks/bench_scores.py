"""Score maps per image: one batched call vs a per-image loop, with peak memory, in one run.

Two models: the shipped digits16 score model (1x16x16), and the ``google/ddpm-cifar10-32``
architecture at 3x32x32 (random init, nothing downloaded): ``UNet2DModel(sample_size=32,
block_out_channels=(128, 256, 256, 256), layers_per_block=2)`` with attention in the second down
block, DDPM with 1000 linear-beta steps. Each variant runs in a fresh subprocess so that its peak
memory (CPU: peak RSS above the process after building the model; CUDA: peak allocated) is its own.

python benchmarks/bench_scores.py [--n 16] [--chunk 4] [--threads 2] [--repeats 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time

VARIANTS = ("batched", "chunked", "loop", "bayes_batched")


def cifar_unet():
    """The ddpm-cifar10-32 architecture (its config.json), random init."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_eps=1e-6,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        num_class_embeds=11,  # 10 classes and a null label, so that the Bayes map can be timed too
    )


def build(model_name: str, device: str):
    from diffusers import DDPMScheduler

    from captum_pags.models import load_digits16_score_model
    from captum_pags.scores import DiffusersScore

    if model_name == "digits16":
        return load_digits16_score_model(device), (1, 16, 16)
    torch.manual_seed(0)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    return DiffusersScore(cifar_unet().to(device).eval(), scheduler, null_class=10), (3, 32, 32)


def worker(args) -> None:
    torch.set_num_threads(args.threads)
    model, shape = build(args.model, args.device)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(args.n, *shape, generator=gen).to(args.device)
    y = (torch.arange(args.n) % 10).to(args.device)
    sigma = 0.25

    def run():
        with torch.no_grad():
            if args.variant == "batched":
                return model.score(x, sigma, y)
            if args.variant == "chunked":
                return model.score(x, sigma, y, batch_size=args.chunk)
            if args.variant == "bayes_batched":
                return model.bayes_score(x, sigma, y)
            return torch.cat([model.score(x[i : i + 1], sigma, y[i : i + 1]) for i in range(args.n)])

    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # after building the model
    out = run()
    if args.device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    seconds = best_time(run, args.repeats, warmup=0)
    reference = torch.cat([model.score(x[i : i + 1], sigma, y[i : i + 1]) for i in range(min(args.n, 2))])
    err = float((out[: reference.shape[0]] - reference).abs().max()) if args.variant != "bayes_batched" else 0.0
    print(
        json.dumps(
            {"seconds": seconds, "peak_bytes": peak, "max_abs_vs_loop": err, "finite": bool(out.isfinite().all())}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="images per measurement")
    parser.add_argument("--chunk", type=int, default=4, help="batch_size of the chunked variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="digits16,cifar10-32")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        worker(args)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(f"score maps, {args.device}, {args.threads} thread(s), N = {args.n} images, sigma 0.25")
    for model_name in args.models.split(","):
        results = {}
        for variant in args.variants.split(","):
            cmd = [sys.executable, __file__, "--model", model_name, "--variant", variant]
            cmd += ["--n", str(args.n), "--chunk", str(args.chunk), "--threads", str(args.threads)]
            cmd += ["--repeats", str(args.repeats), "--device", args.device]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        loop = results["loop"]["seconds"] if "loop" in results else float("nan")
        print(f"  {model_name}:")
        for variant, r in results.items():
            label = {"chunked": f"chunked ({args.chunk}/call)"}.get(variant, variant)
            per_image, speed_up = 1e3 * r["seconds"] / args.n, loop / r["seconds"]
            print(
                f"    {label:18s} {per_image:8.1f} ms/image  speed-up vs loop {speed_up:5.2f}x"
                f"  peak +{r['peak_bytes'] / 2**20:7.1f} MiB  max|batched - loop| {r['max_abs_vs_loop']:.1e}"
                f"  finite {r['finite']}"
            )


if __name__ == "__main__":
    main()
