"""
On- and off-manifold robustness of noise-trained models
=======================================================

Training with Gaussian input noise is the simplest way to make a classifier robust. Srinivas,
Bordt & Lakkaraju (NeurIPS 2023) observe that, as the noise grows, a model first becomes robust
*off* the data manifold, where its gradients turn perceptually aligned, and then robust *on* it
too, where it starts to ignore the data. This example trains six small MLPs on ``digits16`` with
growing input noise and measures, for each,

- its accuracy,
- its on- and off-manifold robustness (:func:`~captum_pags.metrics.manifold_robustness`),
- the perceptual alignment of its gradients with the Bayes score difference of the shipped
  diffusion model (:func:`~captum_pags.metrics.perceptual_alignment`),

and lets :func:`~captum_pags.metrics.robustness_regime` name the regime each model is in.
"""

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from captum_pags import (
    ManifoldGradient,
    ScoreAttribution,
    digits16_subspace,
    load_digits16,
    load_digits16_score_model,
    manifold_robustness,
    perceptual_alignment,
    robustness_regime,
    tangent_alignment,
)
from captum_pags.metrics import regime_rule_text
from captum_pags.models import MLP
from captum_pags.training import RandomizedSmoothingLoss, StandardLoss, fit
from captum_pags.viz import attribution_grid

# sphinx_gallery_thumbnail_number = 3
train, test = load_digits16("train"), load_digits16("test")
space = (
    digits16_subspace()
)  # the exact 64-dimensional subspace every digits16 image lies in
score_model = load_digits16_score_model()

# %%
# Training with input noise
# -------------------------
# The package's training loop (:func:`~captum_pags.training.fit`) with Gaussian input noise
# (:class:`~captum_pags.training.RandomizedSmoothingLoss`); only its standard deviation changes.


def train_mlp(noise, epochs=20, seed=0):
    """An MLP trained with Gaussian input noise of std ``noise`` (plain cross-entropy at 0)."""
    torch.manual_seed(seed)
    model = MLP(hidden=(256, 256), activation="relu")
    loss = RandomizedSmoothingLoss(noise) if noise > 0 else StandardLoss()
    loader = DataLoader(train.dataset(), batch_size=64, shuffle=True)
    fit(model, loss, loader, epochs=epochs, seed=seed, quiet=True)
    return model.eval()


noise_levels = [0.0, 0.1, 0.3, 1.0, 2.0, 4.0]
models = [train_mlp(noise) for noise in noise_levels]

# %%
# Measuring robustness on and off the manifold
# --------------------------------------------
# For every test image, :func:`~captum_pags.metrics.manifold_robustness` draws random
# unit directions inside the tangent space (on) and orthogonal to it (off), moves the
# image by :math:`\varepsilon` along each, and averages the L1 change of the class
# probabilities. ``relative = on / off`` is large when the model reacts to changes along
# the data far more than to changes that leave it. Pixels are in [0, 1] and a digit's
# norm is about 7, so :math:`\varepsilon` from 0.5 to 4 ranges from a faint to a strong
# perturbation. Alongside: the perceptual alignment of each model's gradients and their
# tangent alignment (the share of the gradient's norm that lies along the manifold).
x, y = test.images[:200], test.labels[:200]
epsilons = [0.5, 1.0, 2.0, 4.0]
accuracy, robustness, alignment, on_manifold = [], [], [], []
for model in models:
    with torch.no_grad():
        correct = model(test.images).argmax(1) == test.labels
    accuracy.append(float(correct.float().mean()))
    robustness.append(manifold_robustness(model, x, space, epsilons, n_samples=8))
    alignment.append(float(perceptual_alignment(model, x, score_model, 0.5, y).mean()))
    grads = ManifoldGradient(model, space).attribute(x, target=y, component="full")
    on_manifold.append(float(tangent_alignment(grads, x, space).mean()))

# %%
# The three regimes
# -----------------
# The models are given in order of growing noise. ``robustness_regime`` applies this
# package's operationalisation of the paper's three regimes, printed here from the
# thresholds the code uses (:func:`~captum_pags.metrics.regime_rule_text`). The line under
# the table names the most aligned model and its regime, computed from the table itself:
# with these thresholds the alignment peak can sit at a model that already lost accuracy.
print(regime_rule_text())
regimes = robustness_regime(robustness, accuracy, alignment)
print("noise  accuracy      on     off  relative  alignment  tangent  regime")
for i, noise in enumerate(noise_levels):
    m = robustness[i].mean()  # averages over the test images; epsilon = 0.5 below
    on, off, rel = float(m.on[0, 0]), float(m.off[0, 0]), float(m.relative[0, 0])
    print(
        f"{noise:5.1f} {accuracy[i]:9.3f} {on:7.4f} {off:7.4f} {rel:9.1f} "
        f"{alignment[i]:10.3f} {on_manifold[i]:8.3f}  {regimes[i]}"
    )
best = max(range(len(noise_levels)), key=lambda i: alignment[i])
print(
    f"most aligned: noise {noise_levels[best]} ({regimes[best]}, alignment {alignment[best]:.3f})"
)

colors = {"weak": "tab:orange", "bayes_aligned": "tab:green", "excessive": "tab:red"}
relative = [float(r.mean().relative[0, 0]) for r in robustness]
series = [
    (accuracy, "test accuracy"),
    (alignment, "perceptual alignment (σ = 0.5)"),
    (relative, "relative robustness on/off (ε = 0.5)"),
]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharex=True)
positions = range(len(noise_levels))
for ax, (values, title) in zip(axes, series):
    ax.plot(positions, values, "k-", lw=1, zorder=1)
    ax.scatter(positions, values, c=[colors[r] for r in regimes], s=50, zorder=2)
    ax.set_title(title, fontsize=10)
    ax.set_xticks(positions, [str(n) for n in noise_levels])
    ax.set_xlabel("training noise std")
for regime, color in colors.items():
    axes[0].scatter([], [], c=color, label=regime.replace("_", "-"))
axes[0].legend(fontsize=8, loc="lower left")
fig.tight_layout()

# %%
# Robustness curves
# -----------------
# The mean output change as the perturbation grows. For every model the off-manifold
# changes (right) are several times smaller than the on-manifold ones (left): the
# training images all lie in the subspace, so nothing in the data asks the model to
# react to the other 192 directions. Moderate noise lowers the off-manifold curve more
# than the on-manifold one, so relative robustness rises. Strong noise (yellow) makes
# the model insensitive along the data as well: its on-manifold curve drops, and with
# it accuracy and alignment.
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
cmap = plt.get_cmap("viridis")
for i, (noise, r) in enumerate(zip(noise_levels, robustness)):
    m = r.mean()
    color = cmap(i / (len(noise_levels) - 1))
    axes[0].plot(epsilons, m.on[0], "o-", color=color, label=f"noise {noise}")
    axes[1].plot(epsilons, m.off[0], "o-", color=color)
for ax, title in zip(axes, ["on the manifold", "off the manifold"]):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(epsilons, [str(e) for e in epsilons])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("ε")
    ax.set_title(title, fontsize=10)
axes[0].set_ylabel("mean L1 change of softmax")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
# The gradients
# -------------
# Log-softmax input gradients of each model on six test images, below the Bayes score
# difference of the diffusion model that the alignment compares them with. Each row
# is labelled with its regime; the table's alignment column says which rows are
# closest to the Bayes map on average (the panels show six images only), and its
# tangent column how much of each gradient's norm lies along the manifold.
images, labels = test.images[:6], test.labels[:6]
bayes = ScoreAttribution(score_model, 0.5, mode="bayes").attribute(
    images, target=labels
)
rows, names = [images, bayes], ["image", "Bayes map\n(σ = 0.5)"]
for noise, model, regime in zip(noise_levels, models, regimes):
    mg = ManifoldGradient(lambda z, m=model: torch.log_softmax(m(z), dim=1), space)
    rows.append(mg.attribute(images, target=labels, component="full"))
    names.append(f"noise {noise}\n{regime}")
fig = attribution_grid(rows, names, scale=1.25)
for ax in fig.axes[: len(images)]:
    ax.images[0].set(cmap="gray_r", clim=(0.0, 1.0))
plt.show()
