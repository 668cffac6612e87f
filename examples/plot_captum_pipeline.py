"""
Manifold gradients in a Captum pipeline
=======================================

:class:`~captum_pags.attr.ManifoldGradient` is a Captum ``GradientAttribution``. Anything that takes a
Captum attribution takes it too: :class:`~captum.attr.NoiseTunnel`, the metrics of
:mod:`captum.metrics` and Captum's visualisation. This example trains a small classifier on the
embedded ``digits16`` images, whose exact manifold is known: every image is an 8x8 digit upsampled
to 16x16, so all of them lie in one 64-dimensional subspace of the 256 pixels
(:func:`~captum_pags.datasets.digits16_subspace`).
"""

import matplotlib.pyplot as plt
import torch
from captum.attr import NoiseTunnel, Saliency
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from captum_pags import ManifoldGradient, digits16_subspace, load_digits16
from captum_pags.viz import visualize_attribution

torch.manual_seed(0)
train, test = load_digits16("train"), load_digits16("test")
space = digits16_subspace()
print(f"tangent space: {space.dim} of {space.num_features} dimensions")

# %%
# A classifier to explain
# -----------------------
# Any ``nn.Module`` that returns logits will do. Here: a small MLP trained for a few seconds.
model = nn.Sequential(
    nn.Flatten(),
    nn.Linear(256, 256),
    nn.ReLU(),
    nn.Linear(256, 256),
    nn.ReLU(),
    nn.Linear(256, 10),
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for _ in range(20):
    for idx in torch.randperm(len(train)).split(64):
        optimizer.zero_grad()
        nn.functional.cross_entropy(
            model(train.images[idx]), train.labels[idx]
        ).backward()
        optimizer.step()
model.eval()
accuracy = (model(test.images).argmax(1) == test.labels).float().mean()
print(f"test accuracy: {accuracy:.3f}")

x, y = test.images[:6], test.labels[:6]

# %%
# On- and off-manifold parts of the gradient
# ------------------------------------------
# ``component="full"`` is Captum's :class:`~captum.attr.Saliency` without the absolute value;
# ``"on"`` and ``"off"`` split it by the tangent projector, and the two parts add up to it.
mg = ManifoldGradient(model, space)
full = mg.attribute(x, target=y, component="full")
on = mg.attribute(x, target=y, component="on")
off = mg.attribute(x, target=y, component="off")
saliency = Saliency(model).attribute(x.clone().requires_grad_(), target=y, abs=False)
print(f"max |full - Saliency| = {float((full - saliency).abs().max()):.1e}")
print(f"max |on + off - full| = {float((on + off - full).abs().max()):.1e}")
print(f"off-manifold share of the gradient norm: {float(off.norm() / full.norm()):.2f}")

# %%
# SmoothGrad over the on-manifold gradient
# ----------------------------------------
# :class:`~captum.attr.NoiseTunnel` adds isotropic noise to the inputs and averages the
# attributions. ManifoldGradient computes the tangent space from the noisy inputs it is given, so
# nothing else is needed.
nt = NoiseTunnel(mg)
smooth_on = nt.attribute(
    x, target=y, component="on", nt_type="smoothgrad", nt_samples=16, stdevs=0.1
)

# %%
# Captum's visualisation
# ----------------------
# :func:`captum_pags.viz.visualize_attribution` hands a ``(C, H, W)`` map to Captum's
# ``visualize_image_attr`` in the channel-last layout it expects; ``plt_fig_axis`` places
# it in a grid. ``"blended_heat_map"`` overlays the signed map (green: the class score
# rises, red: it falls) on the gray image.
rows = {"gradient": full, "on": on, "off": off, "SmoothGrad on": smooth_on}
style = {"method": "blended_heat_map", "sign": "all", "use_pyplot": False}
fig, axes = plt.subplots(len(rows) + 1, len(x), figsize=(1.6 * len(x), 1.6 * 5))
for j in range(len(x)):
    axes[0, j].imshow(x[j, 0], cmap="gray")  # as Captum shows images
    axes[0, j].set_title(f"digit {int(y[j])}", fontsize=9)
    axes[0, j].axis("off")
    for i, maps in enumerate(rows.values(), start=1):
        visualize_attribution(maps[j], x[j], plt_fig_axis=(fig, axes[i, j]), **style)
for i, name in enumerate(rows, start=1):
    axes[i, 0].set_title(name, loc="left", fontsize=9)
fig.tight_layout()

# %%
# Infidelity
# ----------
# :func:`captum.metrics.infidelity` asks how well :math:`\langle a, \delta\rangle` predicts the
# change of the output, :math:`f(x) - f(x - \delta)`, for random perturbations :math:`\delta`.
# With isotropic perturbations every part of the gradient counts. With perturbations that stay in
# the tangent space, the off-manifold part is orthogonal to every :math:`\delta`: the on-manifold
# gradient is then exactly as faithful as the full one, and the off-manifold part explains nothing.


def isotropic(inputs):
    delta = 0.05 * torch.randn_like(inputs)
    return delta, inputs - delta


def along_manifold(inputs):
    delta = space.project(inputs, 0.05 * torch.randn_like(inputs))
    return delta, inputs - delta


maps = {"gradient": full, "on": on, "off": off}
infid = {}
for pname, perturb in [
    ("isotropic", isotropic),
    ("along the manifold", along_manifold),
]:
    for name, attr in maps.items():
        torch.manual_seed(1)  # the same perturbations for every map
        infid[pname, name] = float(
            infidelity(model, perturb, x, attr, target=y, n_perturb_samples=32).mean()
        )
        print(
            f"infidelity, {pname:>18} perturbations, {name:>8}: {infid[pname, name]:.2e}"
        )

# %%
# Sensitivity
# -----------
# :func:`captum.metrics.sensitivity_max` measures how much an explanation changes under small
# input perturbations; keyword arguments such as ``component`` go on to ``attribute``.
sens = {}
for name, component in [("gradient", "full"), ("on", "on"), ("off", "off")]:
    torch.manual_seed(2)  # the same perturbations for every component
    values = sensitivity_max(
        mg.attribute, x, target=y, component=component, perturb_radius=0.05
    )
    sens[name] = float(values.mean())
    print(f"sensitivity_max, {name:>8}: {sens[name]:.3f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
width = 0.38
for k, pname in enumerate(["isotropic", "along the manifold"]):
    ax1.bar(
        [i + (k - 0.5) * width for i in range(len(maps))],
        [infid[pname, n] for n in maps],
        width,
        label=pname,
    )
ax1.set_xticks(range(len(maps)), list(maps))
ax1.set_yscale("log")
ax1.set_title("infidelity (lower is better)")
ax1.legend(title="perturbations", fontsize=8)
ax2.bar(list(sens), list(sens.values()), color="tab:green")
ax2.set_title("sensitivity_max (lower is better)")
fig.tight_layout()
plt.show()
