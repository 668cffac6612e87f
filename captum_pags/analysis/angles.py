"""Principal angles of the estimated tangent spaces to the exact one: the report's table and figure."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["angles_table", "figure_angles", "tangent_angles"]

_HEAD = ["estimator", "k", "mean angle (deg)", "mean of the largest angle (deg)", "max of the largest angle (deg)"]


def tangent_angles(estimators: Mapping[str, Any], exact: Any, images: Any) -> dict[str, dict[str, float]]:
    r"""Principal angles (degrees) of each estimator to ``exact`` over ``images``: mean, mean and max of the largest.

    A thin wrapper of :func:`~captum_pags.datasets.compare_tangents` that returns ``{}`` without an
    exact space or estimators. For image :math:`x_n` with angles
    :math:`\theta_1 \le \dots \le \theta_m`: ``mean`` is :math:`\frac{1}{Nm}\sum_{n,i}\theta_i(x_n)`,
    ``max_mean`` is :math:`\frac1N\sum_n \theta_m(x_n)` and ``max_max`` is :math:`\max_n \theta_m(x_n)`.

    Examples
    --------
    >>> import torch
    >>> from captum_pags.manifold import LinearSubspace
    >>> exact = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
    >>> est = {"tilted": LinearSubspace(torch.tensor([[1.0, 1.0, 0.0]]))}
    >>> round(tangent_angles(est, exact, torch.zeros(3, 3))["tilted"]["max_max"], 6)
    45.0
    """
    if exact is None or not estimators:
        return {}
    from ..datasets import compare_tangents

    return compare_tangents(dict(estimators), exact, images)


def angles_table(angles: Mapping[str, Mapping[str, float]]) -> str:
    """The HTML table of :func:`tangent_angles` (empty string without angles).

    Examples
    --------
    >>> angles_table({"pca": {"dim": 2, "mean": 10.0, "max_mean": 20.0, "max_max": 30.0}}).count("<td>")
    5
    """
    if not angles:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEAD)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(v)}</td>"
            for v in (name, str(a["dim"]), f"{a['mean']:.1f}", f"{a['max_mean']:.1f}", f"{a['max_max']:.1f}")
        )
        + "</tr>"
        for name, a in angles.items()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def figure_angles(angles: Mapping[str, Mapping[str, float]], path: Path) -> None:
    """Bars of each estimator's mean principal angle and its largest angle (mean and max over the images)."""
    import matplotlib.pyplot as plt

    names = list(angles)
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 3.2))
    width = 0.27
    for j, (key, label) in enumerate(
        (("mean", "mean angle"), ("max_mean", "largest angle, mean over images"), ("max_max", "largest angle, max"))
    ):
        ax.bar([x + (j - 1) * width for x in xs], [angles[n][key] for n in names], width, label=label, color=f"C{j}")
    ax.axhline(90.0, color="gray", ls=":", lw=1, label="unrelated (90 deg)")
    ax.set_xticks(list(xs), [f"{n} (k={angles[n]['dim']})" for n in names])
    ax.set_ylabel("principal angle to the exact space (deg)")
    ax.set_ylim(0, 95)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
