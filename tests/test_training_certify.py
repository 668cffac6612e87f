"""Certification with a clear margin over several seeds, and the selection sample kept apart from the estimate."""

import pytest
import torch
from scipy import stats

from captum_pags.training import ABSTAIN, SmoothedClassifier

SEEDS = [0, 1, 2, 3, 4]


def _threshold_model():
    """Class 0 iff the first feature is > 0: under noise N(0, s^2), P(class 0 | x) = Phi(x_0 / s)."""
    model = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    return model


@pytest.mark.parametrize("seed", SEEDS)
def test_clear_cases_certify_for_every_seed(seed):
    # p_A = Phi(2) = 0.977 and Phi(-3) for class 1: the n0 selection is never a coin flip here
    sigma, n, alpha = 0.5, 4000, 0.001
    inputs = torch.tensor([[1.0, 0.3, -0.2], [-1.5, 0.0, 1.0], [0.0, 2.0, 2.0]])
    smoothed = SmoothedClassifier(_threshold_model(), sigma=sigma, num_classes=2, batch_size=1500)
    cert = smoothed.certify(inputs, n0=50, n=n, alpha=alpha, generator=torch.Generator().manual_seed(seed))
    assert cert.prediction[:2].tolist() == [0, 1]
    true_radius = torch.tensor([1.0, 1.5], dtype=torch.float64)  # the distance to the decision boundary
    assert bool((cert.radius[:2] <= true_radius).all())
    # the bound is tight up to sampling: the Clopper-Pearson bound of a count 6 binomial sd below its mean
    for i, x0 in enumerate((1.0, 1.5)):
        p = stats.norm.cdf(x0 / sigma)
        n_a = n * p - 6 * (n * p * (1 - p)) ** 0.5
        low = stats.beta.ppf(alpha, n_a, n - n_a + 1)
        assert float(cert.radius[i]) >= sigma * stats.norm.ppf(low) > 0.75 * x0
    # on the boundary p_A = 1/2 exactly: never certified (up to the alpha error rate, 0.001 per seed)
    assert int(cert.prediction[2]) == ABSTAIN and float(cert.radius[2]) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_predict_on_clear_cases_for_every_seed(seed):
    smoothed = SmoothedClassifier(_threshold_model(), sigma=0.5, num_classes=2)
    inputs = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    pred = smoothed.predict(inputs, n=500, alpha=0.001, generator=torch.Generator().manual_seed(seed))
    assert pred.tolist() == [0, 1]


class _Recorder(torch.nn.Module):
    """Votes class 1 on its first ``n0`` noisy inputs (the selection), then class 0; records what it saw."""

    def __init__(self, n0):
        super().__init__()
        self.n0, self.seen = n0, []

    def forward(self, x):
        start = sum(len(s) for s in self.seen)
        self.seen.append(x.clone())
        idx = torch.arange(start, start + x.shape[0])
        return torch.stack([(idx >= self.n0).float(), (idx < self.n0).float()], dim=1)


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_the_selection_sample_is_separate_from_the_estimation_sample(batch_size):
    n0, n = 20, 300
    model = _Recorder(n0)
    smoothed = SmoothedClassifier(model, sigma=0.3, num_classes=2, batch_size=batch_size)
    cert = smoothed.certify(torch.zeros(1, 3), n0=n0, n=n, alpha=0.01, generator=torch.Generator().manual_seed(0))
    seen = torch.cat(model.seen)
    assert seen.shape[0] == n0 + n  # n0 draws to select, n fresh draws to estimate
    # the class is chosen from the selection draws (all class 1) ...
    # ... and its probability estimated from the others only (no vote for class 1 there): abstain
    assert cert.counts.tolist() == [[n, 0]]
    assert int(cert.prediction[0]) == ABSTAIN and float(cert.p_lower[0]) == 0.0
    # no noise draw is reused between the two samples
    assert torch.unique(seen, dim=0).shape[0] == n0 + n


def test_the_estimate_does_not_reuse_the_selection_noise():
    # same generator seed, certify vs. sample_counts of n after n0 draws: the counts are of the second sample
    model = _threshold_model()
    smoothed = SmoothedClassifier(model, sigma=1.0, num_classes=2)
    x = torch.tensor([[0.2, 0.0, 0.0]])
    g = torch.Generator().manual_seed(3)
    cert = smoothed.certify(x, n0=40, n=200, alpha=0.01, generator=g)
    g = torch.Generator().manual_seed(3)
    smoothed.sample_counts(x, 40, generator=g)
    second = smoothed.sample_counts(x, 200, generator=g)
    first_of_200 = smoothed.sample_counts(x, 200, generator=torch.Generator().manual_seed(3))
    assert torch.equal(cert.counts, second)
    assert not torch.equal(second, first_of_200)


def test_nan_logits_are_never_certified():
    def nan_model(x):
        out = torch.zeros(x.shape[0], 3)
        out[:, 1] = float("nan")
        return out

    smoothed = SmoothedClassifier(nan_model, sigma=0.5, num_classes=3)
    with pytest.raises(
        ValueError, match="^Expected `model` to return finite logits but got NaN or inf on noisy inputs$"
    ):
        smoothed.certify(torch.zeros(2, 4), n0=10, n=100, alpha=0.01)
    with pytest.raises(
        ValueError, match="^Expected `model` to return finite logits but got NaN or inf on noisy inputs$"
    ):
        smoothed.predict(torch.zeros(2, 4), n=100, alpha=0.01)


class _Scripted(torch.nn.Module):
    """Votes by the position of each noisy row in the stream: class 1 for the rows in ``ones``, else class 0.

    Records the training flag and the size of every call, so that tests can see how the model is run.
    """

    def __init__(self, ones):
        super().__init__()
        self.ones, self.rows, self.modes, self.calls = set(ones), 0, [], []

    def forward(self, x):
        idx = range(self.rows, self.rows + x.shape[0])
        self.rows += x.shape[0]
        self.modes.append(self.training)
        self.calls.append(x.shape[0])
        vote = torch.tensor([float(i in self.ones) for i in idx])
        return torch.stack([1 - vote, vote], dim=1)


@pytest.mark.parametrize(("m", "expected"), [(0, 0.0), (1, 1 - (1 - 0.01) ** (1 / 50)), (50, 0.01 ** (1 / 50))])
def test_clopper_pearson_bound_in_closed_form_at_zero_one_and_all_votes(m, expected):
    # selection (rows 0..9) votes class 1; the estimation votes class 1 on its first m rows
    n0, n, alpha = 10, 50, 0.01
    model = _Scripted(set(range(n0)) | set(range(n0, n0 + m))).train()
    cert = SmoothedClassifier(model, sigma=0.1, num_classes=2, batch_size=7).certify(
        torch.zeros(1, 2), n0=n0, n=n, alpha=alpha
    )
    assert cert.counts.tolist() == [[n - m, m]]
    assert float(cert.p_lower[0]) == pytest.approx(expected, rel=1e-12, abs=0)
    if expected >= 0.5:
        assert int(cert.prediction[0]) == 1
        assert float(cert.radius[0]) == pytest.approx(0.1 * stats.norm.ppf(expected), rel=1e-12)
    else:
        assert int(cert.prediction[0]) == ABSTAIN and float(cert.radius[0]) == 0.0
    # the base model ran in eval mode, in chunks of at most batch_size rows, and was left in train mode
    assert model.modes and not any(model.modes) and max(model.calls) <= 7 and model.training


def test_predict_keeps_the_class_exactly_at_the_significance_level():
    # 15 votes of 20 for class 0: the two-sided binomial p-value is 2 P(Bin(20, 1/2) >= 15)
    n = 20
    p_value = 2 * stats.binom.sf(14, 20, 0.5)
    assert p_value == pytest.approx(stats.binomtest(15, 20, 0.5).pvalue, rel=1e-12)

    def predict(alpha):
        smoothed = SmoothedClassifier(_Scripted(range(15, 20)), sigma=0.1, num_classes=2)
        return int(smoothed.predict(torch.zeros(1, 2), n=n, alpha=alpha)[0])

    assert predict(p_value) == 0  # p-value <= alpha: the class is returned
    assert predict(p_value * (1 - 1e-9)) == ABSTAIN
    assert predict(p_value * 1.4) == 0


def test_noise_is_drawn_from_the_generator_in_the_inputs_dtype_and_added():
    sigma, n = 0.7, 300
    model = _threshold_model().double()
    x = torch.tensor([[0.1, 0.0, 0.0], [-0.3, 0.0, 0.0]], dtype=torch.float64)
    smoothed = SmoothedClassifier(model, sigma=sigma, num_classes=2, batch_size=128)
    counts = smoothed.sample_counts(x, n, generator=torch.Generator().manual_seed(9))
    # slow reference: the same stream, chunk by chunk, rows ordered example by example
    g = torch.Generator().manual_seed(9)
    rows = x.repeat_interleave(n, dim=0)
    noisy = torch.cat([r + sigma * torch.randn(r.shape, generator=g, dtype=torch.float64) for r in rows.split(128)])
    votes = (noisy[:, 0] <= 0).long().view(2, n)  # class 1 iff the first feature is not positive
    expected = torch.stack([n - votes.sum(1), votes.sum(1)], dim=1)
    assert torch.equal(counts, expected)
    # certify and predict draw from the generator they are given, not from the global one
    cert = smoothed.certify(x, n0=40, n=n, alpha=0.01, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    smoothed.sample_counts(x, 40, generator=g)
    assert torch.equal(cert.counts, smoothed.sample_counts(x, n, generator=g))
    torch.manual_seed(123)
    a = smoothed.predict(x, n, 0.2, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(321)
    b = smoothed.predict(x, n, 0.2, generator=torch.Generator().manual_seed(4))
    counts4 = smoothed.sample_counts(x, n, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.tolist() == [
        int(c.argmax()) if stats.binomtest(int(c.max()), n, 0.5).pvalue <= 0.2 else ABSTAIN for c in counts4
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_results_stay_on_the_inputs_device():
    from captum_pags.training import PGD

    model = _threshold_model().cuda()
    x = torch.tensor([[1.0, 0.0, 0.0]], device="cuda")
    smoothed = SmoothedClassifier(model, sigma=0.5, num_classes=2)
    cert = smoothed.certify(x, n0=10, n=100, alpha=0.01, generator=torch.Generator("cuda").manual_seed(0))
    assert all(t.device.type == "cuda" for t in (cert.prediction, cert.radius, cert.p_lower, cert.counts))
    assert smoothed.predict(x, 100, 0.01, generator=torch.Generator("cuda").manual_seed(0)).device.type == "cuda"
    assert PGD(model, 0.3, steps=2)(x, target=torch.tensor([0], device="cuda")).device.type == "cuda"
