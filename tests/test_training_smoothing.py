import math

import pytest
import torch
from conftest import assert_model_unchanged, model_snapshot
from scipy import stats

from captum_pags.training import ABSTAIN, SmoothedClassifier


def _threshold_model():
    """Class 0 iff the first feature is > 0: under noise N(0, s^2), P(class 0 | x) = Phi(x_0 / s)."""
    model = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    return model


def _constant_model(cls: int, num_classes: int = 4):
    def model(x):
        out = torch.zeros(x.shape[0], num_classes)
        out[:, cls] = 1.0
        return out

    return model


def test_radius_of_a_constant_classifier_has_a_closed_form():
    # every vote for the class: the Clopper-Pearson bound is alpha^(1/n)
    n, alpha, sigma = 500, 0.01, 0.25
    smoothed = SmoothedClassifier(_constant_model(2), sigma=sigma, num_classes=4)
    cert = smoothed.certify(torch.zeros(3, 5), n0=10, n=n, alpha=alpha)
    p_lower = alpha ** (1 / n)
    expected = sigma * stats.norm.ppf(p_lower)
    assert cert.prediction.tolist() == [2, 2, 2]
    torch.testing.assert_close(cert.p_lower, torch.full((3,), p_lower, dtype=torch.float64), rtol=1e-10, atol=0)
    torch.testing.assert_close(cert.radius, torch.full((3,), expected, dtype=torch.float64), rtol=1e-10, atol=0)


def test_certified_radius_matches_the_formula_at_known_class_probabilities():
    sigma, n, alpha = 0.5, 20_000, 0.001
    x0 = torch.tensor([0.005, 0.3, 0.6, 1.2, -0.4])
    inputs = torch.stack([x0, torch.randn(5), torch.randn(5)], dim=1)
    smoothed = SmoothedClassifier(_threshold_model(), sigma=sigma, num_classes=2, batch_size=4096)
    cert = smoothed.certify(inputs, n0=100, n=n, alpha=alpha, generator=torch.Generator().manual_seed(0))
    p_true = torch.as_tensor(stats.norm.cdf(x0.abs().double() / sigma))
    top = torch.where(x0 > 0, 0, 1)
    assert cert.counts.sum(1).tolist() == [n] * 5
    # the votes follow the known probabilities (5 binomial standard deviations)
    freq = cert.counts.gather(1, top[:, None]).squeeze(1).double() / n
    sd = torch.sqrt(p_true * (1 - p_true) / n)
    assert bool(((freq - p_true).abs() <= 5 * sd).all())
    # direct evaluation of R = sigma * Phi^-1(pA_lower), with an exact binomial interval from scipy
    for i in range(5):
        n_a = int(cert.counts[i, top[i]])
        low = stats.binomtest(n_a, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
        assert float(cert.p_lower[i]) == pytest.approx(low, rel=1e-9)
        if low >= 0.5:
            assert int(cert.prediction[i]) == int(top[i])
            assert float(cert.radius[i]) == pytest.approx(sigma * stats.norm.ppf(low), rel=1e-9)
            # a lower bound of the true radius |x_0| (the distance to the decision boundary)
            assert 0 < float(cert.radius[i]) <= abs(float(x0[i]))
            # and not far below it: 5 sd of sampling plus the one-sided bound (z = 3.09 at alpha = 0.001)
            assert float(cert.radius[i]) >= sigma * stats.norm.ppf(float(p_true[i] - 9 * sd[i]))
        else:
            assert int(cert.prediction[i]) == ABSTAIN and float(cert.radius[i]) == 0.0
    assert int(cert.prediction[0]) == ABSTAIN  # p_A = Phi(0.01) = 0.504 is not certifiable at this n
    assert cert.prediction[1:].tolist() == [0, 0, 0, 1]


def test_predict_is_the_binomial_test_of_cohen_et_al():
    sigma, n, alpha = 0.5, 200, 0.05
    x0 = torch.tensor([0.0, 0.02, 0.05, 0.1, 0.5, -0.5, -0.05])
    inputs = torch.stack([x0, torch.zeros(7), torch.zeros(7)], dim=1)
    smoothed = SmoothedClassifier(_threshold_model(), sigma=sigma, num_classes=2, batch_size=333)
    counts = smoothed.sample_counts(inputs, n, generator=torch.Generator().manual_seed(1))
    prediction = smoothed.predict(inputs, n, alpha, generator=torch.Generator().manual_seed(1))
    for i in range(7):  # slow reference: scipy's binomial test, one example at a time
        n_a, n_b = sorted(counts[i].tolist(), reverse=True)
        if stats.binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
            assert int(prediction[i]) == ABSTAIN
        else:
            assert int(prediction[i]) == int(counts[i].argmax())
    assert ABSTAIN in prediction.tolist() and prediction[4:6].tolist() == [0, 1]


def test_counts_are_assigned_to_the_right_examples_across_batches():
    # the class is the first feature, far beyond the noise; 7 does not divide the 3 * 5 noisy rows
    def model(x):
        return torch.nn.functional.one_hot(x[:, 0].round().long(), 4).float()

    inputs = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    smoothed = SmoothedClassifier(model, sigma=1e-3, num_classes=4, batch_size=7)
    counts = smoothed.sample_counts(inputs, 5)
    expected = torch.zeros(3, 4, dtype=torch.long)
    expected[0, 2] = expected[1, 0] = expected[2, 3] = 5
    assert torch.equal(counts, expected)


def test_model_left_as_it_was(small_net):
    small_net.train()
    x = torch.randn(4, 1, 6, 6)
    torch.nn.functional.cross_entropy(small_net(x), torch.tensor([0, 1, 2, 0])).backward()
    before = model_snapshot(small_net)
    smoothed = SmoothedClassifier(small_net, sigma=0.1, num_classes=3)
    smoothed.predict(x, n=20, alpha=0.01)
    smoothed.certify(x, n0=5, n=20, alpha=0.01)
    assert_model_unchanged(small_net, before)
    with pytest.raises(ValueError, match=r"Expected `model` to return logits of shape \(\d+, 4\)"):
        SmoothedClassifier(small_net, sigma=0.1, num_classes=4).predict(x, n=3, alpha=0.1)
    assert_model_unchanged(small_net, before)


def test_smoothing_bad_input():
    model = _threshold_model()
    with pytest.raises(ValueError, match="Expected `sigma` to be a finite number > 0 but got 0.0"):
        SmoothedClassifier(model, sigma=0.0, num_classes=2)
    with pytest.raises(ValueError, match="Expected `num_classes` to be >= 2 but got 1"):
        SmoothedClassifier(model, sigma=1.0, num_classes=1)
    smoothed = SmoothedClassifier(model, sigma=1.0, num_classes=2)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"Expected `alpha` to be in \(0, 1\) but got 1.0"):
        smoothed.predict(x, n=10, alpha=1.0)
    with pytest.raises(ValueError, match="Expected `alpha` to be a finite number > 0"):
        smoothed.certify(x, n0=10, n=10, alpha=0.0)
    with pytest.raises(ValueError, match="Expected `n0` to be >= 1 but got 0"):
        smoothed.certify(x, n0=0, n=10, alpha=0.1)
    with pytest.raises(ValueError, match="Expected `num` to be >= 1 but got 0"):
        smoothed.predict(x, n=0, alpha=0.1)
    with pytest.raises(ValueError, match="Expected `inputs` to hold finite values"):
        smoothed.predict(x * math.nan, n=3, alpha=0.1)
