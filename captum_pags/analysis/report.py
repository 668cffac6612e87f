"""Write a sweep's results as JSON, CSV, PNG figures and one self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from .._kernel._io import atomic_write

__all__ = ["write_report"]

_COLUMNS = [
    ("method", "method"),
    ("strength", "strength"),
    ("seed", "seed"),
    ("accuracy", "accuracy"),
    ("alignment_bayes", "align. (log-softmax grad vs Bayes score)"),
    ("alignment_conditional", "align. (logit grad vs cond. score)"),
    ("tangent_alignment", "tangent align."),
    ("robustness_on", "on-manifold change"),
    ("robustness_off", "off-manifold change"),
    ("relative_robustness", "off/on robustness"),
    ("regime", "regime"),
]


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The fixed columns, plus alignment and robustness under any further tangent space (``*_<name>``)."""
    columns = list(_COLUMNS)
    for key in rows[0]:
        for prefix, label in (("tangent_alignment_", "tangent align."), ("relative_robustness_", "off/on robustness")):
            if key.startswith(prefix) and isinstance(rows[0][key], (int, float)):
                columns.insert(-1, (key, f"{label} ({key[len(prefix) :]})"))
    return columns


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _x_positions(strengths: Sequence[float]) -> list[float]:
    """Plot strengths on a log axis; 0 sits one decade below the smallest positive strength."""
    positive = [s for s in strengths if s > 0]
    floor = min(positive) / 10 if positive else 1.0
    return [s if s > 0 else floor for s in strengths]


def _by_method(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(str(r["method"]), []).append(r)
    for m in out:
        out[m].sort(key=lambda r: float(r["strength"]))
    return out


def _mean_by_strength(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    groups: dict[float, list[float]] = {}
    for r in rows:
        groups.setdefault(float(r["strength"]), []).append(float(r[key]))
    xs = sorted(groups)
    return xs, [sum(groups[x]) / len(groups[x]) for x in xs]


def _figure_curves(
    rows: Sequence[Mapping[str, Any]],
    path: Path,
    curves: Sequence[tuple[str, str, str]],
    *,
    ylabel: str,
    log_y: bool,
) -> None:
    """One panel per method: the mean of each ``(key, label, style)`` curve against strength."""
    import matplotlib.pyplot as plt

    methods = _by_method(rows)
    # one legend row under several panels; one entry per row under a single panel, so it fits
    ncol = len(curves) if len(methods) > 1 else 1
    legend_height = 0.25 * (1 if ncol > 1 else len(curves))
    height = 4.0 + legend_height
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), height), squeeze=False)
    for ax, (method, mrows) in zip(axes[0], methods.items()):
        for key, label, style in curves:
            xs, ys = _mean_by_strength(mrows, key)
            ax.plot(_x_positions(xs), ys, style, label=label)
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(f"{method} strength (0 drawn at the left end)")
        ax.set_ylabel(ylabel)
        ax.set_title(method)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, (legend_height + 0.1) / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _figure_alignment(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    curves = [
        ("alignment_bayes", "alignment: log-softmax grad vs Bayes score", "o-"),
        ("alignment_conditional", "alignment: logit grad vs cond. score", "s--"),
        ("accuracy", "test accuracy", "k^-"),
    ]
    _figure_curves(rows, path, curves, ylabel="cosine similarity / accuracy", log_y=False)


def _figure_robustness(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    curves = [
        ("robustness_on", "on-manifold output change", "o-"),
        ("robustness_off", "off-manifold output change", "s-"),
    ]
    _figure_curves(rows, path, curves, ylabel="softmax L1 change (lower = more robust)", log_y=True)


def _figure_maps(images: Tensor, maps: Mapping[str, Tensor], path: Path) -> None:
    from ..viz import attribution_grid

    rows = [images, *maps.values()]
    titles = ["input", *maps.keys()]
    fig = attribution_grid(rows, titles, scale=1.3)
    for ax in fig.axes[: images.shape[0]]:
        ax.images[0].set_cmap("gray")
        ax.images[0].set_clim(0.0, 1.0)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def write_report(
    out_dir: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    config: Mapping[str, Any] | None = None,
    images: Tensor | None = None,
    maps: Mapping[str, Tensor] | None = None,
    title: str = "captum_pags report",
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv``, PNG figures and a self-contained ``report.html``.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created if needed). Files are written atomically.
    rows : sequence of mapping
        One mapping per model with the keys ``method``, ``strength``, ``seed``, ``accuracy``,
        ``alignment_bayes``, ``alignment_conditional``, ``tangent_alignment``, ``robustness_on``,
        ``robustness_off``, ``relative_robustness`` and ``regime``; extra keys go to the JSON.
    config : mapping, optional
        The settings that produced the results (stored in the JSON and shown in the page).
    images : Tensor, optional
        ``(n, C, H, W)`` example inputs for the map grid.
    maps : mapping of str to Tensor, optional
        Named ``(n, C, H, W)`` maps (gradients, scores) drawn under ``images``.
    title : str
        Page title.
    notes : sequence of str
        Sentences shown above the table (e.g. the regime rule).

    Returns
    -------
    dict of str to Path
        The files written, by kind.

    Examples
    --------
    >>> import tempfile
    >>> row = dict(method="noise", strength=0.0, seed=0, accuracy=0.9, alignment_bayes=0.2,
    ...            alignment_conditional=0.1, tangent_alignment=0.5, robustness_on=0.1,
    ...            robustness_off=0.05, relative_robustness=2.0, regime="weak")
    >>> files = write_report(tempfile.mkdtemp(), [row])
    >>> sorted(files)
    ['alignment', 'csv', 'html', 'json', 'robustness']
    """
    if not rows:
        raise ValueError("Expected `rows` to hold at least one result but got none")
    missing = [k for k, _ in _COLUMNS if k not in rows[0]]
    if missing:
        raise ValueError(f"Expected every entry of `rows` to have the keys {missing}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    payload = {"title": title, "config": dict(config or {}), "results": [dict(r) for r in rows], "notes": list(notes)}
    files["json"] = out / "results.json"
    atomic_write(files["json"], json.dumps(_json_safe(payload), indent=2).encode())

    files["csv"] = out / "results.csv"
    table = io.StringIO()
    writer = csv.writer(table)
    columns = _columns(rows)
    writer.writerow([k for k, _ in columns])
    for r in rows:
        writer.writerow([r.get(k, "") for k, _ in columns])
    atomic_write(files["csv"], table.getvalue().encode())

    files["alignment"] = out / "alignment_accuracy.png"
    _figure_alignment(rows, files["alignment"])
    files["robustness"] = out / "robustness.png"
    _figure_robustness(rows, files["robustness"])
    if images is not None and maps:
        files["maps"] = out / "gradient_maps.png"
        _figure_maps(images, maps, files["maps"])

    files["html"] = out / "report.html"
    atomic_write(files["html"], _html(title, rows, config or {}, notes, files).encode())
    return files


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    alt = html.escape(alt)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'


def _html(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    notes: Sequence[str],
    files: Mapping[str, Path],
) -> str:
    columns = _columns(rows)
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k, '')))}</td>" for k, _ in columns) + "</tr>" for r in rows
    )
    figures = []
    captions = {
        "alignment": "Perceptual alignment and accuracy against regularisation strength",
        "robustness": "On- and off-manifold robustness against regularisation strength",
        "maps": "Input gradients next to score maps",
    }
    for key, caption in captions.items():
        if key in files:
            figures.append(_img_tag(files[key], caption))
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    cfg = html.escape(json.dumps(_json_safe(dict(config)), indent=2))
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%}pre{background:#f7f7f7;padding:1em}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{notes_html}"
        f"<h2>Results</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<h2>Figures</h2>{''.join(figures)}<h2>Settings</h2><pre>{cfg}</pre></body></html>"
    )
