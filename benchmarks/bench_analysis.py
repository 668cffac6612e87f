"""The analysis of one model at CIFAR size: peak memory against the number of images, time per image.

1. **Memory.** ``analyze_model`` streams over an image folder of N PNGs (3x32x32), scoring each
   batch with a small class-conditional diffusers UNet (attention included) and measuring a small
   CNN on a fixed 64-dimensional PCA tangent space. Each run is a fresh process; its peak resident
   memory during the analysis (Linux ``VmHWM`` after resetting it once the models are loaded) is
   compared at N = ``--n-small`` and ``--n-large``, against the naive path that loads all N images
   into one tensor, computes all score maps and then measures (``prepare_evaluation`` +
   ``measure_model``). Goal: streaming peak(N large) / peak(N small) <= 1.2.
2. **Time per image** of each tangent spec and of the score maps at 3x32x32, with the
   ``google/ddpm-cifar10-32`` UNet architecture (random init; the cost does not depend on the
   weights): ``pca:64``, ``local-pca:16`` (2,000 references), ``decoder:`` (a small
   ``AutoencoderKL``), ``denoiser:8`` (the UNet's Jacobian) and one score map.

Run: ``python benchmarks/bench_analysis.py`` (``--threads`` sets torch's CPU threads, default 1;
``--device cuda`` runs part 2 on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found")


def _cnn():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Softplus(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.Softplus(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(512, 10),
    )


def _small_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
        num_class_embeds=11,
    )


def _ddpm_cifar10_unet():
    """The architecture of ``google/ddpm-cifar10-32`` (its ``unet/config.json``), randomly initialised."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None,
        dropout=0.1,
    )


def _write_folder(root: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _memory_run(folder: str, n: int, mode: str, batch_size: int) -> dict:
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch
    from diffusers import DDPMScheduler

    from captum_pags.analysis import analyze_model, load_user_data, measure_model, prepare_evaluation
    from captum_pags.analysis.components import ImageFolderData, ScoreModels
    from captum_pags.manifold import LinearSubspace
    from captum_pags.scores import DiffusersScore

    torch.manual_seed(0)
    model = _cnn().eval()
    score = DiffusersScore(_small_unet().eval(), DDPMScheduler(), null_class=10)
    data = ImageFolderData(folder)
    reference = torch.cat([x for x, _ in data.batches(256, 256)])
    tangent = LinearSubspace.from_data(reference, 64)
    del reference

    def run(count: int) -> None:
        if mode == "streaming":
            with tempfile.TemporaryDirectory() as out:
                analyze_model(
                    model,
                    data=data,
                    score_model=ScoreModels(score),
                    tangent=tangent,
                    max_examples=count,
                    batch_size=batch_size,
                    epsilons=(1.0,),
                    n_samples=2,
                    out=out,
                    quiet=True,
                    alignment_metrics=("cosine",),
                )
        else:
            x, y = load_user_data(folder, max_examples=count)
            ev = prepare_evaluation(x, y, tangent, score, 0.3, (1.0,), 2, batch_size=batch_size)
            measure_model(model, ev)

    run(batch_size)  # imports, caches and allocator pools are not what is measured
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current resident size
    base = _status("VmRSS")
    start = time.perf_counter()
    run(n)
    seconds = time.perf_counter() - start
    return {"mode": mode, "n": n, "peak_mb": (_status("VmHWM") - base) / 2**20, "seconds": seconds}


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        t0 = time.perf_counter()
        _write_folder(folder, args.n_large)
        print(f"wrote {args.n_large} PNGs in {time.perf_counter() - t0:.1f} s")
        results = {}
        for mode in ("streaming", "naive"):
            for n in (args.n_small, args.n_large):
                cmd = [sys.executable, __file__, "--_memory-run", str(folder), str(n), mode, str(args.batch_size)]
                # large blocks come from mmap and go back on free, so resident memory follows live memory
                env = {
                    **os.environ,
                    "OMP_NUM_THREADS": str(args.threads),
                    "MALLOC_MMAP_THRESHOLD_": "131072",
                    "MALLOC_TRIM_THRESHOLD_": "131072",
                }
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:])
                    raise SystemExit(f"{mode} N={n} failed")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results[(mode, n)] = r
                print(
                    f"{mode:9s} N={n:5d}: peak +{r['peak_mb']:7.1f} MiB over the loaded models, "
                    f"{r['seconds']:6.1f} s ({1e3 * r['seconds'] / n:.1f} ms/image)"
                )
        for mode in ("streaming", "naive"):
            small, large = results[(mode, args.n_small)], results[(mode, args.n_large)]
            print(
                f"{mode}: peak(N={args.n_large}) / peak(N={args.n_small}) = {large['peak_mb'] / small['peak_mb']:.2f}"
            )
        ratio = results[("naive", args.n_large)]["peak_mb"] / results[("streaming", args.n_large)]["peak_mb"]
        print(f"N={args.n_large}: naive peak / streaming peak = {ratio:.1f}x")


def per_image(args: argparse.Namespace) -> None:
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler

    sys.path.insert(0, os.path.dirname(__file__))
    from _timing import best_time

    from captum_pags.manifold import DecoderTangent, DenoiserTangent, LinearSubspace, LocalPCATangent
    from captum_pags.scores import DiffusersScore

    torch.manual_seed(0)
    dev = torch.device(args.device)
    unet = _ddpm_cifar10_unet().to(dev).eval()
    print(f"ddpm-cifar10-32 architecture: {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters")
    score = DiffusersScore(unet, DDPMScheduler())
    x = torch.rand(args.images, 3, 32, 32, device=dev)
    reference = torch.rand(2000, 3, 32, 32, device=dev)
    vae = (
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=16,
            layers_per_block=1,
            sample_size=32,
        )
        .to(dev)
        .eval()
    )
    spaces = {
        "pca:64": LinearSubspace.from_data(reference, 64),
        "local-pca:16": LocalPCATangent(reference, 16, 32),
        "decoder (AutoencoderKL, k=4x8x8)": DecoderTangent(
            lambda z: vae.decode(z).sample, lambda v: vae.encode(v).latent_dist.mean, chunk_size=args.images
        ),
        "denoiser:8": DenoiserTangent(score, 0.3, 8, oversampling=8, iterations=1, chunk_size=args.images),
    }
    from torch.nn.attention import SDPBackend, sdpa_kernel

    print(f"time per image at 3x32x32 on {dev} ({args.images} images per call, {args.threads} CPU thread(s)):")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if "score" not in skip:
        with torch.no_grad():
            t = best_time(lambda: score.score(x, 0.3), repeats=2, warmup=1)
        print(f"  score map (ddpm-cifar10-32)           {1e3 * t / args.images:9.1f} ms")
    for name, space in spaces.items():
        if name.split(":")[0].split(" ")[0] in skip:
            continue
        with sdpa_kernel([SDPBackend.MATH]):
            t = best_time(lambda space=space: space.basis(x), repeats=1, warmup=0 if "denoiser" in name else 1)
        print(f"  tangent {name:31s}{1e3 * t / args.images:9.1f} ms")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_memory-run":
        folder, n, mode, batch = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(_memory_run(folder, n, mode, batch)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-small", type=int, default=500)
    parser.add_argument("--n-large", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=4, help="images per call in the per-image timings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip", default="", help="comma-separated parts of the timing to leave out, e.g. pca,score")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if not args.skip_memory:
        memory(args)
    if not args.skip_timing:
        per_image(args)


if __name__ == "__main__":
    main()
