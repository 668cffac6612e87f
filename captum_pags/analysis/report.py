"""Write a sweep's results as JSON, CSV, PNG figures and one self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import functools
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
from .angles import angles_table, figure_angles
from .figures import figure_curves, figure_maps

__all__ = ["write_report"]

_COLUMNS = [
    ("method", "method"),
    ("strength", "strength"),
    ("seed", "seed"),
    ("accuracy", "accuracy"),
    ("alignment_bayes", "align. (log-softmax grad vs Bayes score, cosine)"),
    ("alignment_conditional", "align. (logit grad vs cond. score, cosine)"),
    ("tangent_alignment", "tangent align."),
    ("robustness_on", "on-manifold change (first epsilon)"),
    ("robustness_off", "off-manifold change (first epsilon)"),
    ("relative_robustness", "on/off change ratio (first epsilon)"),
    ("regime", "regime"),
]
#: Grid-point summary columns (mean +- sd over seeds).
_SUMMARY = [
    ("accuracy", "accuracy"),
    ("alignment_bayes", "align. (log-softmax grad vs Bayes score, cosine)"),
    ("alignment_conditional", "align. (logit grad vs cond. score, cosine)"),
    ("tangent_alignment", "tangent align. (exact)"),
    ("tangent_alignment_decoder", "tangent align. (decoder)"),
    ("relative_robustness", "on/off change ratio (exact)"),
    ("relative_robustness_decoder", "on/off change ratio (decoder)"),
]


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The fixed columns, plus alignment and robustness under any further tangent space (``*_<name>``)."""
    columns = list(_COLUMNS)
    for key in rows[0]:
        for prefix, label in (
            ("tangent_alignment_", "tangent align."),
            ("relative_robustness_", "on/off change ratio"),
        ):
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


def _groups_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One group per row (a report of single models: no seeds to average)."""
    return [
        {
            "method": r["method"],
            "strength": float(r["strength"]),
            "seeds": [r.get("seed", 0)],
            "mean": dict(r),
            "sd": {k: 0.0 for k, v in r.items() if isinstance(v, (int, float))},
            "regime": r.get("regime", ""),
            "reason": r.get("regime_reason", ""),
            "collapsed": False,
        }
        for r in rows
    ]


def _figures(
    out: Path,
    groups: Sequence[Mapping[str, Any]],
    epsilons: Sequence[float],
    chance: Mapping[str, float],
    units: str = "ours",
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    plot = functools.partial(figure_curves, units=units)
    acc_chance = chance.get("accuracy")
    files["alignment"] = out / "alignment_accuracy.png"
    plot(
        groups,
        files["alignment"],
        [
            {"key": "alignment_bayes", "label": "alignment: log-softmax grad vs Bayes score (cosine)", "style": "o-"},
            {"key": "alignment_conditional", "label": "alignment: logit grad vs cond. score (cosine)", "style": "s--"},
            {"key": "accuracy", "label": "test accuracy", "style": "k^-"},
        ],
        ylabel="cosine similarity / accuracy",
        hlines=[(acc_chance, "chance accuracy", ":")] if acc_chance is not None else [],
        skip_collapsed=("alignment_bayes", "alignment_conditional"),
    )
    files["robustness"] = out / "robustness.png"
    curves = []
    for j, eps in enumerate(epsilons):
        curves.append(
            {
                "key": "robustness_on_curve",
                "index": j,
                "label": f"on-manifold, eps={eps:g}",
                "style": "o-",
                "color": f"C{j}",
            }
        )
        curves.append(
            {
                "key": "robustness_off_curve",
                "index": j,
                "label": f"off-manifold, eps={eps:g}",
                "style": "s--",
                "color": f"C{j}",
            }
        )
    plot(groups, files["robustness"], curves, ylabel="softmax L1 change (lower = more robust)", log_y=True)
    files["relative_robustness"] = out / "relative_robustness.png"
    rel = []
    has_decoder = any("robustness_on_curve_decoder" in g["mean"] for g in groups)
    for j, eps in enumerate(epsilons):
        rel.append(
            {
                "ratio": ("robustness_on_curve", "robustness_off_curve"),
                "index": j,
                "label": f"exact, eps={eps:g}",
                "style": "o-",
                "color": f"C{j}",
            }
        )
        if has_decoder:
            rel.append(
                {
                    "ratio": ("robustness_on_curve_decoder", "robustness_off_curve_decoder"),
                    "index": j,
                    "label": f"decoder, eps={eps:g}",
                    "style": "s--",
                    "color": f"C{j}",
                }
            )
    threshold = chance.get("min_relative_robustness")
    plot(
        groups,
        files["relative_robustness"],
        rel,
        ylabel="on/off change ratio (higher: more robust off)",
        log_y=True,
        hlines=[(threshold, "regime threshold", "--")] if threshold else [],
    )
    files["tangent"] = out / "tangent_alignment.png"
    tangent = [{"key": "tangent_alignment", "label": "tangent alignment (exact)", "style": "o-"}]
    hlines = []
    if "tangent_alignment" in chance:
        hlines.append((chance["tangent_alignment"], "random direction, exact: sqrt(k/D)", ":"))
    extra = sorted(
        {k[len("tangent_alignment_") :] for g in groups for k in g["mean"] if k.startswith("tangent_alignment_")}
    )
    for j, name in enumerate(extra, start=1):
        key = f"tangent_alignment_{name}"
        tangent.append({"key": key, "label": f"tangent alignment ({name})", "style": "s--", "color": f"C{j}"})
        if key in chance:
            hlines.append((chance[key], f"random direction, {name}: sqrt(k/D)", "-."))
    plot(groups, files["tangent"], tangent, ylabel="||P_T g|| / ||g||", hlines=hlines)
    return files


def write_report(
    out_dir: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    config: Mapping[str, Any] | None = None,
    groups: Sequence[Mapping[str, Any]] | None = None,
    references: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    missing: Sequence[str] = (),
    maps: Mapping[str, Any] | None = None,
    images: Tensor | None = None,
    chance: Mapping[str, float] | None = None,
    tangent_angles: Mapping[str, Mapping[str, float]] | None = None,
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
    groups : sequence of mapping, optional
        Per grid point: ``method``, ``strength``, ``seeds``, ``mean`` and ``sd`` dicts of the
        metrics, ``regime``, ``reason``, ``collapsed`` (default: one group per row).
    references : mapping, optional
        Per method, the regime reference (:class:`~captum_pags.metrics.RegimeReference` as a dict)
        that :func:`~captum_pags.metrics.place_model` reads back from ``results.json``.
    provenance : mapping, optional
        Versions, commit, device, date, wall time, models from the cache.
    missing : sequence of str
        Grid points without results (listed in the page and the JSON).
    maps : mapping, optional
        ``images`` ``(n, C, H, W)``, ``labels`` and ``panels`` (each ``label``, ``maps``
        ``(n, C, H, W)``, ``alignment``), or a plain mapping of name to maps drawn under ``images``.
    images : Tensor, optional
        Example inputs when ``maps`` is a plain mapping of name to maps.
    chance : mapping, optional
        Reference levels drawn in the figures: ``accuracy``, ``tangent_alignment[_<name>]``,
        ``min_relative_robustness``.
    tangent_angles : mapping, optional
        Per estimated tangent space, its principal angles to the exact one
        (:func:`~captum_pags.analysis.angles.tangent_angles`): a table and a figure.
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
    ['alignment', 'csv', 'html', 'json', 'relative_robustness', 'robustness', 'tangent']
    """
    if not rows:
        raise ValueError("Expected `rows` to hold at least one result but got none")
    missing_keys = [k for k, _ in _COLUMNS if k not in rows[0]]
    if missing_keys:
        raise ValueError(f"Expected every entry of `rows` to have the keys {missing_keys}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    groups = list(groups) if groups else _groups_from_rows(rows)
    if maps is not None and images is not None and "panels" not in maps:
        maps = {
            "images": images,
            "labels": [""] * images.shape[0],
            "panels": [{"label": k, "maps": v, "alignment": None} for k, v in maps.items()],
        }

    payload = {
        "title": title,
        "provenance": dict(provenance or {}),
        "config": dict(config or {}),
        "references": dict(references or {}),
        "summary": [{k: v for k, v in g.items()} for g in groups],
        "results": [dict(r) for r in rows],
        "missing": list(missing),
        "notes": list(notes),
        "tangent_angles": dict(tangent_angles or {}),
    }
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

    epsilons = (config or {}).get("epsilons") or [0.0] * len(rows[0].get("robustness_on_curve", [0]))
    units = str((config or {}).get("strength_units", "ours"))
    files.update(_figures(out, groups, list(epsilons), dict(chance or {}), units))
    if maps is not None and maps.get("panels"):
        files["maps"] = out / "gradient_maps.png"
        figure_maps(maps, files["maps"])
    if tangent_angles:
        files["angles"] = out / "tangent_angles.png"
        figure_angles(tangent_angles, files["angles"])

    files["html"] = out / "report.html"
    page = _html(title, rows, groups, config or {}, notes, files, provenance or {}, missing, tangent_angles or {})
    atomic_write(files["html"], page.encode())
    return files


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    alt = html.escape(alt)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'


def _pm(mean: Any, sd: Any) -> str:
    if not isinstance(mean, (int, float)):
        return ""
    if not isinstance(sd, (int, float)) or not math.isfinite(sd) or sd == 0:
        return _fmt(float(mean))
    return f"{_fmt(float(mean))} \u00b1 {_fmt(float(sd))}"


def _table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def _html(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    notes: Sequence[str],
    files: Mapping[str, Path],
    provenance: Mapping[str, Any],
    missing: Sequence[str],
    tangent_angles: Mapping[str, Mapping[str, float]],
) -> str:
    summary_cols = [(k, label) for k, label in _SUMMARY if any(k in g["mean"] for g in groups)]
    known = {k for k, _ in _SUMMARY}
    for key in sorted({k for g in groups for k in g["mean"] if k not in known}):
        for prefix, what in (("tangent_alignment_", "tangent align."), ("relative_robustness_", "on/off change ratio")):
            if key.startswith(prefix) and not key.endswith("_curve"):
                summary_cols.append((key, f"{what} ({key[len(prefix) :]})"))
    summary = _table(
        ["method", "strength", "seeds", *[label for _, label in summary_cols], "regime", "reason"],
        [
            [
                str(g["method"]),
                _fmt(float(g["strength"])),
                str(len(g["seeds"])),
                *[_pm(g["mean"].get(k), g["sd"].get(k)) for k, _ in summary_cols],
                str(g.get("regime", "")) + (" (collapsed)" if g.get("collapsed") else ""),
                str(g.get("reason", "")),
            ]
            for g in groups
        ],
    )
    columns = _columns(rows)
    per_model = _table([label for _, label in columns], [[_fmt(r.get(k, "")) for k, _ in columns] for r in rows])
    figures = []
    captions = {
        "alignment": "Perceptual alignment and accuracy against regularisation strength (mean +- sd over seeds; "
        "regimes shaded; collapsed models marked x, not drawn as alignment points)",
        "robustness": "On- and off-manifold output change against strength, for every epsilon",
        "relative_robustness": "Relative robustness (on/off change ratio) for the exact and estimated tangent spaces",
        "tangent": "Tangent alignment for the exact and estimated tangent spaces, with the random-direction level",
        "angles": "Principal angles of each estimated tangent space to the exact one (mean and max over the test "
        "images)",
        "maps": "Input gradients next to the Bayes score difference, labelled by method, strength and regime",
    }
    for key, caption in captions.items():
        if key in files:
            figures.append(_img_tag(files[key], caption))
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    missing_html = (
        f"<h2>Missing results ({len(missing)})</h2><p>{html.escape(', '.join(missing))}</p>" if missing else ""
    )
    prov = _table(
        ["", ""],
        [
            [str(k), _fmt(v) if not isinstance(v, list) else ", ".join(map(str, v)) or "none"]
            for k, v in provenance.items()
        ],
    )
    cfg = html.escape(json.dumps(_json_safe(dict(config)), indent=2))
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%}pre{background:#f7f7f7;padding:1em}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{notes_html}"
        f"<h2>Summary (mean \u00b1 sd over seeds)</h2>{summary}{missing_html}"
        + (
            f"<h2>Estimated tangent spaces vs the exact one</h2>{angles_table(tangent_angles)}"
            if tangent_angles
            else ""
        )
        + f"<h2>Figures</h2>{''.join(figures)}<h2>Every model</h2>{per_model}"
        f"<h2>Provenance</h2>{prov}<h2>Settings</h2><pre>{cfg}</pre></body></html>"
    )
