"""The sweep report's figures: curves against strength (mean +- sd over seeds), regimes shaded, gradient maps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["REGIME_COLOURS", "figure_curves", "figure_maps"]

#: Background colour of each regime in every figure.
REGIME_COLOURS = {
    "weak": "#fde3c8",
    "bayes_aligned": "#d6f0d6",
    "excessive": "#f6cdd2",
    "undetermined": "#e6e6e6",
}


def x_positions(strengths: Sequence[float]) -> list[float]:
    """Plot strengths on a log axis; 0 sits one decade below the smallest positive strength."""
    positive = [s for s in strengths if s > 0]
    floor = min(positive) / 10 if positive else 1.0
    return [s if s > 0 else floor for s in strengths]


def _by_method(groups: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for g in groups:
        out.setdefault(str(g["method"]), []).append(g)
    for m in out:
        out[m].sort(key=lambda g: float(g["strength"]))
    return out


def _shade(ax: Any, xs: Sequence[float], regimes: Sequence[str]) -> None:
    """Shade each strength's span (up to the geometric midpoints with its neighbours) by its regime."""
    if not xs:
        return
    logs = [math.log10(x) for x in xs]
    edges = [logs[0] - 0.5] + [(a + b) / 2 for a, b in itertools.pairwise(logs)] + [logs[-1] + 0.5]
    for i, regime in enumerate(regimes):
        ax.axvspan(10 ** edges[i], 10 ** edges[i + 1], color=REGIME_COLOURS.get(regime, "#eeeeee"), zorder=0, lw=0)
    ax.set_xlim(10 ** edges[0], 10 ** edges[-1])


def _value(g: Mapping[str, Any], key: str, stat: str, index: int | None) -> float:
    v = g[stat].get(key, math.nan)
    if index is not None:
        v = v[index] if isinstance(v, list) and len(v) > index else math.nan
    return float(v) if isinstance(v, (int, float)) else math.nan


def figure_curves(
    groups: Sequence[Mapping[str, Any]],
    path: Path,
    curves: Sequence[Mapping[str, Any]],
    *,
    ylabel: str,
    log_y: bool = False,
    hlines: Sequence[tuple[float, str, str]] = (),
    skip_collapsed: Sequence[str] = (),
    units: str = "ours",
) -> None:
    """One panel per method: each curve's mean over seeds against strength, with +- sd bands.

    Each curve is a mapping with ``key`` (a metric), ``label``, ``style`` and optionally
    ``index`` (an entry of a per-epsilon list) or ``ratio`` (``(num_key, den_key)``: the ratio of
    two means). Regimes are shaded behind every panel; ``hlines`` are ``(y, label, style)``
    reference levels (chance, thresholds); curves whose key is in ``skip_collapsed`` leave out
    collapsed models, which are marked by an ``x`` on the axis instead.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    methods = _by_method(groups)
    n_legend = len(curves) + len(hlines) + len(REGIME_COLOURS)
    ncol = min(4, n_legend)
    legend_height = 0.22 * math.ceil(n_legend / ncol)
    height = 3.8 + legend_height
    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), height), squeeze=False)
    for ax, (method, mg) in zip(axes[0], methods.items()):
        positive = False
        xs = x_positions([float(g["strength"]) for g in mg])
        _shade(ax, xs, [str(g.get("regime", "undetermined")) for g in mg])
        for curve in curves:
            idx = curve.get("index")
            if "ratio" in curve:
                num, den = curve["ratio"]
                ys = [_value(g, num, "mean", idx) / _value(g, den, "mean", idx) for g in mg]
                sds = [0.0] * len(mg)
            else:
                ys = [_value(g, curve["key"], "mean", idx) for g in mg]
                sds = [_value(g, curve["key"], "sd", idx) for g in mg]
            keep = [not (curve.get("key") in skip_collapsed and g.get("collapsed")) for g in mg]
            px = [x for x, k in zip(xs, keep) if k]
            py = [y for y, k in zip(ys, keep) if k]
            ps = [0.0 if math.isnan(s) else s for s, k in zip(sds, keep) if k]
            positive = positive or any(y > 0 and math.isfinite(y) for y in py)
            colour = {"color": curve["color"]} if "color" in curve else {}
            (line,) = ax.plot(px, py, curve["style"], label=curve["label"], ms=4, **colour)
            lo = [y - s for y, s in zip(py, ps)]
            hi = [y + s for y, s in zip(py, ps)]
            if log_y:
                lo = [max(v, y * 0.05) if y > 0 else v for v, y in zip(lo, py)]
            ax.fill_between(px, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
            gone = [x for x, k in zip(xs, keep) if not k]
            if gone:
                ax.plot(gone, [0.0] * len(gone), "x", color=line.get_color(), ms=7, clip_on=False)
        for y, label, style in hlines:
            ax.axhline(y, ls=style, color="0.35", lw=1, label=label)
        ax.set_xscale("log")
        if log_y and positive:  # nothing to draw on a log axis otherwise
            ax.set_yscale("log")
        unit = " in the paper's units" if units == "paper" else ""
        ax.set_xlabel(f"{method} strength{unit} (0 drawn at the left end)")
        ax.set_ylabel(ylabel)
        ax.set_title(method)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for regime, colour in REGIME_COLOURS.items():
        handles.append(Patch(color=colour))
        labels.append(f"regime: {regime}")
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, (legend_height + 0.1) / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_maps(maps: Mapping[str, Any], path: Path) -> None:
    """Inputs (with their target class), then one row per map: the Bayes score difference and gradients.

    Every panel is scaled by its own largest absolute value (one shared colour bar from -1 to 1),
    titled with its cosine alignment with the Bayes score difference; each row is labelled with
    its method, strength and regime.
    """
    import matplotlib.pyplot as plt

    images, labels, panels = maps["images"], maps["labels"], maps["panels"]
    n = images.shape[0]
    rows = 1 + len(panels)
    fig, axes = plt.subplots(rows, n, figsize=(1.35 * n + 1.6, 1.45 * rows), squeeze=False)
    mappable = None
    for j in range(n):
        ax = axes[0][j]
        ax.imshow(images[j].mean(0).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(f"target {labels[j]}", fontsize=8)
    axes[0][0].set_ylabel("input", fontsize=8, rotation=0, ha="right", va="center")
    for i, panel in enumerate(panels, start=1):
        grid = panel["maps"].double().mean(1)
        peak = grid.flatten(1).abs().amax(1).clamp_min(torch.finfo(torch.float64).tiny)
        grid = (grid / peak[:, None, None]).numpy()
        for j in range(n):
            ax = axes[i][j]
            mappable = ax.imshow(grid[j], cmap="RdBu_r", vmin=-1.0, vmax=1.0)
            if panel.get("alignment") is not None:
                ax.set_title(f"cos {panel['alignment'][j]:.2f}", fontsize=7)
        axes[i][0].set_ylabel(panel["label"], fontsize=7, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0.02, 0, 0.9, 1))
    if mappable is not None:
        cax = fig.add_axes((0.92, 0.15, 0.015, 0.7))
        fig.colorbar(mappable, cax=cax, label="map / its max |value|")
    fig.savefig(path, dpi=110)
    plt.close(fig)
