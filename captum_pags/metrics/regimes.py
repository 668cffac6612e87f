r"""The robustness regime of a model: this package's operationalisation of the paper's three regimes.

Srinivas, Bordt & Lakkaraju (NeurIPS 2023) describe three regimes along growing robustness
regularisation: *weak* (too little off-manifold robustness; gradients not yet aligned),
*Bayes-aligned* (off-manifold robust, gradients close to the Bayes score difference) and
*excessive* (robust on the manifold too; alignment and accuracy fall). The paper gives no
thresholds; the rule below, with :class:`RegimeThresholds`, is this package's choice, written
once here. The report's prose is generated from it by :func:`regime_rule_text`.

One rule decides every model against a :class:`RegimeReference` (the unregularised accuracy, the
alignment peak and the gradient norm at that peak). A sweep builds its reference from its own
models (:func:`robustness_regime`); a single model is placed against a sweep's reference or a
reference accuracy (:func:`~captum_pags.metrics.place_model`). A NaN value never decides: the model is
``"undetermined"`` and the decision says why.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from .._kernel._validation import check_int, check_positive
from ._series import as_series as _as_series

__all__ = [
    "REGIMES",
    "UNDETERMINED",
    "RegimeDecision",
    "RegimeReference",
    "RegimeThresholds",
    "regime_decisions",
    "regime_rule_text",
    "robustness_regime",
    "sweep_reference",
]

Regime = Literal["weak", "bayes_aligned", "excessive", "undetermined"]
#: The three regimes of Srinivas et al. (NeurIPS 2023), in order of growing robustness.
REGIMES: tuple[str, ...] = ("weak", "bayes_aligned", "excessive")
#: What a model is called when a NaN value or a missing reference leaves its regime open.
UNDETERMINED = "undetermined"


@dataclass(frozen=True)
class RegimeThresholds:
    """The three thresholds of the regime rule (this package's choice, not the paper's).

    Attributes
    ----------
    max_accuracy_drop : float
        Largest tolerated accuracy drop below the reference accuracy (absolute, fractions).
    alignment_tolerance : float
        Relative distance below the alignment peak still counted as "at the peak".
    min_relative_robustness : float
        Smallest ``on / off`` change ratio of a model that is robust off the manifold.

    Examples
    --------
    >>> RegimeThresholds().min_relative_robustness
    2.0
    """

    max_accuracy_drop: float = 0.05
    alignment_tolerance: float = 0.1
    min_relative_robustness: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop", "alignment_tolerance", "min_relative_robustness"):
            check_positive(name, getattr(self, name), allow_zero=True)


@dataclass(frozen=True)
class RegimeDecision:
    """A model's regime and the reason the rule gives for it.

    Examples
    --------
    >>> RegimeDecision("undetermined", "its alignment is NaN").regime
    'undetermined'
    """

    regime: Regime
    reason: str


@dataclass(frozen=True)
class RegimeReference:
    """What a model is compared with: the unregularised accuracy and the alignment peak.

    Attributes
    ----------
    accuracy : float
        Accuracy of the unregularised (least regularised) model; NaN leaves every model undetermined.
    peak_alignment : float or None
        Highest alignment among the reference models that kept their accuracy; ``None`` when
        only an accuracy is known.
    peak_gradient_norm : float or None
        Mean input-gradient norm of the peak model: a model with a smaller norm is more
        regularised, i.e. *after* the peak.
    source : str
        Where the reference came from (shown in reports).

    Examples
    --------
    >>> RegimeReference.from_accuracy(0.9).peak_alignment is None
    True
    """

    accuracy: float
    peak_alignment: float | None = None
    peak_gradient_norm: float | None = None
    source: str = ""

    @classmethod
    def from_accuracy(cls, accuracy: float) -> RegimeReference:
        """A reference that knows only the unregularised model's accuracy."""
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)):
            raise TypeError(f"Expected `accuracy` to be a number but got {type(accuracy).__name__}")
        if not (math.isnan(accuracy) or 0.0 <= accuracy <= 1.0):
            raise ValueError(f"Expected `accuracy` to be a fraction in [0, 1] but got {accuracy}")
        return cls(float(accuracy), source=f"reference accuracy {accuracy:g}")

    @classmethod
    def from_results(
        cls, results: str | os.PathLike[str] | Mapping[str, Any], method: str | None = None
    ) -> RegimeReference:
        """The reference of a sweep, from its ``results.json`` (a path or the loaded payload).

        Uses the per-method references the sweep stored (``"references"``); ``method=None``
        takes the only method, or, with several, the one whose peak is highest.
        """
        source = ""
        if not isinstance(results, Mapping):
            path = Path(results)
            if not path.is_file():
                raise ValueError(f"Expected `results` to be a sweep's results.json but {str(path)!r} does not exist")
            try:
                results = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"Expected `results` to be a JSON file but {str(path)!r} is not: {err}") from None
            source = str(path)
        refs = results.get("references") if isinstance(results, Mapping) else None
        if not isinstance(refs, Mapping) or not refs:
            raise ValueError("Expected `results` to be a sweep's results (with 'references') but it has none")
        if method is None:
            method = max(refs, key=lambda m: _finite_or(refs[m].get("peak_alignment"), -math.inf))
        elif method not in refs:
            raise ValueError(f"Expected `method` to be one of {sorted(refs)} but got {method!r}")
        ref = refs[method]
        return cls(
            _nan_if_none(ref.get("accuracy")),
            None if ref.get("peak_alignment") is None else float(ref["peak_alignment"]),
            None if ref.get("peak_gradient_norm") is None else float(ref["peak_gradient_norm"]),
            source=f"{source or 'sweep results'} ({method})",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (NaN accuracy as ``None``)."""
        d = asdict(self)
        d["accuracy"] = None if math.isnan(self.accuracy) else self.accuracy
        return d


def _finite_or(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


def _decide(
    accuracy: float | None,
    alignment: float | None,
    relative: float | None,
    after_peak: bool | None,
    reference: RegimeReference,
    th: RegimeThresholds,
) -> RegimeDecision:
    """THE rule, for one model. ``after_peak`` is ``None`` when the position is unknown."""
    if accuracy is not None:
        if math.isnan(reference.accuracy):
            return RegimeDecision("undetermined", "the reference accuracy is NaN")
        if math.isnan(accuracy):
            return RegimeDecision("undetermined", "its accuracy is NaN")
        if accuracy < reference.accuracy - th.max_accuracy_drop:
            return RegimeDecision(
                "excessive",
                f"accuracy {accuracy:.4f} is more than {th.max_accuracy_drop:g} below the reference "
                f"{reference.accuracy:.4f}",
            )
    peak = reference.peak_alignment
    if alignment is not None and math.isnan(alignment):
        return RegimeDecision("undetermined", "its alignment is NaN")
    if peak is not None and alignment is not None:
        if alignment < peak - th.alignment_tolerance * abs(peak):
            if after_peak is None:
                return RegimeDecision("undetermined", "away from the alignment peak, on an unknown side of it")
            side = "after" if after_peak else "before"
            return RegimeDecision(
                "excessive" if after_peak else "weak",
                f"alignment {alignment:.4f} is more than {th.alignment_tolerance:.0%} below the peak {peak:.4f}, "
                f"{side} the peak",
            )
    if relative is not None:
        if math.isnan(relative):
            return RegimeDecision("undetermined", "its relative robustness is NaN")
        if relative < th.min_relative_robustness:
            if peak is not None and after_peak is None:
                return RegimeDecision("undetermined", "off/on robustness is low, on an unknown side of the peak")
            late = peak is not None and bool(after_peak)
            return RegimeDecision(
                "excessive" if late else "weak",
                f"on/off change ratio {relative:.3g} < {th.min_relative_robustness:g}"
                + (", after the alignment peak" if late else ""),
            )
    return RegimeDecision("bayes_aligned", "accuracy kept, near the alignment peak, robust off the manifold")


def _val(series: Tensor | None, i: int) -> float | None:
    return None if series is None else float(series[i])


def _peak(acc: Tensor | None, ali: Tensor | None, ref_acc: float, th: RegimeThresholds) -> int | None:
    """Index of the most aligned model among those the accuracy rule keeps (first of ties)."""
    if ali is None:
        return None
    base = RegimeReference(ref_acc)
    candidates = [
        i
        for i in range(int(ali.shape[0]))
        if not math.isnan(float(ali[i])) and _decide(_val(acc, i), None, None, None, base, th).regime == "bayes_aligned"
    ]
    return max(candidates, key=lambda i: (float(ali[i]), -i)) if candidates else None


def sweep_reference(
    accuracy: Sequence[float],
    alignment: Sequence[float],
    gradient_norm: Sequence[float] | None = None,
    *,
    thresholds: RegimeThresholds | None = None,
    source: str = "",
) -> RegimeReference:
    """The reference a sweep's models are placed against (series sorted by growing strength).

    The reference accuracy is ``accuracy[0]`` (the least regularised model); the peak is the most
    aligned model that the accuracy rule keeps; NaN alignments are never the peak.

    Examples
    --------
    >>> ref = sweep_reference([0.9, 0.9, 0.5], [0.1, 0.4, 0.6], [3.0, 1.0, 0.1])
    >>> ref.peak_alignment, ref.peak_gradient_norm
    (0.4, 1.0)
    """
    th = thresholds or RegimeThresholds()
    acc, _ = _as_series("accuracy", list(accuracy), 0)
    ali, _ = _as_series("alignment", list(alignment), 0)
    gn = None if gradient_norm is None else _as_series("gradient_norm", list(gradient_norm), 0)[0]
    if acc is None or ali is None or acc.shape != ali.shape or (gn is not None and gn.shape != acc.shape):
        raise ValueError("Expected `accuracy`, `alignment` and `gradient_norm` to describe the same models")
    peak = _peak(acc, ali, float(acc[0]), th)
    return RegimeReference(
        float(acc[0]),
        None if peak is None else float(ali[peak]),
        None if peak is None or gn is None else float(gn[peak]),
        source,
    )


def regime_decisions(
    relative_robustness: Any = None,
    accuracy: Any = None,
    alignment: Any = None,
    *,
    gradient_norm: Any = None,
    reference_accuracy: float | None = None,
    max_accuracy_drop: float = 0.05,
    alignment_tolerance: float = 0.1,
    min_relative_robustness: float = 2.0,
    epsilon_index: int = 0,
) -> list[RegimeDecision]:
    """Like :func:`robustness_regime`, but one :class:`RegimeDecision` (regime and reason) per model.

    Examples
    --------
    >>> [d.regime for d in regime_decisions(alignment=[0.2, float("nan"), 0.5], accuracy=[0.9, 0.9, 0.9])]
    ['weak', 'undetermined', 'bayes_aligned']
    """
    th = RegimeThresholds(max_accuracy_drop, alignment_tolerance, min_relative_robustness)
    check_int("epsilon_index", epsilon_index)
    rel, _ = _as_series("relative_robustness", relative_robustness, epsilon_index)
    acc, acc_single = _as_series("accuracy", accuracy, epsilon_index)
    ali, _ = _as_series("alignment", alignment, epsilon_index)
    gn, _ = _as_series("gradient_norm", gradient_norm, epsilon_index)
    given = {
        k: v
        for k, v in (("relative_robustness", rel), ("accuracy", acc), ("alignment", ali), ("gradient_norm", gn))
        if v is not None
    }
    if rel is None and ali is None:
        raise ValueError("Expected `relative_robustness` or `alignment` (or both) but got neither")
    lengths = {k: int(v.shape[0]) for k, v in given.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Expected every given series to describe the same number of models but got {lengths}")
    m = next(iter(lengths.values()))
    if m == 1 and rel is None:
        raise ValueError(
            "Expected `relative_robustness` for a single model (its alignment has no peak to compare with) but got None"
        )
    if reference_accuracy is not None:
        ref_acc = float(reference_accuracy)
        if not math.isnan(ref_acc):
            ref_acc = check_positive("reference_accuracy", reference_accuracy, allow_zero=True)
    elif acc is not None:
        if acc_single:
            raise ValueError("Expected `reference_accuracy` to judge a single model's accuracy but got None")
        ref_acc = float(acc[0])  # the least regularised model of the sweep
    else:
        ref_acc = math.nan  # no accuracy given: the accuracy rule is not applied
    peak = _peak(acc, ali, ref_acc, th) if m > 1 else None
    reference = RegimeReference(
        ref_acc,
        None if peak is None else float(ali[peak]),  # type: ignore[index]
        None if peak is None or gn is None else float(gn[peak]),
    )
    out = []
    for i in range(m):
        if peak is None:
            after: bool | None = None
        elif gn is not None:  # position measured: a smaller gradient norm is more regularised
            after = None if math.isnan(float(gn[i])) else bool(gn[i] < gn[peak])
        else:  # position in the sweep's order of strength
            after = i > peak
        alignment_i = _val(ali, i) if m > 1 else None
        out.append(_decide(_val(acc, i), alignment_i, _val(rel, i), after, reference, th))
    return out


def robustness_regime(
    relative_robustness: Any = None,
    accuracy: Any = None,
    alignment: Any = None,
    *,
    gradient_norm: Any = None,
    reference_accuracy: float | None = None,
    max_accuracy_drop: float = 0.05,
    alignment_tolerance: float = 0.1,
    min_relative_robustness: float = 2.0,
    epsilon_index: int = 0,
) -> Regime | list[Regime]:
    r"""Classify a model, or a sweep of models, as ``"weak"``, ``"bayes_aligned"`` or ``"excessive"``.

    Srinivas, Bordt & Lakkaraju (NeurIPS 2023): as robustness regularisation grows, perceptual
    alignment first rises (weak robustness), peaks where the model's gradients match the Bayes
    score difference (Bayes-aligned), then falls together with accuracy as the model becomes
    robust on the manifold too (excessive robustness). This is this package's operationalisation
    of those regimes (:func:`regime_rule_text` writes it out). A sweep is given as series sorted
    by growing regularisation strength; model :math:`i` is classified by the first rule that
    applies:

    1. **excessive** if its accuracy dropped too far below the reference (by default the first,
       least regularised model of the sweep):
       :math:`\text{acc}_i < \text{acc}_\text{ref} - \text{max\_accuracy\_drop}`.
    2. With ``alignment`` for two or more models: the peak :math:`p` is the most aligned model
       among those not excluded by rule 1, and models "near the peak" have
       :math:`a_i \ge a_p - \text{alignment\_tolerance}\cdot|a_p|`. A model *not* near the peak
       is **weak** if it comes before the peak and **excessive** after it. "After" means
       :math:`i > p`, or, when ``gradient_norm`` is given, a smaller mean input-gradient norm than
       the peak's (more regularised), which is how a single model is placed too
       (:func:`~captum_pags.metrics.place_model`).
    3. With ``relative_robustness``: a model with
       :math:`\text{relative}_i < \text{min\_relative\_robustness}` (it reacts about as much off
       the manifold as on it) is **weak** if it is at or before the peak, or if there is no peak
       (no alignment given); after the peak it is **excessive** (robust on the manifold too).
    4. Otherwise **bayes_aligned**.

    A NaN value that a rule needs never decides: the model is ``"undetermined"``
    (:func:`regime_decisions` says why), and a NaN reference accuracy leaves every model
    undetermined. A single model needs ``relative_robustness``; its accuracy rule needs
    ``reference_accuracy``.

    Parameters
    ----------
    relative_robustness : float, sequence, array, Tensor, ManifoldRobustness or sequence of them, optional
        ``(M,)`` relative off-manifold robustness (``on / off``); a :class:`ManifoldRobustness`
        is summarised as ``result.mean().relative[0, epsilon_index]``.
    accuracy : float, sequence, array or Tensor, optional
        ``(M,)`` accuracies (fractions in [0, 1], or any consistent unit with ``max_accuracy_drop``).
    alignment : float, sequence, array or Tensor, optional
        ``(M,)`` mean perceptual (or tangent) alignment of each model.
    gradient_norm : float, sequence, array or Tensor, optional
        ``(M,)`` mean input-gradient norms; if given, they (not the order) tell before from after the peak.
    reference_accuracy : float, optional
        Accuracy of the unregularised model; defaults to ``accuracy[0]`` for a sweep.
    max_accuracy_drop, alignment_tolerance, min_relative_robustness : float
        The thresholds (:class:`RegimeThresholds`).
    epsilon_index : int
        Which epsilon of :class:`ManifoldRobustness` inputs is used (default the smallest, first).

    Returns
    -------
    str or list of str
        One of :data:`REGIMES` or ``"undetermined"`` per model; a single string when every metric
        was given for one model.

    Examples
    --------
    >>> robustness_regime(alignment=[0.2, 0.5, 0.55, 0.3], accuracy=[0.98, 0.97, 0.96, 0.85])
    ['weak', 'bayes_aligned', 'bayes_aligned', 'excessive']
    >>> robustness_regime(relative_robustness=12.0)
    'bayes_aligned'
    """
    decisions = regime_decisions(
        relative_robustness,
        accuracy,
        alignment,
        gradient_norm=gradient_norm,
        reference_accuracy=reference_accuracy,
        max_accuracy_drop=max_accuracy_drop,
        alignment_tolerance=alignment_tolerance,
        min_relative_robustness=min_relative_robustness,
        epsilon_index=epsilon_index,
    )
    single = all(
        v is None or _as_series("x", v, epsilon_index)[1]
        for v in (relative_robustness, accuracy, alignment, gradient_norm)
    )
    regimes = [d.regime for d in decisions]
    return regimes[0] if single else regimes


def regime_rule_text(thresholds: RegimeThresholds | None = None) -> str:
    """The regime rule in words, generated from the thresholds the code uses.

    Examples
    --------
    >>> "excessive" in regime_rule_text() and "2" in regime_rule_text()
    True
    """
    th = thresholds or RegimeThresholds()
    return (
        "Regimes: this package's operationalisation of the paper's three regimes (Srinivas, Bordt & "
        "Lakkaraju, NeurIPS 2023; the thresholds are ours, not the paper's). Per method, on the means over "
        "seeds, the reference is the least regularised model's accuracy and the alignment peak (the most "
        "aligned model that kept its accuracy); a model is placed by the first rule that applies: "
        f"(1) 'excessive' if its test accuracy is more than {th.max_accuracy_drop:g} "
        f"({th.max_accuracy_drop * 100:g} points) below the reference; "
        f"(2) if its alignment is more than {th.alignment_tolerance:.0%} below the peak: 'weak' before the "
        "peak, 'excessive' after it (after = a smaller mean input-gradient norm than the peak model's, i.e. "
        "more regularised); "
        f"(3) if its on/off-manifold change ratio is below {th.min_relative_robustness:g} (it reacts about as "
        "much off the manifold as on it): 'weak' at or before the peak, 'excessive' after it; "
        "(4) otherwise 'bayes_aligned'. A NaN value that a rule needs leaves the model 'undetermined'."
    )
