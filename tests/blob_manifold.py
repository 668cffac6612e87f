"""A curved manifold with a known generator, for tangent-space tests.

Images of one Gaussian blob with centre ``(cx, cy)`` and log-width ``lw`` (k = 3):

    I(p) = exp(-|p - c|^2 / (2 w^2)),  w = exp(lw),

whose exact tangent space at ``G(z)`` is spanned by the analytic partial derivatives

    dI/dcx = I (px - cx) / w^2,  dI/dcy = I (py - cy) / w^2,  dI/dlw = I |p - c|^2 / w^2.
"""

import math

import torch
from torch import nn

LATENT_LOW = (5.0, 5.0, math.log(1.5))
LATENT_HIGH = (10.0, 10.0, math.log(3.0))


class BlobGenerator(nn.Module):
    """G: R^3 -> (1, size, size) images, float64."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        c = torch.arange(size, dtype=torch.float64)
        self.register_buffer("py", c.view(1, size, 1))
        self.register_buffer("px", c.view(1, 1, size))
        self.size = size

    def _parts(self, z):
        cx, cy, lw = (z[:, i].view(-1, 1, 1) for i in range(3))
        w2 = torch.exp(2 * lw)
        r2 = (self.px - cx) ** 2 + (self.py - cy) ** 2
        return cx, cy, w2, r2, torch.exp(-0.5 * r2 / w2)

    def forward(self, z):
        return self._parts(z)[-1].unsqueeze(1)

    def exact_jacobian(self, z):
        """(N, 3, D) analytic dG/dz, rows = latent coordinates."""
        cx, cy, w2, r2, img = self._parts(z)
        cols = [img * (self.px - cx) / w2, img * (self.py - cy) / w2, img * r2 / w2]
        return torch.stack([c.reshape(len(z), -1) for c in cols], 1)


def sample_latents(n: int, seed: int, margin: float = 0.0) -> torch.Tensor:
    """Uniform latents in the box, ``margin`` (a fraction of each side) away from its faces."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.tensor(LATENT_LOW, dtype=torch.float64)
    high = torch.tensor(LATENT_HIGH, dtype=torch.float64)
    u = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    return low + (high - low) * (margin + (1 - 2 * margin) * u)


class LookupEncoder(nn.Module):
    """Returns the stored latent of the nearest stored image (an exact inverse on those images)."""

    def __init__(self, images, latents) -> None:
        super().__init__()
        self.register_buffer("images", images.reshape(len(images), -1))
        self.register_buffer("latents", latents)

    def forward(self, x):
        idx = torch.cdist(x.reshape(len(x), -1).to(self.images), self.images).argmin(1)
        return self.latents[idx]


def point_mass_denoiser(points):
    """Exact optimal denoiser D(x, sigma) = E[x0 | x] for data uniform on the given points."""
    flat = points.reshape(len(points), -1)
    sq = flat.square().sum(1)

    def denoise(x, sigma):
        xf = x.reshape(x.shape[0], -1)
        weights = torch.softmax((2 * xf @ flat.T - sq) / (2 * sigma**2), dim=1)
        return (weights @ flat).reshape(x.shape)

    return denoise
