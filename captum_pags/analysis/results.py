"""What a sweep returns: one row per model, grid-point summaries, and a console table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SweepConfig

__all__ = ["ModelResult", "SweepResult"]

#: A model within this many accuracy points of chance is flagged as collapsed.
COLLAPSE_MARGIN = 0.05
NUM_CLASSES = 10
#: Columns of the console summary (whole names, as in the JSON and CSV).
SUMMARY_KEYS = ("accuracy", "alignment_bayes", "alignment_conditional", "tangent_alignment", "relative_robustness")


@dataclass
class ModelResult:
    """Measurements of one trained model (one row of the report).

    Examples
    --------
    >>> r = ModelResult("noise", 0.1, 0, {"accuracy": 0.9}, regime="weak")
    >>> r.row()["accuracy"], r.row()["regime"]
    (0.9, 'weak')
    """

    method: str
    strength: float
    seed: int
    metrics: dict[str, Any]
    regime: str = ""
    train_seconds: float = math.nan
    from_cache: bool = False
    model: str = ""

    def row(self) -> dict[str, Any]:
        """Flat dict for tables and JSON."""
        return {
            "method": self.method,
            "strength": self.strength,
            "seed": self.seed,
            **self.metrics,
            "regime": self.regime,
            "train_seconds": self.train_seconds,
            "from_cache": self.from_cache,
            "model": self.model,
        }


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: the config, one :class:`ModelResult` per model, the report files.

    Attributes
    ----------
    groups : list of dict
        One entry per ``(method, strength)``: ``mean`` and ``sd`` of every metric over seeds, the
        ``regime`` decided on the means, its ``reason`` and ``collapsed``.
    missing : list of str
        Grid points without a result file (a shard not yet run).

    Examples
    --------
    >>> res = SweepResult(SweepConfig.quick(), [ModelResult("noise", 0.0, 0, {"accuracy": 0.9})])
    >>> "noise" in res.summary()
    True
    """

    config: SweepConfig
    results: list[ModelResult]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = math.nan
    groups: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per model."""
        return [r.row() for r in self.results]

    def summary(self) -> str:
        """A plain-text table of the main figures (means over seeds when there are several)."""
        widths = [max(len(k), 10) for k in SUMMARY_KEYS]
        head = f"{'method':<14}{'strength':>9}{'seeds':>6}  " + "  ".join(
            f"{k:>{w}}" for k, w in zip(SUMMARY_KEYS, widths)
        )
        lines = [head + "  regime"]
        groups = self.groups or [
            {"method": r.method, "strength": r.strength, "seeds": [r.seed], "mean": r.metrics, "regime": r.regime}
            for r in self.results
        ]
        for g in groups:
            vals = "  ".join(f"{float(g['mean'].get(k, math.nan)):>{w}.4f}" for k, w in zip(SUMMARY_KEYS, widths))
            flag = " (collapsed)" if g.get("collapsed") else ""
            lines.append(f"{g['method']:<14}{g['strength']:>9g}{len(g['seeds']):>6}  {vals}  {g['regime']}{flag}")
        cached = sum(r.from_cache for r in {r.model: r for r in self.results}.values())
        models = len({r.model for r in self.results})
        lines.append(f"{models} models, {cached} loaded from the cache ({self.config.out}/models)")
        if self.missing:
            lines.append(f"missing results ({len(self.missing)}): {', '.join(self.missing)}")
        if math.isfinite(self.seconds):
            lines.append(f"total time {self.seconds:.1f} s")
        return "\n".join(lines)
