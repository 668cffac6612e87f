"""The metric series of the regime rule: every accepted form gives the same exact float64 values."""

import numpy as np
import pytest
import torch

from captum_pags.metrics._series import as_series


@pytest.mark.parametrize(
    ("value", "expected", "single"),
    [
        (0.5, [0.5], True),
        (3, [3.0], True),
        (torch.tensor(0.25), [0.25], True),
        (np.float64(0.75), [0.75], True),
        (np.array(0.125), [0.125], True),
        ([0.1 + 1e-12, 2], [0.1 + 1e-12, 2.0], False),
        ((torch.tensor(0.5), torch.tensor([0.25])), [0.5, 0.25], False),
        (np.array([1, 2, 3]), [1.0, 2.0, 3.0], False),
        (torch.tensor([0.5, 0.25], requires_grad=True), [0.5, 0.25], False),
    ],
)
def test_every_form_gives_exact_float64_values(value, expected, single):
    series, got_single = as_series("accuracy", value, 0)
    assert series.dtype == torch.float64 and got_single is single
    assert series.tolist() == expected  # exact: no float32 round trip


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([], TypeError, "Expected `accuracy` to be a number, a non-empty sequence"),
        ("0.5", TypeError, "Expected `accuracy` to be a number"),
        ([0.5, "x"], TypeError, "Expected `accuracy` to hold numbers but got str"),
        ([True], TypeError, "Expected `accuracy` to hold numbers but got bool"),
        ([torch.tensor([1.0, 2.0])], TypeError, "Expected `accuracy` to hold numbers but got Tensor"),
        (torch.zeros(2, 2), ValueError, r"Expected `accuracy` to be a number or a 1-d series but got shape \(2, 2\)"),
    ],
)
def test_bad_series_are_refused_naming_the_argument(value, error, match):
    with pytest.raises(error, match=match):
        as_series("accuracy", value, 0)
    assert as_series("accuracy", None, 0) == (None, False)
