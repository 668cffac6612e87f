import json
import math

import numpy as np
import pytest
import torch

from captum_pags.metrics import (
    REGIMES,
    ManifoldRobustness,
    RegimeReference,
    RegimeThresholds,
    place_model,
    regime_decisions,
    regime_rule_text,
    robustness_regime,
    sweep_reference,
)


def test_regime_rule_on_a_sweep():
    # sorted by strength: rises, peaks at 2, falls; the last also loses accuracy
    alignment = [0.1, 0.3, 0.5, 0.47, 0.3, 0.45]
    accuracy = [0.98, 0.98, 0.97, 0.96, 0.95, 0.80]
    got = robustness_regime(alignment=alignment, accuracy=accuracy)
    assert got == ["weak", "weak", "bayes_aligned", "bayes_aligned", "excessive", "excessive"]
    # a looser tolerance accepts model 1 and 4; accuracy still rules out the last one
    got = robustness_regime(alignment=alignment, accuracy=accuracy, alignment_tolerance=0.5)
    assert got == ["weak", "bayes_aligned", "bayes_aligned", "bayes_aligned", "bayes_aligned", "excessive"]
    # the peak is taken among models whose accuracy is acceptable
    got = robustness_regime(alignment=[0.1, 0.3, 0.9], accuracy=[0.9, 0.9, 0.5])
    assert got == ["weak", "bayes_aligned", "excessive"]


def test_regime_relative_robustness_rule():
    rel = [1.0, 5.0, 20.0, 1.5]
    assert robustness_regime(rel) == ["weak", "bayes_aligned", "bayes_aligned", "weak"]
    # with a peak, low relative robustness after it is excessive (robust on the manifold too)
    got = robustness_regime(rel, alignment=[0.1, 0.4, 0.42, 0.41])
    assert got == ["weak", "bayes_aligned", "bayes_aligned", "excessive"]
    assert robustness_regime(rel, min_relative_robustness=10.0) == ["weak", "weak", "bayes_aligned", "weak"]
    assert robustness_regime(12.0) == "bayes_aligned"
    assert robustness_regime(1.2) == "weak"
    assert robustness_regime(12.0, accuracy=0.7, reference_accuracy=0.9) == "excessive"
    assert robustness_regime(12.0, accuracy=0.88, reference_accuracy=0.9) == "bayes_aligned"
    assert robustness_regime(torch.tensor([math.nan, 3.0])) == ["undetermined", "bayes_aligned"]
    assert robustness_regime(np.array([1.0, 3.0]), accuracy=np.array([0.9, 0.7])) == ["weak", "excessive"]
    assert robustness_regime(np.float64(3.0)) == "bayes_aligned"
    assert set(REGIMES) == {"weak", "bayes_aligned", "excessive"}


def test_regime_accepts_robustness_results():
    strong = ManifoldRobustness(torch.tensor([[2.0, 4.0]]), torch.tensor([[0.1, 4.0]]), torch.tensor([0.1, 1.0]))
    assert robustness_regime(strong) == "bayes_aligned"
    assert robustness_regime(strong, epsilon_index=1) == "weak"
    assert robustness_regime([strong, strong]) == ["bayes_aligned", "bayes_aligned"]
    with pytest.raises(ValueError, match="`epsilon_index` to index 2 epsilons but got 5"):
        robustness_regime(strong, epsilon_index=5)


def test_regime_bad_input():
    with pytest.raises(ValueError, match="`relative_robustness` or `alignment`"):
        robustness_regime(accuracy=[0.9, 0.8])
    with pytest.raises(ValueError, match="same number of models"):
        robustness_regime([1.0, 2.0], accuracy=[0.9])
    with pytest.raises(ValueError, match="`reference_accuracy` to judge a single model"):
        robustness_regime(3.0, accuracy=0.9)
    with pytest.raises(ValueError, match="`relative_robustness` for a single model"):
        robustness_regime(alignment=0.5)
    with pytest.raises(ValueError, match="`max_accuracy_drop` to be a finite number >= 0 but got -0.1"):
        robustness_regime([1.0], max_accuracy_drop=-0.1)
    with pytest.raises(TypeError, match="`alignment` to hold numbers"):
        robustness_regime(alignment=["a", "b"])
    with pytest.raises(ValueError, match="`accuracy` to be a number or a 1-d series"):
        robustness_regime([1.0, 2.0], accuracy=torch.ones(2, 2))


# ------------------------------------------------------------------------------------ NaN never decides
@pytest.mark.parametrize("position", ["order", "gradient_norm"])
def test_nan_alignment_is_undetermined_and_never_the_peak(position):
    alignment = [0.1, math.nan, 0.5, 0.2]
    accuracy = [0.9, 0.9, 0.9, 0.9]
    gn = [4.0, 3.0, 2.0, 1.0] if position == "gradient_norm" else None
    got = regime_decisions(alignment=alignment, accuracy=accuracy, gradient_norm=gn)
    assert [d.regime for d in got] == ["weak", "undetermined", "bayes_aligned", "excessive"]
    assert "NaN" in got[1].reason
    # a NaN larger than every alignment must not become the peak either
    all_nan = robustness_regime([3.0, 3.0], alignment=[math.nan, math.nan], accuracy=[0.9, 0.9])
    assert all_nan == ["undetermined", "undetermined"]


def test_nan_reference_accuracy_leaves_every_model_undetermined():
    got = regime_decisions([3.0, 3.0], accuracy=[0.9, 0.2], reference_accuracy=math.nan)
    assert [d.regime for d in got] == ["undetermined", "undetermined"]
    assert all("reference accuracy is NaN" in d.reason for d in got)
    got = robustness_regime([3.0, 3.0, 3.0], accuracy=[math.nan, 0.9, 0.2], alignment=[0.1, 0.2, 0.3])
    assert got == ["undetermined"] * 3
    assert robustness_regime([3.0, 3.0], accuracy=[0.9, math.nan]) == ["bayes_aligned", "undetermined"]


def test_accuracy_drop_decides_even_with_nan_alignment():
    # a collapsed model has no usable gradient (NaN cosine) but its accuracy says enough
    assert robustness_regime([3.0, 3.0], accuracy=[0.9, 0.1], alignment=[0.4, math.nan]) == [
        "bayes_aligned",
        "excessive",
    ]


def test_single_strength_sweep_does_not_crash():
    assert robustness_regime([3.0], accuracy=[0.9], alignment=[0.4]) == ["bayes_aligned"]
    assert robustness_regime([1.0], accuracy=[0.9], alignment=[0.4]) == ["weak"]


# ------------------------------------------------------------------------------------ one rule
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_single_model_placement_gives_the_sweep_regimes(seed, tmp_path):
    """Placing every model of a sweep against the sweep's own reference reproduces its regimes."""
    g = torch.Generator().manual_seed(seed)
    m = 9
    strength = torch.arange(m, dtype=torch.float64)
    # inverted U of alignment, falling accuracy and gradient norm, a noisy on/off ratio
    alignment = (0.5 - 0.04 * (strength - 3 - 2 * torch.rand(1, generator=g, dtype=torch.float64)) ** 2).tolist()
    accuracy = (0.95 - 0.6 / (1 + torch.exp(-(strength - 6.5) * 2))).tolist()
    gradient_norm = torch.exp(-0.5 * strength).tolist()
    relative = (1 + 6 * torch.rand(m, generator=g, dtype=torch.float64)).tolist()
    sweep = robustness_regime(relative, accuracy, alignment, gradient_norm=gradient_norm)
    assert set(sweep) <= set(REGIMES) and "excessive" in sweep
    ref = sweep_reference(accuracy, alignment, gradient_norm)
    payload = {"references": {"noise": ref.to_dict()}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(payload))
    for i in range(m):
        metrics = {
            "accuracy": accuracy[i],
            "alignment_bayes": alignment[i],
            "relative_robustness": relative[i],
            "gradient_norm": gradient_norm[i],
        }
        assert place_model(metrics, path).regime == sweep[i], i
        assert place_model(metrics, ref).regime == sweep[i], i


def test_position_by_gradient_norm_equals_order_when_monotone():
    alignment = [0.1, 0.3, 0.5, 0.47, 0.3, 0.45]
    accuracy = [0.98, 0.98, 0.97, 0.96, 0.95, 0.80]
    rel = [1.0, 1.5, 5.0, 1.2, 3.0, 3.0]
    by_order = robustness_regime(rel, accuracy, alignment)
    by_norm = robustness_regime(rel, accuracy, alignment, gradient_norm=[6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    assert by_order == by_norm == ["weak", "weak", "bayes_aligned", "excessive", "excessive", "excessive"]


def test_placement_without_reference_is_undetermined_and_with_accuracy_only():
    metrics = {"accuracy": 0.9, "relative_robustness": 5.0, "alignment_bayes": 0.3, "gradient_norm": 1.0}
    assert place_model(metrics, None).regime == "undetermined"
    assert place_model(metrics, 0.92).regime == "bayes_aligned"
    assert place_model({**metrics, "accuracy": 0.8}, 0.92).regime == "excessive"
    assert place_model({**metrics, "relative_robustness": 1.1}, 0.92).regime == "weak"
    assert place_model(metrics, math.nan).regime == "undetermined"
    # a peak known but no gradient norm to tell the side: undetermined, not a guess
    ref = RegimeReference(0.9, peak_alignment=0.6, peak_gradient_norm=2.0)
    assert place_model({**metrics, "gradient_norm": math.nan}, ref).regime == "undetermined"
    assert place_model(metrics, ref).regime == "excessive"  # gradient norm 1 < 2: after the peak
    assert place_model({**metrics, "gradient_norm": 3.0}, ref).regime == "weak"


def test_placement_bad_input(tmp_path):
    with pytest.raises(ValueError, match="`accuracy` to be a fraction"):
        place_model({"accuracy": 0.5}, 1.5)
    with pytest.raises(ValueError, match="does not exist"):
        place_model({"accuracy": 0.5}, tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="'references'"):
        place_model({"accuracy": 0.5}, tmp_path / "bad.json")
    (tmp_path / "ok.json").write_text(json.dumps({"references": {"noise": {"accuracy": 0.9}}}))
    with pytest.raises(ValueError, match="`method` to be one of \\['noise'\\]"):
        place_model({"accuracy": 0.5}, tmp_path / "ok.json", method="pgd")
    with pytest.raises(ValueError, match="'accuracy'"):
        place_model({"alignment_bayes": 0.5}, 0.9)
    with pytest.raises(TypeError, match="`metrics\\['accuracy'\\]` to be a number"):
        place_model({"accuracy": "high"}, 0.9)
    with pytest.raises(ValueError, match="`min_relative_robustness` to be a finite number >= 0"):
        RegimeThresholds(min_relative_robustness=-1.0)


@pytest.mark.parametrize("drop", [0.02, 0.05, 0.1])
def test_rule_text_is_generated_from_the_thresholds(drop):
    th = RegimeThresholds(max_accuracy_drop=drop, alignment_tolerance=0.2, min_relative_robustness=3.0)
    text = regime_rule_text(th)
    assert f"more than {drop:g}" in text and "20%" in text and "below 3" in text
    assert "operationalisation" in text
    # the prose says what the code does: a low on/off ratio after the peak is excessive
    assert "'excessive' after it" in text.split("(3)")[1]
    assert robustness_regime([5.0, 5.0, 1.0], alignment=[0.1, 0.5, 0.49], accuracy=[0.9] * 3) == [
        "weak",
        "bayes_aligned",
        "excessive",
    ]
