"""Tangent-space estimators on CPU: DecoderTangent against the per-pixel backward loop, and
LocalPCATangent throughput.

One small conv autoencoder (latent k = 128, 3x32x32 output), random weights (the cost does not
depend on them). Three ways to get the decoder tangent space of a batch of images:

* naive: one backward pass per output pixel (3,072 per image) followed by a per-image
  ``scipy.linalg.orth``, as in the paper's code, timed on ``--naive-images`` images
  (all 3,072 pixels each, or ``--naive-pixels`` of them, extrapolated to 3,072);
* DecoderTangent: encoder + k forward-mode products under vmap + batched SVD;
* the limit: k separate batched forward-mode passes (``torch.func.jvp``, one per latent
  direction) over the same batch, without encoding or orthonormalisation.

Then LocalPCATangent for 1,000 queries against 10,000 references (D = 3,072), and a naive
per-query loop (full distance vector, sort, SVD) on a subset, extrapolated.

``--kinds`` then times every tangent kind per image at 3x32x32 with the same k = 16: pca
(randomized ``LinearSubspace.from_data``), local-pca, decoder, and denoiser on a random-init UNet
with the ``google/ddpm-cifar10-32`` layout (2 layers per block, attention in the second down
block) at reduced width (``--unet-width``, default 32 instead of 128: the full model takes minutes
per image on one CPU core; ``--unet-width 128`` is the real one). For DenoiserTangent it prints the
Jacobian-vector products per image of the old path (``method="general"``, q = 2, all probes at
once) and the new default (``"symmetric"`` block Krylov, q = 2), their principal angles to the
exact tangent space of a 16-dimensional Gaussian subspace mixture at 3x32x32, and the peak memory
(max RSS of a fresh process) of both at their defaults.

Run: ``python benchmarks/bench_tangents.py`` (``--threads`` sets torch's CPU threads, default 1).
"""

import argparse
import os
import sys
import time

import scipy.linalg
import torch
from torch import nn
from torch.func import jvp

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_time

from captum_pags.datasets import GaussianSubspaceMixture
from captum_pags.manifold import DecoderTangent, DenoiserTangent, LinearSubspace, LocalPCATangent, principal_angles

K = 128
SHAPE = (3, 32, 32)
D = 3 * 32 * 32


def make_autoencoder():
    encoder = nn.Sequential(
        nn.Conv2d(3, 32, 4, 2, 1), nn.SiLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.SiLU(),
        nn.Conv2d(64, 128, 4, 2, 1), nn.SiLU(), nn.Flatten(), nn.Linear(128 * 16, K),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(K, 128 * 16), nn.SiLU(), nn.Unflatten(1, (128, 4, 4)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.SiLU(),
        nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Sigmoid(),
    )  # fmt: skip
    return encoder.eval(), decoder.eval()


def naive_decoder_tangent(encoder, decoder, x, pixels):
    """Per-pixel backward passes and a per-image SciPy orth; returns the seconds per image."""
    start = time.perf_counter()
    for xi in x:
        z = encoder(xi.unsqueeze(0)).detach().requires_grad_(True)
        out = decoder(z).reshape(-1)
        rows = [torch.autograd.grad(out[p], z, retain_graph=True)[0][0] for p in range(pixels)]
        jac = torch.stack(rows)  # (pixels, k)
        if pixels == D:
            scipy.linalg.orth(jac.numpy())
    per_image = (time.perf_counter() - start) / len(x)
    return per_image * D / pixels


def k_forward_mode_passes(decoder, z):
    eye = torch.eye(K).unsqueeze(1).expand(K, len(z), K)
    with torch.no_grad():
        for i in range(K):
            jvp(decoder, (z,), (eye[i],))


def bench_decoder(args):
    torch.manual_seed(0)
    encoder, decoder = make_autoencoder()
    x = torch.rand(args.batch, *SHAPE)
    naive = naive_decoder_tangent(encoder, decoder, x[: args.naive_images], args.naive_pixels)
    space = (
        DecoderTangent(decoder, encoder)
        if args.chunk is None
        else DecoderTangent(decoder, encoder, chunk_size=args.chunk)
    )
    space.basis(x[:2])  # warm-up
    ours = best_time(lambda: space.basis(x), args.repeats) / len(x)
    with torch.no_grad():
        z = encoder(x)
    limit = best_time(lambda: k_forward_mode_passes(decoder, z), args.repeats) / len(x)
    with torch.no_grad():
        forward = best_time(lambda: decoder(z), args.repeats) / len(x)
    how = "all 3072 pixels" if args.naive_pixels == D else f"{args.naive_pixels} pixels, extrapolated to 3072"
    print(
        f"decoder tangent, k = {K}, output 3x32x32, batch {args.batch} (chunk_size {space.chunk_size}), "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(f"  naive per-pixel loop + scipy orth ({args.naive_images} image(s), {how}): {naive * 1e3:9.1f} ms/image")
    print(f"  DecoderTangent (encoder + vmap'd jvp + orthonormalise): {ours * 1e3:6.2f} ms/image")
    print(f"  k batched forward-mode passes (the limit):          {limit * 1e3:9.2f} ms/image")
    print(f"  one decoder forward pass (for scale):               {forward * 1e3:9.3f} ms/image")
    print(f"  speed-up over naive: {naive / ours:8.0f}x   (goal >= 100x)")
    print(f"  DecoderTangent / limit: {ours / limit:5.2f}   (goal <= 2)")


def bench_local_pca(args):
    data = GaussianSubspaceMixture(num_classes=10, intrinsic_dim=8, shape=SHAPE, basis="smooth", seed=0)
    reference, _ = data.sample(args.references, seed=1)
    queries, _ = data.sample(args.queries, seed=2)
    space = LocalPCATangent(reference, dim=8, n_neighbors=32)
    space.basis(queries[:4])  # warm-up, moves the reference into the cache
    ours = best_time(lambda: space.basis(queries), max(1, args.repeats - 1))
    ref = reference.reshape(len(reference), -1)
    sub = queries[: args.naive_queries].reshape(args.naive_queries, -1)
    start = time.perf_counter()
    for q in sub:
        nearest = ((ref - q) ** 2).sum(1).argsort()[:32]
        hood = ref[nearest]
        torch.linalg.svd(hood - hood.mean(0), full_matrices=False)
    naive = (time.perf_counter() - start) / len(sub) * len(queries)
    print(f"LocalPCATangent, {args.queries} queries vs {args.references} references, D = {D}, dim 8, 32 neighbours")
    print(f"  LocalPCATangent: {ours:7.3f} s  ({len(queries) / ours:8.0f} queries/s)")
    print(f"  per-query loop ({args.naive_queries} queries, extrapolated): {naive:7.3f} s  -> {naive / ours:5.1f}x")


def ddpm_cifar_unet(width):
    """The google/ddpm-cifar10-32 UNet layout (random init), channel widths scaled by width / 128."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(width * f for f in (1, 2, 2, 2)),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=min(32, width),
        dropout=0.1,
    ).eval()


OLD_DENOISER = {"method": "general", "iterations": 2, "chunk_size": 8, "probe_chunk_size": None}
NEW_DENOISER = {}  # the defaults: symmetric block Krylov, q = 2, 4 images x 8 probes per pass


def _denoiser_space(width, settings):
    from diffusers import DDPMScheduler

    from captum_pags.scores import DiffusersScore

    score = DiffusersScore(ddpm_cifar_unet(width), DDPMScheduler())
    return DenoiserTangent(score, sigma=0.05, dim=16, **settings)


def _peak_rss_child(width, settings, images, queue):
    import resource

    torch.set_num_threads(1)
    x = torch.rand(images, *SHAPE)
    if settings is None:  # the baseline: the model and one forward pass of the score
        space = _denoiser_space(width, {})
        with torch.no_grad():
            space.denoiser.score(x, 0.05)
    else:
        space = _denoiser_space(width, settings)
        space.basis(x)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # MiB (Linux reports KiB)


def peak_rss(width, settings, images):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_rss_child, args=(width, settings, images, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def bench_kinds(args):
    k = 16
    torch.manual_seed(0)
    data = GaussianSubspaceMixture(num_classes=10, intrinsic_dim=k, shape=SHAPE, basis="smooth", seed=0)
    reference, _ = data.sample(2000, seed=1)
    x, _ = data.sample(args.kind_images, seed=2)
    print(f"time per image of each tangent kind, 3x32x32, k = {k}, {torch.get_num_threads()} thread(s)")
    fit = best_time(lambda: LinearSubspace.from_data(reference, k), 1)
    full = best_time(lambda: LinearSubspace.from_data(reference, k, method="full"), 1)
    pca = LinearSubspace.from_data(reference, k)
    v = torch.randn_like(x)
    per = best_time(lambda: pca.project(x, v), args.repeats) / len(x)
    print(
        f"  pca:k        fit {fit:6.2f} s on 2000 images (full SVD {full:6.2f} s, {full / fit:4.1f}x); "
        f"projection {per * 1e3:8.3f} ms/image"
    )
    local = LocalPCATangent(reference, dim=k, n_neighbors=64)
    per = best_time(lambda: local.basis(x), args.repeats) / len(x)
    print(f"  local-pca:k  {per * 1e3:8.2f} ms/image (2000 references, 64 neighbours)")
    encoder = nn.Sequential(
        nn.Conv2d(3, 32, 4, 2, 1), nn.SiLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.SiLU(), nn.Flatten(), nn.Linear(64 * 64, k)
    ).eval()
    decoder = nn.Sequential(
        nn.Linear(k, 64 * 64), nn.SiLU(), nn.Unflatten(1, (64, 8, 8)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.SiLU(),
        nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Sigmoid(),
    ).eval()  # fmt: skip
    dec = DecoderTangent(decoder, encoder)
    per = best_time(lambda: dec.basis(x), args.repeats) / len(x)
    print(f"  decoder      {per * 1e3:8.2f} ms/image (conv autoencoder)")
    xs = x[: args.denoiser_images]
    for name, settings in (("old: general q=2", OLD_DENOISER), ("new: symmetric q=2", NEW_DENOISER)):
        space = _denoiser_space(args.unet_width, settings)
        per = best_time(lambda space=space: space.basis(xs), 1, warmup=0) / len(xs)
        products = space.last_products_per_example
        print(
            f"  denoiser:k   {name:20s} {per:7.2f} s/image, {products} Jacobian products/image "
            f"(UNet width {args.unet_width})"
        )
    exact = data.basis.double()
    for name, settings in (("old: general q=2", OLD_DENOISER), ("new: symmetric q=2", NEW_DENOISER)):
        space = DenoiserTangent(data.score_model, sigma=0.05, dim=k, **settings)
        angles = torch.rad2deg(principal_angles(space.basis(x[:8].double()).double(), exact)[:, -1])
        print(
            f"  exact 16-d mixture, {name:20s}: largest principal angle {float(angles.max()):.2e} deg, "
            f"{space.last_products_per_example} products/image"
        )
    bench_memory(args)


def bench_memory(args):
    if not args.memory_images:
        return
    base = peak_rss(args.unet_width, None, args.memory_images)
    old = peak_rss(args.unet_width, OLD_DENOISER, args.memory_images)
    new = peak_rss(args.unet_width, NEW_DENOISER, args.memory_images)
    print(
        f"  denoiser peak RSS for {args.memory_images} images: baseline (model + one score pass) {base:6.0f} MiB; "
        f"old {old:6.0f} MiB (+{old - base:.0f}), new {new:6.0f} MiB (+{new - base:.0f}): "
        f"{(old - base) / max(new - base, 1.0):4.1f}x less above the baseline"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=None, help="DecoderTangent chunk_size (default: its default)")
    parser.add_argument("--naive-images", type=int, default=1)
    parser.add_argument("--naive-pixels", type=int, default=D)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--references", type=int, default=10000)
    parser.add_argument("--naive-queries", type=int, default=100)
    parser.add_argument("--kinds", action="store_true", help="only the per-kind section at 3x32x32")
    parser.add_argument("--kind-images", type=int, default=16)
    parser.add_argument("--denoiser-images", type=int, default=2)
    parser.add_argument("--memory-images", type=int, default=8, help="0 skips the peak-memory comparison")
    parser.add_argument("--unet-width", type=int, default=32, help="128 is the real ddpm-cifar10-32 width")
    parser.add_argument("--memory-only", action="store_true", help="only the DenoiserTangent peak-memory comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_only:
        bench_memory(args)
        return
    if not args.kinds:
        bench_decoder(args)
        bench_local_pca(args)
    bench_kinds(args)


if __name__ == "__main__":
    main()
