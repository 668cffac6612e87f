"""Plotting helpers: attribution maps in the form Captum's visualisation expects, and grids."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ._kernel._validation import check_tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["attribution_grid", "to_captum_image", "visualize_attribution"]


def to_captum_image(attributions: Tensor) -> np.ndarray:
    """Turn ``(C, H, W)`` or ``(N, C, H, W)`` tensors into ``(H, W, C)`` / ``(N, H, W, C)`` NumPy arrays.

    This is the channel-last layout :func:`captum.attr.visualization.visualize_image_attr` expects.
    The tensor is detached and moved to the CPU; float64 is kept, other dtypes become float32.

    Examples
    --------
    >>> to_captum_image(torch.zeros(2, 1, 4, 5)).shape
    (2, 4, 5, 1)
    """
    check_tensor("attributions", attributions)
    if attributions.dim() not in (3, 4):
        raise ValueError(
            f"Expected `attributions` to have shape (C, H, W) or (N, C, H, W) but got {tuple(attributions.shape)}"
        )
    a = attributions.detach().cpu()
    a = a if a.dtype == torch.float64 else a.float()
    return a.movedim(-3, -1).numpy()


def visualize_attribution(
    attribution: Tensor,
    image: Tensor | None = None,
    method: str = "heat_map",
    sign: str = "all",
    **kwargs: Any,
) -> tuple[Figure, Any]:
    """Call :func:`captum.attr.visualization.visualize_image_attr` on one ``(C, H, W)`` map.

    An all-zero map cannot be normalised; instead of Captum's warning and an empty colour scale it
    is drawn as a blank map with a note in the title, so grids of many maps never crash.

    Parameters
    ----------
    attribution : Tensor
        ``(C, H, W)`` attribution map.
    image : Tensor, optional
        ``(C, H, W)`` original image, needed by methods such as ``"blended_heat_map"``.
    method, sign : str
        As in Captum's ``visualize_image_attr``.
    **kwargs
        Passed to Captum (e.g. ``plt_fig_axis``, ``title``, ``use_pyplot``).

    Returns
    -------
    (Figure, Axes)
        Captum's return value.

    Examples
    --------
    >>> fig, ax = visualize_attribution(torch.zeros(1, 4, 4), use_pyplot=False)
    >>> ax.get_title()
    '(all zero)'
    """
    from captum.attr import visualization as viz

    attr_np = to_captum_image(attribution)
    img_np = None if image is None else to_captum_image(image)
    if not np.any(attr_np):
        kwargs["title"] = f"{kwargs.get('title') or ''} (all zero)".strip()
        method = "original_image" if img_np is not None and method != "heat_map" else method
        # a tiny constant keeps Captum's normalisation finite; the map still shows as blank
        attr_np = np.full_like(attr_np, np.finfo(np.float32).tiny)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Attempting to normalize by value approximately 0")
        return viz.visualize_image_attr(attr_np, img_np, method=method, sign=sign, **kwargs)


def attribution_grid(
    rows: Sequence[Tensor],
    row_titles: Sequence[str] | None = None,
    cmap: str = "RdBu_r",
    symmetric: bool = True,
    scale: float = 1.6,
) -> Figure:
    """Draw several ``(N, C, H, W)`` batches of maps as rows of a grid (one column per example).

    Each map is normalised by its own largest absolute value (a symmetric colour scale for signed
    maps, as in the paper's figures). All-zero maps are drawn blank, without a division by zero.

    Parameters
    ----------
    rows : sequence of Tensor
        Batches with the same ``N``; channels are averaged for display.
    row_titles : sequence of str, optional
        One title per row.
    cmap : str
        Matplotlib colour map.
    symmetric : bool
        Colour range ``[-1, 1]`` (signed maps) instead of ``[0, 1]``.
    scale : float
        Size of one cell in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = attribution_grid([torch.randn(3, 1, 8, 8), torch.zeros(3, 1, 8, 8)], ["grad", "zero"])
    >>> len(fig.axes)
    6
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("Expected `rows` to hold at least one batch of maps but got none")
    n = rows[0].shape[0]
    for r in rows:
        check_tensor("rows", r)
        if r.dim() != 4 or r.shape[0] != n:
            raise ValueError(f"Expected every entry of `rows` to have shape ({n}, C, H, W) but got {tuple(r.shape)}")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"Expected `row_titles` to have {len(rows)} entries but got {len(row_titles)}")
    fig, axes = plt.subplots(len(rows), n, figsize=(scale * n, scale * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        maps = r.detach().cpu().double().mean(1)
        peak = maps.flatten(1).abs().amax(1).clamp_min(torch.finfo(torch.float64).tiny)
        maps = (maps / peak[:, None, None]).numpy()
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(maps[j], cmap=cmap, vmin=-1.0 if symmetric else 0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i], fontsize=8)
    fig.tight_layout()
    return fig
