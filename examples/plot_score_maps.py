"""
Score maps and perceptual alignment with the shipped diffusion model
====================================================================

``captum_pags`` ships a small class-conditional diffusion model of ``digits16``: a diffusers
``UNet2DModel`` with a DDPM scheduler, trained with a null label so that one network gives both
:math:`\\nabla_x \\log p_\\sigma(x \\mid y)` and :math:`\\nabla_x \\log p_\\sigma(x)`. Their difference
is the input gradient of the Bayes-optimal classifier of the noisy data, the reference that
perceptually aligned gradients resemble (Srinivas, Bordt & Lakkaraju, NeurIPS 2023).
:class:`~captum_pags.attr.ScoreAttribution` turns the scores into attribution maps and
:func:`~captum_pags.metrics.perceptual_alignment` compares a classifier's gradients with them.
"""

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from captum_pags import (
    ScoreAttribution,
    digits16_subspace,
    load_digits16,
    load_digits16_score_model,
    perceptual_alignment,
    tangent_alignment,
)
from captum_pags.metrics import random_tangent_alignment
from captum_pags.models import MLP
from captum_pags.training import RandomizedSmoothingLoss, StandardLoss, fit
from captum_pags.viz import attribution_grid

torch.manual_seed(0)
train, test = load_digits16("train"), load_digits16("test")
score_model = load_digits16_score_model()
print(score_model)


def gray_first_row(fig, n):
    """Show the first row of an attribution grid (the input images) in gray."""
    for ax in fig.axes[:n]:
        ax.images[0].set(cmap="gray_r", clim=(0.0, 1.0))


# %%
# Noise levels
# ------------
# Noise levels are given in the units of the data (pixels in [0, 1]). The model was trained on
# :math:`[-1, 1]`, so its own noise level is twice as large, and with the default
# ``timestep_rule="nearest"`` the closest of its 1000 trained timesteps is used.
for sigma in [0.1, 0.25, 0.5, 1.0]:
    level = score_model.noise_level(sigma)
    print(
        f"sigma={sigma:<5} -> timestep {level.timestep:5.0f}, evaluated sigma {level.sigma:.4f}"
    )

# %%
# Three kinds of score map
# ------------------------
# ``mode="conditional"`` points towards more likely images of class :math:`y`,
# ``"unconditional"`` towards more likely digits of any class, and ``"bayes"`` is their
# difference: the direction that makes the image more like a :math:`y` *rather than* another
# digit.
sigma = 0.5
x, y = test.images[:8], test.labels[:8]
modes = ["conditional", "unconditional", "bayes"]
maps = {
    mode: ScoreAttribution(score_model, sigma, mode=mode).attribute(x, target=y)
    for mode in modes
}
fig = attribution_grid([x, *maps.values()], ["image", *maps], scale=1.1)
gray_first_row(fig, len(x))

# %%
# The Bayes map lies on the data manifold
# ---------------------------------------
# Every ``digits16`` image lies in a known 64-dimensional subspace of the 256 pixels. The theory
# predicts that the Bayes score difference lies in it too (off the manifold, the class-conditional
# and unconditional densities fall off alike and their scores cancel). The learned model agrees:
space = digits16_subspace()
ta = tangent_alignment(maps["bayes"], x, space)
print(f"tangent alignment of the Bayes maps: {float(ta.mean()):.3f}")
print(f"tangent alignment of a random direction: {random_tangent_alignment(space):.2f}")

# %%
# Denoising with the same model
# -----------------------------
# Tweedie's formula, :math:`\hat x = x + \sigma^2 \nabla_x \log p_\sigma(x)`, turns a score into a
# denoiser (:meth:`~captum_pags.scores.ScoreModel.denoise`): a quick check that the shipped model
# has learnt what digits look like.
noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
denoised = score_model.denoise(noisy, sigma)
denoised_y = score_model.denoise(noisy, sigma, target=y)
names = ["clean", f"noisy (σ={sigma})", "denoised", "denoised, given y"]
fig = attribution_grid([x, noisy, denoised, denoised_y], names, scale=1.1)
for ax in fig.axes:
    ax.images[0].set(cmap="gray_r", clim=(0.0, 1.0))

# %%
# What would make this image a 0, 1, ..., 9?
# ------------------------------------------
# The Bayes map for every target class of one image, at three noise levels. Small noise levels
# give local, stroke-level edits; larger ones move whole strokes.
one = x[:1].expand(10, -1, -1, -1)
classes = torch.arange(10)
rows = [one] + [
    ScoreAttribution(score_model, s, mode="bayes").attribute(one, target=classes)
    for s in [0.25, 0.5, 1.0]
]
fig = attribution_grid(rows, ["image", "σ = 0.25", "σ = 0.5", "σ = 1.0"], scale=0.9)
gray_first_row(fig, 10)
for c, ax in enumerate(fig.axes[:10]):
    ax.set_title(f"→ {c}", fontsize=10)

# %%
# Perceptual alignment of two classifiers
# ---------------------------------------
# Two small MLPs, one trained on clean images and one with Gaussian input noise (a classic way to
# make a model robust, above all off the manifold). :func:`~captum_pags.metrics.perceptual_alignment`
# computes each model's log-softmax input gradient and its cosine similarity with the Bayes map.


def train_mlp(noise, epochs=20, seed=0):
    """An MLP trained with Gaussian input noise of std ``noise`` (plain cross-entropy at 0)."""
    torch.manual_seed(seed)
    model = MLP(hidden=(256, 256), activation="relu")
    loss = RandomizedSmoothingLoss(noise) if noise > 0 else StandardLoss()
    loader = DataLoader(train.dataset(), batch_size=64, shuffle=True)
    fit(model, loss, loader, epochs=epochs, seed=seed, quiet=True)
    return model.eval()


models = {"clean training": train_mlp(0.0), "noise 0.5": train_mlp(0.5)}
xs, ys = test.images[:200], test.labels[:200]
sigmas = [0.25, 0.5, 1.0]
alignment = {
    name: [perceptual_alignment(m, xs, score_model, s, ys) for s in sigmas]
    for name, m in models.items()
}
for name, values in alignment.items():
    means = ", ".join(f"σ={s}: {float(v.mean()):.3f}" for s, v in zip(sigmas, values))
    print(f"{name:>15}: mean alignment {means}")

# The paper's other variant: logit gradients against the class-conditional score.
for name, m in models.items():
    cond = perceptual_alignment(
        m, xs, score_model, 0.5, ys, gradient="logit", score="conditional"
    )
    print(
        f"{name:>15}: logit gradient vs conditional score at σ=0.5: {float(cond.mean()):.3f}"
    )

# The released script's pairing: the gradient of the sum of all logits against the
# unconditional score (no label needed). On ``digits16`` it stays close to 0 for both models:
# the unconditional score carries no class evidence.
for name, m in models.items():
    released = perceptual_alignment(
        m, xs, score_model, 0.5, None, gradient="logit_sum", score="unconditional"
    )
    print(
        f"{name:>15}: logit-sum gradient vs unconditional score at σ=0.5: "
        f"{float(released.mean()):.3f}"
    )

# %%
# Which similarity
# ----------------
# The paper measures alignment with LPIPS on an AlexNet backbone and plots 1 - LPIPS
# (``method="lpips"``); that needs ImageNet weights in the torch hub cache, which this gallery
# does not download. SSIM (``method="ssim"``) is a perceptual measure without weights; the table
# gives it beside the cosine for the same maps (log-softmax gradient vs Bayes map, σ = 0.5). Both
# measures rank the noise-trained model above the clean one here.
print(f"{'model':>15}  {'cosine':>7}  {'ssim':>7}")
for name, m in models.items():
    ssim = perceptual_alignment(m, xs, score_model, 0.5, ys, method="ssim")
    print(
        f"{name:>15}  {float(alignment[name][1].mean()):7.3f}  {float(ssim.mean()):7.3f}"
    )

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
for name, values in alignment.items():
    ax1.hist(values[1].numpy(), bins=20, range=(-0.2, 1.0), alpha=0.6, label=name)
    ax2.plot(sigmas, [float(v.mean()) for v in values], "o-", label=name)
ax1.set_xlabel("cosine to the Bayes map (σ = 0.5)")
ax1.set_ylabel("test images")
ax1.legend(fontsize=8)
ax2.set_xscale("log")
ax2.set_xticks(sigmas, [str(s) for s in sigmas])
ax2.set_xlabel("σ of the score")
ax2.set_ylabel("mean alignment")
fig.tight_layout()

# %%
# The gradients themselves, next to the Bayes maps they are compared with:
bayes = ScoreAttribution(score_model, 0.5, mode="bayes").attribute(x, target=y)
grads = []
for m in models.values():
    xg = x.clone().requires_grad_()
    torch.log_softmax(m(xg), dim=1).gather(1, y[:, None]).sum().backward()
    grads.append(xg.grad)
fig = attribution_grid([x, bayes, *grads], ["image", "Bayes map", *models], scale=1.1)
gray_first_row(fig, len(x))
plt.show()
