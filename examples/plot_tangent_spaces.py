"""
Tangent spaces compared
=======================

Where is the data manifold at :math:`x`? ``captum_pags`` has four answers, each a
:class:`~captum_pags.manifold.TangentSpace`:

- :class:`~captum_pags.manifold.LinearSubspace`: a known subspace, or one fitted by PCA;
- :class:`~captum_pags.manifold.LocalPCATangent`: the principal directions of the nearest
  training images;
- :class:`~captum_pags.manifold.DecoderTangent`: the columns of an autoencoder's decoder
  Jacobian (the shipped ``digits16`` autoencoder,
  :func:`~captum_pags.models.digits16_decoder_tangent`);
- :class:`~captum_pags.manifold.DenoiserTangent`: the leading eigen-directions of a denoiser's
  Jacobian (here the denoiser of the shipped diffusion model).

This example checks them first on synthetic data whose manifold is known exactly, then compares
them on ``digits16`` with :func:`~captum_pags.manifold.principal_angles`, estimates the intrinsic
dimension with :func:`~captum_pags.manifold.intrinsic_dimension`, and splits a classifier's
gradient into on- and off-manifold parts under each with
:class:`~captum_pags.attr.ManifoldGradient`.
"""

import warnings

import matplotlib.pyplot as plt
import torch
from torch import nn

from captum_pags import (
    DenoiserTangent,
    GaussianSubspaceMixture,
    LinearSubspace,
    LocalPCATangent,
    ManifoldGradient,
    digits16_subspace,
    intrinsic_dimension,
    load_digits16,
    load_digits16_score_model,
    principal_angles,
    tangent_alignment,
)
from captum_pags.models import digits16_decoder_tangent
from captum_pags.viz import attribution_grid

# sphinx_gallery_thumbnail_number = 3
torch.manual_seed(0)


def degrees(angles):
    return torch.rad2deg(angles)


# %%
# An exact check
# --------------
# :class:`~captum_pags.datasets.GaussianSubspaceMixture` draws data from a Gaussian mixture on a
# known 6-dimensional subspace of 16x16 images, with a little isotropic noise off it,
# and knows its exact score. Local PCA of 2000 samples and the denoiser of the exact
# score (``DenoiserTangent`` accepts any :class:`~captum_pags.scores.ScoreModel`) should
# both find the subspace; the largest principal angle to it measures how well they do.
data = GaussianSubspaceMixture(
    num_classes=3, intrinsic_dim=6, shape=(1, 16, 16), off_std=0.01, seed=0
)
samples, _ = data.sample(2000, seed=0)
points, labels = data.sample(8, seed=1)
exact_basis = data.tangent_space.basis(points)
local = LocalPCATangent(samples, dim=6, n_neighbors=200)
denoiser = DenoiserTangent(data.score_model, sigma=0.1, dim=6, oversampling=10)
for name, space in [("local PCA", local), ("denoiser", denoiser)]:
    angles = degrees(principal_angles(space.basis(points), exact_basis))
    print(
        f"{name:9s}: largest angle to the true subspace {float(angles.max()):5.2f} deg"
    )
spectrum = denoiser.spectrum(points)
print("denoiser Jacobian spectrum at one point:", spectrum[0, :9].numpy().round(2))
print("intrinsic dimension (largest gap):", intrinsic_dimension(spectrum).tolist())

# %%
# On the manifold the exact denoiser's Jacobian has eigenvalues near 1, across it near
# :math:`\tau^2 / (\tau^2 + \sigma^2) \approx 0.01`: the largest gap of the spectrum is
# after the 6th value, at every point.
#
# digits16: one exact answer and three estimates
# ----------------------------------------------
# Every ``digits16`` image is an 8x8 digit upsampled to 16x16, so all of them lie in
# a known 64-dimensional subspace of the 256 pixels (:func:`~captum_pags.datasets.digits16_subspace`).
# A PCA of the training images nearly finds that number: asked for 80 directions, it
# keeps the 60 that carry variance and warns that it dropped the others, because four
# of the 64 pixels of the 8x8 digits are blank in every training image.
train, test = load_digits16("train"), load_digits16("test")
exact = digits16_subspace()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pca = LinearSubspace.from_data(train.images, dim=80)
print("PCA directions with variance:", pca.dim)
print("warning:", caught[0].message)

# %%
# The digits themselves fill much less than those 64 dimensions. The three estimators
# each return ``k = 16`` directions at every image (16 is the code size of the shipped
# autoencoder). The denoiser needs care: a denoiser is trained on *noisy* images and
# its Jacobian at a clean image is unreliable, so its tangent space is taken at a
# noisy copy :math:`x + \sigma\varepsilon` (as Kadkhodaie et al., ICLR 2024, do).
# ``DenoiserTangent`` takes a :class:`~captum_pags.scores.ScoreModel` (its Tweedie
# denoiser :math:`x + \sigma^2 \nabla \log p_\sigma(x)`) or any function
# :math:`D(x, \sigma)`. Without a target it is the unconditional denoiser (the null
# label): the manifold of all digits, not of one class.
x, y = test.images[:8], test.labels[:8]
score_model = load_digits16_score_model()
sigma = 0.05
noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
spaces = {
    "local PCA": LocalPCATangent(train.images, dim=16, n_neighbors=40),
    "decoder": digits16_decoder_tangent(),
    "denoiser": DenoiserTangent(score_model, sigma, dim=16, oversampling=16),
}
where = {"local PCA": x, "decoder": x, "denoiser": noisy}
bases = {name: space.basis(where[name]) for name, space in spaces.items()}
bases["exact (64)"] = exact.basis(x).float()

# %%
# Principal angles
# ----------------
# :math:`\theta_1 \le \dots \le \theta_{16}` between two 16-dimensional spaces (or
# between one and the 64-dimensional subspace) are all 0 when one lies in the other
# and all 90 degrees when they are orthogonal. Local PCA of training images lies in
# the exact subspace by construction. The denoiser's directions, found from a network
# that never saw the subspace, nearly do; the decoder's leave it by up to ~25 degrees
# (its outputs are not exactly upsampled 8x8 images). Among themselves the three
# estimates agree on some directions and not on others: they answer "which 16
# directions matter most here?" differently.
pairs = [
    ("local PCA", "exact (64)"),
    ("denoiser", "exact (64)"),
    ("decoder", "exact (64)"),
    ("local PCA", "decoder"),
    ("local PCA", "denoiser"),
    ("decoder", "denoiser"),
]
fig, ax = plt.subplots(figsize=(6.4, 3.8))
print("pair                      median angle  largest angle (deg, mean over images)")
for a, b in pairs:
    angles = degrees(principal_angles(bases[a], bases[b]))  # (images, 16)
    print(
        f"{a + ' / ' + b:26s}{float(angles.median(1).values.mean()):9.1f}"
        f"{float(angles.amax(1).mean()):14.1f}"
    )
    style = "--" if "exact" in b else "-"
    ax.plot(range(1, 17), angles.mean(0), style, marker="o", ms=3, label=f"{a} / {b}")
ax.set_xlabel("index i of the principal angle")
ax.set_ylabel(r"$\theta_i$ (degrees)")
ax.set_ylim(0, 90)
ax.legend(fontsize=7)
fig.tight_layout()

# %%
# Spectra and intrinsic dimension
# -------------------------------
# Each estimator ranks its directions by a spectrum: the PCA variances, the singular
# values of a neighbourhood, the singular values of the denoiser's Jacobian.
# :func:`~captum_pags.manifold.intrinsic_dimension` puts the dimension at the largest
# ratio between neighbours. Both PCA spectra fall off a cliff, but for a linear reason:
# pixels that are blank in every image (of the training set, or of a neighbourhood of
# 100 similar digits) carry no variance at all. The denoiser's spectrum, which sees the
# curved manifold at the scale :math:`\sigma`, decays smoothly; its largest ratio is
# small and its place arbitrary. The digits have no sharp intrinsic dimension at this
# scale, so ``k`` is a choice: how much of each neighbourhood to call "along the data".
wide_pca = LocalPCATangent(train.images, dim=60, n_neighbors=100)
with warnings.catch_warnings():
    warnings.simplefilter(
        "ignore"
    )  # it warns that blank pixels leave fewer than 60 directions
    wide_pca.basis(x)
wide_denoiser = DenoiserTangent(score_model, sigma, dim=60, oversampling=10)
denoiser_spectrum = wide_denoiser.spectrum(noisy[:2])
spectra = {
    # the 20 dropped directions have no variance: put their zeros back
    "PCA of all training images (std)": torch.cat(
        [pca.explained_variance.sqrt(), torch.zeros(80 - pca.dim)]
    ),
    "local PCA, 100 neighbours": wide_pca.last_singular_values[0],
    "denoiser Jacobian (σ = 0.05)": denoiser_spectrum[0, :60],  # the accurate part
}
print("spectrum                           largest gap  ratio there")
for name, values in spectra.items():
    k = int(intrinsic_dimension(values))
    ratio = float(values[k - 1] / values[k].clamp_min(1e-12))
    print(f"{name:34s}{k:8d}{ratio:15.3g}")
print(
    "local PCA, per image:", intrinsic_dimension(wide_pca.last_singular_values).tolist()
)
fig, ax = plt.subplots(figsize=(6.4, 3.4))
for name, values in spectra.items():
    values = values / values[0]
    ax.semilogy(range(1, len(values) + 1), values.clamp_min(1e-9), label=name)
ax.set_xlabel("index")
ax.set_ylabel("value / largest")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# On- and off-manifold gradients under each
# -----------------------------------------
# A small MLP, trained for a few seconds, and its log-softmax gradient split by each
# tangent space. ``ManifoldGradient`` computes the basis at its inputs; for the
# denoiser the basis at the noisy copies is applied with
# :meth:`~captum_pags.manifold.TangentSpace.components` instead.
# :func:`~captum_pags.metrics.tangent_alignment` is the share of the gradient's norm in
# the tangent space, :math:`\lVert g_\text{on}\rVert / \lVert g\rVert`; a random
# direction has :math:`\sqrt{k/D}`
# (:func:`~captum_pags.metrics.random_tangent_alignment`).
model = nn.Sequential(
    nn.Flatten(), nn.Linear(256, 128), nn.Softplus(), nn.Linear(128, 10)
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for _ in range(10):
    for idx in torch.randperm(len(train)).split(64):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(train.images[idx]), train.labels[idx])
        loss.backward()
        optimizer.step()
model.eval()


def log_softmax(inputs):
    return torch.log_softmax(model(inputs), dim=1)


def norms(maps):
    return maps.flatten(1).norm(dim=1)


grads = ManifoldGradient(log_softmax, exact).attribute(x, target=y, component="full")
print(
    "exact subspace: tangent alignment",
    tangent_alignment(grads, x, exact).numpy().round(2),
)
rows, titles = [x, grads], ["image", "gradient"]
print("space        k  tangent alignment  random direction")
for name, space in {"exact (64)": exact, **spaces}.items():
    if name == "denoiser":
        on, _ = space.components(noisy, grads)
    else:
        on = ManifoldGradient(log_softmax, space).attribute(x, target=y, component="on")
    share = norms(on) / norms(grads)  # the tangent alignment
    reference = (space.dim / 256) ** 0.5  # random_tangent_alignment(space)
    print(f"{name:11s}{space.dim:3d}{float(share.mean()):14.2f}{reference:17.2f}")
    rows.append(on)
    titles.append(f"on: {name}")
rows.append(
    ManifoldGradient(log_softmax, exact).attribute(x, target=y, component="off")
)
titles.append("off: exact (64)")
fig = attribution_grid([r[:6] for r in rows], titles, scale=1.15)
for ax in fig.axes[:6]:
    ax.images[0].set(cmap="gray_r", clim=(0.0, 1.0))
plt.show()

# %%
# The exact subspace keeps most of the gradient: everything the network could learn
# from the data lies in it, and what is left (last row) is the off-manifold part that
# training never constrained. The 16-dimensional estimates keep less, each far more
# than a random 16-dimensional space would; their on-manifold parts look smoother and
# more like strokes of a digit, each in the style of its estimator.
