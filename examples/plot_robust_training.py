"""
Training a robust model and watching its gradients change
=========================================================

Robust training makes gradients perceptually aligned (Srinivas, Bordt & Lakkaraju, NeurIPS
2023). This example trains the same :class:`~captum_pags.models.MLP` on ``digits16`` three
times with :func:`~captum_pags.training.fit`: with plain cross-entropy, with an input-gradient
penalty (:class:`~captum_pags.training.GradientNormLoss`) and with Gaussian noise
augmentation (:class:`~captum_pags.training.RandomizedSmoothingLoss`). After every epoch it
measures the perceptual alignment of each model's gradients with the Bayes score difference
of the shipped diffusion model, and at the end attacks the models with
:class:`~captum_pags.training.PGD` and certifies the noise-trained one with
:class:`~captum_pags.training.SmoothedClassifier`.
"""

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from captum_pags import (
    MLP,
    PGD,
    GradientNormLoss,
    RandomizedSmoothingLoss,
    ScoreAttribution,
    SmoothedClassifier,
    fit,
    load_digits16,
    load_digits16_score_model,
    score_alignment,
)
from captum_pags.attr import input_gradients
from captum_pags.training import StandardLoss
from captum_pags.viz import attribution_grid

# sphinx_gallery_thumbnail_number = 2
train, test = load_digits16("train"), load_digits16("test")
train_loader = DataLoader(train.dataset(), batch_size=64, shuffle=True)
test_loader = DataLoader(test.dataset(), batch_size=360)

# %%
# The reference: Bayes score differences
# --------------------------------------
# The alignment target is computed once for 100 test images:
# :math:`\nabla_x \log p_\sigma(x \mid y) - \nabla_x \log p_\sigma(x)` at
# :math:`\sigma = 0.3`, from the shipped diffusion model.
x, y = test.images[:100], test.labels[:100]
score_model = load_digits16_score_model()
bayes = ScoreAttribution(score_model, sigma=0.3, mode="bayes").attribute(x, target=y)


def log_softmax_gradients(model, inputs, labels):
    def log_softmax(z):
        return torch.log_softmax(model(z), dim=1)

    return input_gradients(log_softmax, (inputs,), labels)[0]


# %%
# Training with fit, measuring after every epoch
# ----------------------------------------------
# ``fit(model, loss, loader, epochs)`` takes any loss called as
# ``loss(model, inputs, targets)``. Its ``eval_fn`` runs after every epoch and returns
# numbers that end up in the history; here it adds the mean alignment and keeps the
# gradients of the first images, so that we can watch them change.
snapshots = {}


def make_eval_fn(name):
    def evaluate(model, loader):
        images, labels = next(iter(loader))
        with torch.no_grad():
            accuracy = (model(images).argmax(1) == labels).float().mean()
        grads = log_softmax_gradients(model, x, y)
        snapshots.setdefault(name, []).append(grads[:6])
        alignment = score_alignment(grads, bayes).mean()
        return {"accuracy": float(accuracy), "alignment": float(alignment)}

    return evaluate


losses = {
    "cross-entropy": StandardLoss(),
    "gradient norm (λ = 1)": GradientNormLoss(lam=1.0),
    "noise (σ = 0.5)": RandomizedSmoothingLoss(sigma=0.5),
}
models, histories = {}, {}
for name, loss in losses.items():
    torch.manual_seed(0)
    model = MLP(hidden=(128, 128))
    histories[name] = fit(
        model,
        loss,
        train_loader,
        epochs=30,
        eval_loader=test_loader,
        eval_fn=make_eval_fn(name),
        seed=0,
        quiet=True,
    )
    models[name] = model.eval()
    last = histories[name].epochs[-1]
    print(
        f"{name:22s} accuracy {last['accuracy']:.3f}  alignment {last['alignment']:.3f}"
    )

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for name, history in histories.items():
    epochs = [r["epoch"] for r in history.epochs]
    axes[0].plot(
        epochs, [r["alignment"] for r in history.epochs], "o-", ms=3, label=name
    )
    axes[1].plot(epochs, [r["accuracy"] for r in history.epochs], "o-", ms=3)
axes[0].set_title("perceptual alignment (cosine, σ = 0.3)", fontsize=10)
axes[1].set_title("test accuracy", fontsize=10)
for ax in axes:
    ax.set_xlabel("epoch")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
# The gradients, epoch by epoch
# -----------------------------
# Log-softmax gradients of the noise-trained model after epochs 1, 3, 10 and 30, and
# at the end for the other two, under the Bayes score difference they are compared
# with. After one epoch the gradient is pixel noise; with training it gathers into
# strokes. The plainly trained model's gradients end as large blobs spread over the
# whole image; those of the robust models are more local and closer to the Bayes map
# (their higher alignment above).
images = x[:6]
rows = [images, bayes[:6]]
titles = ["image", "Bayes score\ndifference"]
noise_name = "noise (σ = 0.5)"
for epoch in (1, 3, 10, 30):
    rows.append(snapshots[noise_name][epoch - 1])
    titles.append(f"noise σ=0.5\nepoch {epoch}")
for name in ("cross-entropy", "gradient norm (λ = 1)"):
    rows.append(snapshots[name][-1])
    titles.append(name.replace(" (", "\n("))
fig = attribution_grid(rows, titles, scale=1.2)
for ax in fig.axes[:6]:
    ax.images[0].set(cmap="gray_r", clim=(0.0, 1.0))

# %%
# Attacks and certificates
# ------------------------
# An L2 :class:`~captum_pags.training.PGD` attack with budget :math:`\varepsilon = 1`
# (a digit's norm is about 7) finds a misclassified image near about four in five
# test images for the plainly trained model, near about half for the robust ones.
# ``PGD`` is batched and gives every example its own budget.
for name, model in models.items():
    attack = PGD(model, epsilon=1.0, steps=10, norm="l2", bounds=(0.0, 1.0))
    adversarial = attack.perturb(x, y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
        robust = (model(adversarial).argmax(1) == y).float().mean()
    print(f"{name:22s} clean {clean:.2f}  under PGD (L2, ε = 1) {robust:.2f}")

# %%
# Randomized smoothing (Cohen et al., 2019) turns the noise-trained model into a
# classifier that is provably constant on an L2 ball around each input. The radius
# comes from a lower confidence bound on the top class probability under noise.
smoothed = SmoothedClassifier(models[noise_name], sigma=0.5, num_classes=10)
certificate = smoothed.certify(
    x, n0=100, n=1000, alpha=0.001, generator=torch.Generator().manual_seed(0)
)
correct = certificate.prediction == y
radii = torch.linspace(0, 1.5, 31)
certified = [(correct & (certificate.radius >= r)).float().mean() for r in radii]
print(f"abstained on {int((certificate.prediction == -1).sum())} of {len(y)} images")
print(f"certified accuracy at radius 0.5: {float(certified[10]):.2f}")
fig, ax = plt.subplots(figsize=(4.5, 3))
ax.plot(radii, certified)
ax.set_xlabel("L2 radius")
ax.set_ylabel("certified accuracy")
ax.set_title("smoothed noise-trained MLP (σ = 0.5)", fontsize=10)
fig.tight_layout()
plt.show()
