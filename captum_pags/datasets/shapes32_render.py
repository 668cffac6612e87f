"""The ``shapes32`` renderer: smooth colour images of five shape kinds from seven continuous factors."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._kernel._validation import check_tensor

__all__ = [
    "SHAPES32_CLASSES",
    "SHAPES32_FACTORS",
    "SHAPES32_FACTOR_RANGES",
    "SHAPES32_SHAPE",
    "render_shapes32",
]

#: Per-example shape of ``shapes32`` images.
SHAPES32_SHAPE = (3, 32, 32)
#: Shape kind of each label.
SHAPES32_CLASSES = ("ellipse", "square", "triangle", "plus", "ring")
#: Name of each factor (column of ``factors``), in pixels, radians or [0, 1] units.
SHAPES32_FACTORS = ("x", "y", "size", "rotation", "hue", "intensity", "background")
_RANGES = (
    (12.0, 20.0),  # x: centre column, pixels
    (12.0, 20.0),  # y: centre row, pixels
    (5.5, 8.5),  # size: pixels (a square's corner reaches 1.13 * size from its centre)
    (-math.pi, math.pi),  # rotation: radians
    (0.0, 1.0),  # hue: turns of the colour wheel
    (0.6, 1.0),  # intensity of the shape's colour
    (0.0, 0.35),  # background grey level
)
#: ``(F, 2)`` sampling range ``[low, high]`` of each factor; shapes stay inside the image (a copy:
#: changing it does not change the splits).
SHAPES32_FACTOR_RANGES = torch.tensor(_RANGES, dtype=torch.float64)

_SIZE = 32
_EDGE = 0.5  # softness of the edges (pixels): alpha = sigmoid(-sd / _EDGE)
_ROUND = 0.5  # temperature (pixels) of the smooth max/min that rounds corners and unions
_ELLIPSE = (1.0, 0.6)  # semi-axes of the ellipse, in units of size
_RING = (0.85, 0.6, 0.2)  # semi-axes of the ring's centre line and half its thickness


def _smooth_max(values: Tensor, temperature: float) -> Tensor:
    # C-infinity stand-in for max over the last dim; exceeds it by at most T log(n)
    return temperature * torch.logsumexp(values / temperature, dim=-1)


def _ellipse_distance(u: Tensor, v: Tensor, a: Tensor, b: Tensor) -> Tensor:
    # first-order signed distance (rho - 1) / |grad rho| to the ellipse (u/a)^2 + (v/b)^2 = 1;
    # exact on the boundary, smooth everywhere but the centre (the eps keeps that finite)
    gu, gv = u / a**2, v / b**2
    rho = torch.sqrt((u / a) ** 2 + (v / b) ** 2 + 1e-12)
    return (rho - 1.0) * rho / torch.sqrt(gu**2 + gv**2 + 1e-12)


def _polygon_distance(u: Tensor, v: Tensor, angles: Tensor, offset: Tensor) -> Tensor:
    # smooth max over the half-planes n_i . p <= offset of a convex polygon
    planes = u.unsqueeze(-1) * torch.cos(angles) + v.unsqueeze(-1) * torch.sin(angles) - offset.unsqueeze(-1)
    return _smooth_max(planes, _ROUND)


def _ellipse(u: Tensor, v: Tensor, size: Tensor) -> Tensor:
    return _ellipse_distance(u, v, _ELLIPSE[0] * size, _ELLIPSE[1] * size)


def _square(u: Tensor, v: Tensor, size: Tensor) -> Tensor:
    normals = torch.arange(4, dtype=u.dtype, device=u.device) * (math.pi / 2)
    return _polygon_distance(u, v, normals, 0.8 * size)


def _triangle(u: Tensor, v: Tensor, size: Tensor) -> Tensor:
    normals = math.pi / 2 + torch.arange(3, dtype=u.dtype, device=u.device) * (2 * math.pi / 3)
    return _polygon_distance(u, v, normals, 0.55 * size)


def _plus(u: Tensor, v: Tensor, size: Tensor) -> Tensor:
    # the smooth union (smooth min) of a horizontal and a vertical bar
    long, half = 1.0 * size, 0.3 * size
    bar_h = _smooth_max(torch.stack([u - long, -u - long, v - half, -v - half], -1), _ROUND)
    bar_v = _smooth_max(torch.stack([u - half, -u - half, v - long, -v - long], -1), _ROUND)
    return -_smooth_max(torch.stack([-bar_h, -bar_v], -1), _ROUND)


def _ring(u: Tensor, v: Tensor, size: Tensor) -> Tensor:
    # a band around an ellipse (a smooth |.| keeps the band's centre line smooth)
    centre = _ellipse_distance(u, v, _RING[0] * size, _RING[1] * size)
    return torch.sqrt(centre**2 + _ROUND**2) - _RING[2] * size


#: Signed distance (pixels, negative inside) of each shape kind, in the order of SHAPES32_CLASSES.
_SHAPES = (_ellipse, _square, _triangle, _plus, _ring)


def _signed_distance(u: Tensor, v: Tensor, size: Tensor, labels: Tensor) -> Tensor:
    """``(N, 32, 32)`` signed distance of each image's own shape: each kind evaluated on its images only."""
    labels = labels.to("cpu")
    order, parts = [], []
    for kind, shape in enumerate(_SHAPES):
        index = torch.nonzero(labels == kind).flatten()
        if index.numel():
            where = index.to(u.device)
            order.append(index)
            parts.append(shape(u[where], v[where], size[where]))
    inverse = torch.argsort(torch.cat(order)).to(u.device)
    return torch.cat(parts)[inverse]


def _hue_wheel(hue: Tensor) -> Tensor:
    # a smooth colour wheel: RGB = 1/2 + 1/2 cos(2 pi (hue - c / 3)), never grey
    phase = torch.arange(3, dtype=hue.dtype, device=hue.device) / 3
    return 0.5 + 0.5 * torch.cos(2 * math.pi * (hue.unsqueeze(-1) - phase))


def render_shapes32(factors: Tensor, labels: Tensor) -> Tensor:
    r"""Render ``shapes32`` images from their factors: a smooth, deterministic, differentiable map.

    Each image is a shape of kind ``labels`` (:data:`SHAPES32_CLASSES`) with centre
    :math:`c = (x, y)`, size :math:`r` and rotation :math:`\theta`, coloured
    :math:`f = v\,w(h)` on a grey background :math:`b`:

    .. math::

        I_{k}(p) = b + \alpha(p)\,\big(v\,w_k(h) - b\big), \qquad
        \alpha(p) = \operatorname{sigmoid}\!\big(-d_y(R_{-\theta}(p - c); r) / s\big),

    with :math:`w_k(h) = \tfrac12 + \tfrac12\cos 2\pi(h - k/3)` (channel :math:`k`) a smooth colour wheel,
    :math:`d_y` the (smoothed) signed distance of shape :math:`y` in pixels and an edge softness
    :math:`s = 0.5` pixel. Corners and unions use a log-sum-exp smooth maximum, so every pixel
    is a :math:`C^\infty` function of the factors and the images lie on a curved 7-dimensional
    manifold per class (:func:`~captum_pags.datasets.shapes32_tangent` gives its tangent space).
    Values are in [0, 1] for factors in :data:`SHAPES32_FACTOR_RANGES`.

    Parameters
    ----------
    factors : Tensor
        ``(N, 7)`` floating factors, columns :data:`SHAPES32_FACTORS` (x, y: pixel coordinates of
        the centre; size: pixels; rotation: radians; hue: turns; intensity, background: [0, 1]).
    labels : Tensor
        ``(N,)`` integer shape kinds in 0..4.

    Returns
    -------
    Tensor
        ``(N, 3, 32, 32)`` images in the dtype and on the device of ``factors``.

    Examples
    --------
    >>> factors = torch.tensor([[16.0, 16.0, 7.0, 0.0, 0.0, 1.0, 0.1]])
    >>> image = render_shapes32(factors, torch.tensor([1]))
    >>> image.shape, round(float(image[0, 0, 16, 16]), 3), round(float(image[0, 0, 0, 0]), 3)
    (torch.Size([1, 3, 32, 32]), 1.0, 0.1)
    """
    check_factors_labels(factors, labels)
    return _render(factors, labels)


def check_factors_labels(factors: Tensor, labels: Tensor) -> None:
    """Refuse what :func:`render_shapes32` cannot take (shape, dtype, non-finite, size <= 0, label range)."""
    check_tensor("factors", factors)
    check_tensor("labels", labels)
    if not factors.is_floating_point():
        raise TypeError(f"Expected `factors` to be a floating tensor but got dtype {factors.dtype}")
    if factors.dim() != 2 or factors.shape[1] != len(SHAPES32_FACTORS):
        raise ValueError(
            f"Expected `factors` to have shape (N, {len(SHAPES32_FACTORS)}) but got {tuple(factors.shape)}"
        )
    factors = factors.detach()
    if not bool(torch.isfinite(factors).all()):
        raise ValueError("Expected `factors` to be finite but got NaN or infinite values")
    if factors.shape[0] and float(factors[:, 2].min()) <= 0:
        raise ValueError(f"Expected the size `factors[:, 2]` to be > 0 but got {float(factors[:, 2].min())}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"Expected `labels` to be an integer tensor but got dtype {labels.dtype}")
    if labels.shape != factors.shape[:1]:
        raise ValueError(f"Expected `labels` to have shape ({factors.shape[0]},) but got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(SHAPES32_CLASSES)):
        raise ValueError(
            f"Expected `labels` in 0..{len(SHAPES32_CLASSES) - 1} but got values in "
            f"{int(labels.min())}..{int(labels.max())}"
        )


def _render(factors: Tensor, labels: Tensor) -> Tensor:
    # unchecked; its only branches depend on the labels, never on the factors, so torch.func can transform it
    coords = torch.arange(_SIZE, dtype=factors.dtype, device=factors.device) + 0.5
    x, y, size, rotation, hue, intensity, background = (factors[:, i, None, None] for i in range(7))
    dx, dy = coords.view(1, 1, _SIZE) - x, coords.view(1, _SIZE, 1) - y
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if factors.shape[0] == 0:
        return factors.new_zeros((0, *SHAPES32_SHAPE))
    distance = _signed_distance(u, v, size, labels)  # (N, 32, 32)
    alpha = torch.sigmoid(-distance / _EDGE).unsqueeze(1)  # (N, 1, 32, 32)
    colour = (intensity[:, :, 0] * _hue_wheel(hue[:, 0, 0]))[:, :, None, None]  # (N, 3, 1, 1)
    grey = background.unsqueeze(1)  # (N, 1, 1, 1)
    return grey + alpha * (colour - grey)
