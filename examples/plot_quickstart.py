"""
Quick start: on- and off-manifold gradients
===========================================

A model's input gradient has a part along the data manifold and a part that leaves it.
Srinivas, Bordt & Lakkaraju (NeurIPS 2023) show that the Bayes-optimal classifier's gradient lies on
the manifold, and that this is what makes gradients look like images. Here the manifold is known
exactly: a Gaussian mixture on a 6-dimensional subspace of 16x16 images.
"""

import matplotlib.pyplot as plt
import torch
from captum.attr import NoiseTunnel
from torch import nn

from captum_pags import GaussianSubspaceMixture, ManifoldGradient
from captum_pags.viz import attribution_grid

torch.manual_seed(0)
data = GaussianSubspaceMixture(
    num_classes=3,
    intrinsic_dim=6,
    shape=(1, 16, 16),
    basis="smooth",
    off_std=0.05,
    seed=0,
)
x, y = data.sample(512, seed=0)

# %%
# The exact Bayes-optimal classifier: its gradient lies in the tangent space.
bayes = data.bayes_classifier()
mg = ManifoldGradient(bayes, data.tangent_space)
full = mg.attribute(x[:6].double(), target=y[:6], component="full")
off = mg.attribute(x[:6].double(), target=y[:6], component="off")
print(
    f"Bayes-optimal: off-manifold share of the gradient = {float(off.norm() / full.norm()):.2e}"
)

# %%
# A small network trained without any regularisation is not so well behaved: a good part of its
# gradient points off the manifold.
model = nn.Sequential(nn.Flatten(), nn.Linear(256, 64), nn.Softplus(), nn.Linear(64, 3))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(200):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
model.eval()
mg_net = ManifoldGradient(model, data.tangent_space)
g_full = mg_net.attribute(x[:6], target=y[:6], component="full")
g_on = mg_net.attribute(x[:6], target=y[:6], component="on")
g_off = mg_net.attribute(x[:6], target=y[:6], component="off")
print(f"trained MLP: off-manifold share = {float(g_off.norm() / g_full.norm()):.2f}")

# %%
# ManifoldGradient is a Captum attribution: SmoothGrad over it is one line.
smooth_on = NoiseTunnel(mg_net).attribute(
    x[:6], target=y[:6], nt_type="smoothgrad", nt_samples=8, stdevs=0.05
)

fig = attribution_grid(
    [x[:6], full.float(), g_full, g_on, g_off, smooth_on],
    ["input", "Bayes grad", "MLP grad", "MLP on", "MLP off", "SmoothGrad on"],
)
plt.show()
