"""The regime rule's exact outputs: every branch's (regime, reason), its boundaries and defaults.

Checks, on pure numbers, that each rule of :func:`captum_pags.metrics.regimes._decide` gives the
documented regime and the exact reason shown in reports (through the public ``place_model``,
``regime_decisions`` and ``robustness_regime``), which side wins exactly at a threshold, the
documented default thresholds, how :class:`RegimeReference` is built, serialised and read back,
and that validation errors name the argument that was wrong.
"""

import json
import math

import pytest

from captum_pags.metrics import (
    RegimeDecision,
    RegimeReference,
    RegimeThresholds,
    place_model,
    regime_decisions,
    robustness_regime,
    sweep_reference,
)

NAN = math.nan
# a reference with a peak: alignment 0.5 at gradient norm 2 (smaller norm = after the peak)
PEAKED = RegimeReference(0.9, peak_alignment=0.5, peak_gradient_norm=2.0)
BASE = {"accuracy": 0.9, "alignment_bayes": 0.5, "relative_robustness": 5.0, "gradient_norm": 2.0}


# ------------------------------------------------------------------------------------ every branch
@pytest.mark.parametrize(
    ("change", "reference", "regime", "reason"),
    [
        ({}, NAN, "undetermined", "the reference accuracy is NaN"),
        ({"accuracy": NAN}, PEAKED, "undetermined", "its accuracy is NaN"),
        (
            {"accuracy": 0.7},
            PEAKED,
            "excessive",
            "accuracy 0.7000 is more than 0.05 below the reference 0.9000",
        ),
        ({"alignment_bayes": NAN}, PEAKED, "undetermined", "its alignment is NaN"),
        (
            {"alignment_bayes": 0.1, "gradient_norm": NAN},
            PEAKED,
            "undetermined",
            "away from the alignment peak, on an unknown side of it",
        ),
        (
            {"alignment_bayes": 0.1, "gradient_norm": 3.0},
            PEAKED,
            "weak",
            "alignment 0.1000 is more than 10% below the peak 0.5000, before the peak",
        ),
        (
            {"alignment_bayes": 0.1, "gradient_norm": 1.0},
            PEAKED,
            "excessive",
            "alignment 0.1000 is more than 10% below the peak 0.5000, after the peak",
        ),
        ({"relative_robustness": NAN}, PEAKED, "undetermined", "its relative robustness is NaN"),
        (
            {"relative_robustness": 1.5, "gradient_norm": NAN},
            PEAKED,
            "undetermined",
            "off/on robustness is low, on an unknown side of the peak",
        ),
        ({"relative_robustness": 1.5, "gradient_norm": 3.0}, PEAKED, "weak", "on/off change ratio 1.5 < 2"),
        ({"relative_robustness": 1.5}, 0.9, "weak", "on/off change ratio 1.5 < 2"),  # no peak known
        (
            {"relative_robustness": 1.5, "gradient_norm": 1.0},
            PEAKED,
            "excessive",
            "on/off change ratio 1.5 < 2, after the alignment peak",
        ),
        ({}, PEAKED, "bayes_aligned", "accuracy kept, near the alignment peak, robust off the manifold"),
        ({}, None, "undetermined", "no reference (a sweep's results or a reference accuracy) was given"),
    ],
)
def test_every_branch_of_the_rule_gives_its_regime_and_reason(change, reference, regime, reason):
    assert place_model({**BASE, **change}, reference) == RegimeDecision(regime, reason)


def test_sweep_decisions_give_the_same_reasons():
    got = regime_decisions(
        [5.0, 5.0, 1.5, 5.0, NAN],
        accuracy=[0.9, 0.9, 0.9, 0.5, 0.9],
        alignment=[0.1, 0.5, 0.48, 0.3, 0.5],
    )
    assert got == [
        RegimeDecision("weak", "alignment 0.1000 is more than 10% below the peak 0.5000, before the peak"),
        RegimeDecision("bayes_aligned", "accuracy kept, near the alignment peak, robust off the manifold"),
        RegimeDecision("excessive", "on/off change ratio 1.5 < 2, after the alignment peak"),
        RegimeDecision("excessive", "accuracy 0.5000 is more than 0.05 below the reference 0.9000"),
        RegimeDecision("undetermined", "its relative robustness is NaN"),
    ]
    # a NaN gradient norm leaves the side of the peak unknown
    got = regime_decisions([5.0, 1.5, 5.0], alignment=[0.5, 0.5, 0.1], gradient_norm=[2.0, NAN, NAN])
    assert got == [
        RegimeDecision("bayes_aligned", "accuracy kept, near the alignment peak, robust off the manifold"),
        RegimeDecision("undetermined", "off/on robustness is low, on an unknown side of the peak"),
        RegimeDecision("undetermined", "away from the alignment peak, on an unknown side of it"),
    ]


# ------------------------------------------------------------------------------------ boundaries
def test_accuracy_exactly_at_the_allowed_drop_is_kept():
    # 0.5 - 0.25 == 0.25 exactly: "more than max_accuracy_drop below" excludes the boundary
    th = RegimeThresholds(max_accuracy_drop=0.25)
    at = place_model({"accuracy": 0.25, "relative_robustness": 5.0}, 0.5, thresholds=th)
    assert at.regime == "bayes_aligned"
    below = place_model({"accuracy": 0.125, "relative_robustness": 5.0}, 0.5, thresholds=th)
    assert below.regime == "excessive"
    assert robustness_regime(5.0, accuracy=0.25, reference_accuracy=0.5, max_accuracy_drop=0.25) == "bayes_aligned"


def test_alignment_exactly_at_the_tolerance_is_near_the_peak():
    # peak 0.5, tolerance 50 %: a_i >= 0.25 is near the peak (0.5 - 0.5 * 0.5 == 0.25 exactly)
    assert robustness_regime(alignment=[0.25, 0.5], alignment_tolerance=0.5) == ["bayes_aligned", "bayes_aligned"]
    assert robustness_regime(alignment=[0.125, 0.5], alignment_tolerance=0.5) == ["weak", "bayes_aligned"]


def test_relative_robustness_exactly_at_the_minimum_is_robust():
    assert robustness_regime([2.0, 1.5]) == ["bayes_aligned", "weak"]


def test_accuracy_zero_is_a_valid_reference():
    assert RegimeReference.from_accuracy(0.0) == RegimeReference(0.0, source="reference accuracy 0")
    assert place_model({"accuracy": 0.0, "relative_robustness": 5.0}, 0.0).regime == "bayes_aligned"
    got = regime_decisions(3.0, accuracy=0.0, reference_accuracy=0.0)
    assert got == [RegimeDecision("bayes_aligned", "accuracy kept, near the alignment peak, robust off the manifold")]


# ------------------------------------------------------------------------------------ defaults
def test_default_min_relative_robustness_is_two():
    default = [d.regime for d in regime_decisions([2.5, 1.9])]
    assert default == ["bayes_aligned", "weak"]
    assert default == [d.regime for d in regime_decisions([2.5, 1.9], min_relative_robustness=2.0)]
    assert [d.regime for d in regime_decisions([2.5, 1.9], min_relative_robustness=3.0)] == ["weak", "weak"]


# ------------------------------------------------------------------------------------ sweep reference
def test_sweep_reference_is_judged_against_the_first_model():
    # accuracy[0] = 0.9 is the reference: the models at 0.5 lost their accuracy, the peak is model 0
    ref = sweep_reference([0.9, 0.5, 0.5], [0.1, 0.2, 0.3], [3.0, 2.0, 1.0], source="mine")
    assert ref == RegimeReference(0.9, 0.1, 3.0, "mine")


def test_sweep_reference_without_gradient_norm():
    ref = sweep_reference([0.9, 0.9, 0.5], [0.1, 0.4, 0.6])
    assert ref == RegimeReference(0.9, 0.4, None, "")
    assert sweep_reference([0.9, 0.9], [NAN, NAN], [1.0, 2.0]) == RegimeReference(0.9, None, None, "")


def test_sweep_reference_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="`accuracy` to hold numbers"):
        sweep_reference(["a", "b"], [0.1, 0.2])
    with pytest.raises(TypeError, match="`gradient_norm` to hold numbers"):
        sweep_reference([0.9, 0.9], [0.1, 0.2], ["a", "b"])
    with pytest.raises(ValueError, match="to describe the same models"):
        sweep_reference([0.9, 0.9], [0.1])
    with pytest.raises(ValueError, match="to describe the same models"):
        sweep_reference([0.9, 0.9], [0.1, 0.2], [1.0])


# ------------------------------------------------------------------------------------ RegimeReference
def test_to_dict_keys_and_round_trip():
    ref = RegimeReference(0.9, 0.5, 2.0, "s")
    assert ref.to_dict() == {"accuracy": 0.9, "peak_alignment": 0.5, "peak_gradient_norm": 2.0, "source": "s"}
    assert RegimeReference(NAN).to_dict() == {
        "accuracy": None,
        "peak_alignment": None,
        "peak_gradient_norm": None,
        "source": "",
    }
    back = RegimeReference.from_results({"references": {"noise": ref.to_dict()}})
    assert back == RegimeReference(0.9, 0.5, 2.0, "sweep results (noise)")
    back = RegimeReference.from_results({"references": {"noise": RegimeReference(NAN).to_dict()}})
    assert math.isnan(back.accuracy)
    assert (back.peak_alignment, back.peak_gradient_norm, back.source) == (None, None, "sweep results (noise)")


def test_from_results_path_is_the_source(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"references": {"pgd": {"accuracy": 0.8, "peak_alignment": 0.3}}}))
    assert RegimeReference.from_results(path) == RegimeReference(0.8, 0.3, None, f"{path} (pgd)")
    assert RegimeReference.from_results(str(path)).source == f"{path} (pgd)"


def test_from_results_takes_the_method_with_the_highest_peak():
    results = {
        "references": {
            "noise": {"accuracy": 0.9, "peak_alignment": 0.2},
            "pgd": {"accuracy": 0.8, "peak_alignment": 0.6, "peak_gradient_norm": 1.5},
            "none": {"accuracy": 0.7},
        }
    }
    assert RegimeReference.from_results(results) == RegimeReference(0.8, 0.6, 1.5, "sweep results (pgd)")
    assert RegimeReference.from_results(results, "noise") == RegimeReference(0.9, 0.2, None, "sweep results (noise)")


@pytest.mark.parametrize("refs", [{}, [1], None, "x"])
def test_from_results_without_references(refs):
    with pytest.raises(ValueError, match="with 'references'\\) but it has none"):
        RegimeReference.from_results({"references": refs})


# ------------------------------------------------------------------------------------ argument names
def test_regime_decisions_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="`epsilon_index` to be an int but got float"):
        regime_decisions(3.0, epsilon_index=1.5)
    with pytest.raises(TypeError, match="`relative_robustness` to hold numbers"):
        regime_decisions(["a", "b"])
    with pytest.raises(TypeError, match="`gradient_norm` to hold numbers"):
        regime_decisions([1.0, 2.0], gradient_norm=["a", "b"])
    with pytest.raises(ValueError, match="`reference_accuracy` to be a finite number >= 0 but got -0.1"):
        regime_decisions(3.0, accuracy=0.9, reference_accuracy=-0.1)


def test_length_mismatch_names_every_series():
    with pytest.raises(ValueError) as err:
        regime_decisions([1.0, 2.0], accuracy=[0.9], alignment=[0.1, 0.2, 0.3], gradient_norm=[1.0, 2.0, 3.0, 4.0])
    assert str(err.value) == (
        "Expected every given series to describe the same number of models but got "
        "{'relative_robustness': 2, 'accuracy': 1, 'alignment': 3, 'gradient_norm': 4}"
    )


# ------------------------------------------------------------------------------------ a fresh sample's survivors
def test_from_accuracy_refuses_non_numbers_and_accepts_the_closed_interval():
    for bad in ("0.5", None, True):
        with pytest.raises(TypeError, match="Expected `accuracy` to be a number"):
            RegimeReference.from_accuracy(bad)
    assert RegimeReference.from_accuracy(1.0).accuracy == 1.0
    assert RegimeReference.from_accuracy(1).accuracy == 1.0


def test_from_results_picks_the_highest_peak_not_the_last_name():
    results = {
        "references": {
            "gradient_norm": {"accuracy": 0.9, "peak_alignment": 0.5, "peak_gradient_norm": 1.0},
            "noise": {"accuracy": 0.9, "peak_alignment": 0.2, "peak_gradient_norm": 3.0},
        }
    }
    ref = RegimeReference.from_results(results)
    assert (ref.peak_alignment, ref.source) == (0.5, "sweep results (gradient_norm)")


def test_sweep_reference_names_a_bad_alignment():
    with pytest.raises(TypeError, match="`alignment`"):
        sweep_reference([0.9, 0.8], [0.1, "x"])


def test_decisions_without_an_accuracy_skip_the_accuracy_rule():
    decisions = regime_decisions(relative_robustness=[5.0, 1.5], alignment=[0.5, 0.1], gradient_norm=[2.0, 3.0])
    assert decisions == [
        RegimeDecision("bayes_aligned", "accuracy kept, near the alignment peak, robust off the manifold"),
        RegimeDecision("weak", "alignment 0.1000 is more than 10% below the peak 0.5000, before the peak"),
    ]
