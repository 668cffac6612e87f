"""Place a single model in a regime against a reference: a sweep's results or a reference accuracy."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from .regimes import RegimeDecision, RegimeReference, RegimeThresholds, _decide

__all__ = ["place_model"]


def place_model(
    metrics: Mapping[str, Any],
    reference: RegimeReference | str | os.PathLike[str] | Mapping[str, Any] | float | None,
    *,
    method: str | None = None,
    alignment_key: str = "alignment_bayes",
    thresholds: RegimeThresholds | None = None,
) -> RegimeDecision:
    """Place one model in a regime against a reference, with the same rule as a sweep.

    Parameters
    ----------
    metrics : mapping
        The model's measurements (what :func:`~captum_pags.analysis.measure_model` returns):
        ``accuracy``, ``relative_robustness``, and, to compare with an alignment peak,
        ``alignment_key`` and ``gradient_norm``.
    reference : RegimeReference, path, mapping, float or None
        A :class:`RegimeReference`; a sweep's ``results.json`` (path or loaded payload: its
        unregularised accuracy and alignment peak); a reference accuracy (the unregularised
        model's, a fraction); or ``None``, which leaves the regime undetermined.
    method : str, optional
        Which method's peak of a sweep's results to use (default: the highest peak).
    alignment_key : str
        The metric compared with the peak.
    thresholds : RegimeThresholds, optional
        The thresholds (default: the package's).

    Returns
    -------
    RegimeDecision

    Examples
    --------
    >>> m = {"accuracy": 0.7, "relative_robustness": 5.0, "alignment_bayes": 0.3, "gradient_norm": 1.0}
    >>> place_model(m, 0.9).regime
    'excessive'
    >>> place_model(m, None).regime
    'undetermined'
    """
    th = thresholds or RegimeThresholds()
    if reference is None:
        return RegimeDecision("undetermined", "no reference (a sweep's results or a reference accuracy) was given")
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = RegimeReference.from_accuracy(float(reference))
    elif not isinstance(reference, RegimeReference):
        reference = RegimeReference.from_results(reference, method)
    if not isinstance(metrics, Mapping):
        raise TypeError(f"Expected `metrics` to be a mapping of measurements but got {type(metrics).__name__}")

    def get(key: str) -> float | None:
        value = metrics.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"Expected `metrics[{key!r}]` to be a number but got {type(value).__name__}")
        return float(value)

    acc, ali, rel, gn = (get(k) for k in ("accuracy", alignment_key, "relative_robustness", "gradient_norm"))
    if acc is None:
        raise ValueError("Expected `metrics` to hold 'accuracy' but it has none")
    after: bool | None = None
    if reference.peak_gradient_norm is not None and gn is not None and not math.isnan(gn):
        after = gn < reference.peak_gradient_norm
    return _decide(acc, ali, rel, after, reference, th)
