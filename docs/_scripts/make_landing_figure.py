"""Draw the figure on the documentation's landing page (``docs/_static/landing.png``).

Run from the repository root::

    python docs/_scripts/make_landing_figure.py

It takes about ten seconds on a CPU and is seeded, so the figure can be redrawn whenever the
package changes. Columns: the first test image of each digit 0..7. Rows: the image; the Bayes
score difference of the shipped diffusion model; the log-softmax gradient of a small MLP trained
without regularisation, and its on- and off-manifold parts; the gradient of the same MLP trained
with Gaussian input noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from captum_pags import (  # noqa: E402
    ManifoldGradient,
    ScoreAttribution,
    digits16_subspace,
    load_digits16,
    load_digits16_score_model,
    score_alignment,
)
from captum_pags.analysis import SweepConfig  # noqa: E402

OUT = ROOT / "docs" / "_static" / "landing.png"
SIGMA = SweepConfig.sigma  # the report's noise level of the Bayes score (pixel values in [0, 1])
NOISE = 0.5  # std of the Gaussian input noise of the robust model


def train_mlp(images: torch.Tensor, labels: torch.Tensor, noise: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(20):
        for idx in torch.randperm(len(labels)).split(64):
            batch = images[idx] + noise * torch.randn_like(images[idx])
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(batch), labels[idx]).backward()
            optimizer.step()
    return model.eval()


def main() -> None:
    train, test = load_digits16("train"), load_digits16("test")
    columns = torch.tensor([int((test.labels == d).nonzero()[0]) for d in range(8)])
    x, y = test.images[columns], test.labels[columns]
    space = digits16_subspace()

    bayes = ScoreAttribution(load_digits16_score_model(), SIGMA, mode="bayes").attribute(x, target=y)
    rows = [("digits16 image", x), (f"Bayes score difference\n(diffusion model, σ={SIGMA})", bayes)]
    for noise, name in [(0.0, "standard MLP"), (NOISE, f"MLP trained with noise {NOISE}")]:
        model = train_mlp(train.images, train.labels, noise)
        mg = ManifoldGradient(lambda z, m=model: torch.log_softmax(m(z), dim=1), space)
        parts = ["full", "on", "off"] if noise == 0.0 else ["full"]
        for part in parts:
            g = mg.attribute(x, target=y, component=part)
            cos = round(float(score_alignment(g, bayes).mean()), 2) + 0.0  # no "-0.00"
            label = {"full": f"{name}:\ngradient", "on": "on-manifold part", "off": "off-manifold part"}[part]
            rows.append((f"{label}\n(cos to Bayes {cos:+.2f})", g))

    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.0 * len(x) + 2.4, 1.0 * len(rows) + 0.5), squeeze=False)
    for i, (name, maps) in enumerate(rows):
        maps = maps.detach().double()[:, 0]
        for j in range(len(x)):
            ax = axes[i, j]
            if i == 0:
                ax.imshow(maps[j], cmap="gray_r", vmin=0.0, vmax=1.0)
                ax.set_title(f"digit {int(y[j])}", fontsize=11)
            else:
                peak = float(maps[j].abs().max()) or 1.0
                ax.imshow(maps[j] / peak, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10.5)
    fig.suptitle(
        "Input gradients on digits16, split on and off the data manifold, next to the Bayes score difference",
        fontsize=12,
    )
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
