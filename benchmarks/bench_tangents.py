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
from captum_pags.manifold import DecoderTangent, LocalPCATangent

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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_decoder(args)
    bench_local_pca(args)


if __name__ == "__main__":
    main()
