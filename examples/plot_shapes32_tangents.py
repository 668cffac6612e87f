"""
Tangent estimators against an exactly known curved manifold
===========================================================

``digits16`` lies in one linear subspace, so its exact tangent space is the same plane at every
image. ``shapes32`` is curved: every image is rendered by a smooth function of seven factors
(position x and y, size, rotation, hue, intensity, background grey) for one of five shape kinds
(:func:`~captum_pags.datasets.render_shapes32`), so its tangent space at an image is the span of
the renderer's Jacobian with respect to the factors, and it turns from image to image
(:func:`~captum_pags.datasets.shapes32_tangent`).

This example compares three estimates with that exact answer, by the principal angles between
the spaces (:func:`~captum_pags.datasets.compare_tangents`):

- the decoder Jacobian of the shipped autoencoder
  (:func:`~captum_pags.models.shapes32_decoder_tangent`);
- local PCA over the 5000 training images (:class:`~captum_pags.manifold.LocalPCATangent`);
- the leading eigen-directions of the Jacobian of the shipped diffusion model's unconditional
  denoiser (:class:`~captum_pags.manifold.DenoiserTangent`), taken at a slightly noisy copy of
  each image, where a denoiser is trained to work.
"""

import matplotlib.pyplot as plt
import torch

from captum_pags.datasets import (
    SHAPES32_CLASSES,
    SHAPES32_FACTORS,
    compare_tangents,
    load_shapes32,
    shapes32_jacobian,
    shapes32_tangent,
)
from captum_pags.manifold import LinearSubspace
from captum_pags.models import shapes32_tangent_estimators

# sphinx_gallery_thumbnail_number = 2
train, test = load_shapes32("train"), load_shapes32("test")
first_of_each = [
    int(torch.nonzero(test.labels == c)[i]) for i in range(2) for c in range(5)
]
x = test.images[first_of_each]  # two images of each shape kind
exact = shapes32_tangent(test)

# %%
# The exact tangent directions
# ----------------------------
# The seven columns of the renderer's Jacobian at one image (forward-mode AD,
# :func:`~captum_pags.datasets.shapes32_jacobian`): moving the shape, growing and turning it
# changes its edges; hue and intensity change its inside; the background grey changes the rest.
i = first_of_each[2]
jac = shapes32_jacobian(test.factors[i : i + 1], test.labels[i : i + 1])[0]
fig, axes = plt.subplots(1, 8, figsize=(12, 1.9))
axes[0].imshow(test.images[i].permute(1, 2, 0).numpy())
axes[0].set_title(SHAPES32_CLASSES[int(test.labels[i])], fontsize=9)
for ax, column, name in zip(axes[1:], jac, SHAPES32_FACTORS):
    shown = column.abs().sum(0)
    ax.imshow(shown.numpy(), cmap="magma")
    ax.set_title(f"d / d {name}", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.tight_layout()

# %%
# Three estimates
# ---------------
# :func:`~captum_pags.models.shapes32_tangent_estimators` builds the three from the shipped
# pieces. Each returns ``k`` directions per image: the autoencoder's code size (10) for the
# decoder, and the number of factors (7) for local PCA (40 nearest training images) and the
# denoiser (noise level 0.1, taken at a fixed noisy copy of each image). A random
# 7-dimensional subspace is the baseline: in 3072 dimensions it is nearly orthogonal to
# everything.


random_plane = LinearSubspace(
    torch.randn(7, 3072, generator=torch.Generator().manual_seed(0)),
    input_shape=(3, 32, 32),
)
estimators = {**shapes32_tangent_estimators(sigma=0.1), "random": random_plane}
table = compare_tangents(estimators, exact, x, batch_size=10)
print(
    f"{'estimator':10s} {'k':>3s} {'mean angle':>11s} {'largest (mean)':>15s} {'largest (max)':>14s}"
)
for name, row in table.items():
    print(
        f"{name:10s} {row['dim']:3d} {row['mean']:10.1f}° {row['max_mean']:14.1f}° {row['max_max']:13.1f}°"
    )

# %%
# Angles of 0 degrees mean that the estimate contains an exact direction; 90 degrees that it
# misses it entirely. The columns are the mean over the images of the mean of the seven
# principal angles, of the largest one, and the largest one over all images.
names = list(table)
fig, ax = plt.subplots(figsize=(6, 3))
positions = torch.arange(len(names)).float()
ax.bar(
    positions - 0.2, [table[n]["mean"] for n in names], width=0.4, label="mean angle"
)
ax.bar(
    positions + 0.2,
    [table[n]["max_mean"] for n in names],
    width=0.4,
    label="largest angle (mean)",
)
ax.set_xticks(positions.tolist(), names)
ax.set_ylabel("principal angle to the exact space (deg)")
ax.set_ylim(0, 90)
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()

# %%
# Reading the table
# -----------------
# The sentences below are computed from the table, so they stay true if the models change.
best = min((n for n in names if n != "random"), key=lambda n: table[n]["mean"])
worst = max((n for n in names if n != "random"), key=lambda n: table[n]["mean"])
print(
    f"Closest to the exact tangent space on average: {best} ({table[best]['mean']:.1f}° mean angle)."
)
print(
    f"Farthest: {worst} ({table[worst]['mean']:.1f}°), against {table['random']['mean']:.1f}° for a random plane."
)
print(
    "Every estimator misses at least one exact direction by more than 45° on some image: "
    f"{all(table[n]['max_max'] > 45 for n in names)}."
)
