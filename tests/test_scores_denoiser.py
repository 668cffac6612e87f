import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags.scores import DenoiserScore, GaussianMixtureScore

SHAPE = (1, 3, 3)
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def mixture():
    gen = torch.Generator().manual_seed(0)
    d = math.prod(SHAPE)
    a = torch.randn(NUM_CLASSES, d, d, generator=gen, dtype=torch.float64)
    covs = 0.05 * a @ a.transpose(1, 2) / d + 0.01 * torch.eye(d, dtype=torch.float64)
    means = 0.5 + 0.3 * torch.randn(NUM_CLASSES, *SHAPE, generator=gen, dtype=torch.float64)
    return GaussianMixtureScore(means, covs)


class ExactDenoiser(nn.Module):
    """EDM-style optimal denoiser D(x; sigma) = E[x0 | x] of an exact mixture, in model units a x + b."""

    def __init__(self, exact, scale=1.0, shift=0.0, null_class=None, one_hot=False):
        super().__init__()
        self.exact, self.scale, self.shift = exact, scale, shift
        self.null_class, self.one_hot = null_class, one_hot
        self.weight = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x, sigma, class_labels=None):
        self.calls.append((sigma.clone(), None if class_labels is None else class_labels.clone()))
        assert sigma.shape == (x.shape[0],)
        s = float(sigma[0]) / self.scale
        x_u = (x.double() - self.shift) / self.scale
        if class_labels is None:
            score = self.exact.score(x_u, s)
        else:
            labels = class_labels.argmax(1) if self.one_hot else class_labels
            null = torch.zeros_like(labels, dtype=torch.bool)
            if self.null_class is not None:  # per example: the null label gives the unconditional score
                null = labels == self.null_class
                labels = labels - (labels > self.null_class).long()
            cond = self.exact.score(x_u, s, labels.clamp(0, self.exact.num_classes - 1))
            score = torch.where(null.view(-1, *[1] * (x.dim() - 1)), self.exact.score(x_u, s), cond)
        denoised_u = x_u + s**2 * score
        return (self.scale * denoised_u + self.shift).to(x.dtype) + self.weight


def test_unconditional_denoiser_score_is_exact(mixture):
    model = DenoiserScore(ExactDenoiser(mixture))
    x = 0.5 + 0.3 * torch.randn(5, *SHAPE)
    for sigma in (0.05, 0.3, 2.0):
        torch.testing.assert_close(
            model.score(x, sigma), mixture.score(x.double(), sigma).float(), atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            model.denoise(x, sigma), x + sigma**2 * mixture.score(x.double(), sigma).float(), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("one_hot", [False, True])
def test_conditional_denoiser_with_units_and_null_label(mixture, one_hot):
    # data in [0, 1], denoiser trained on [-1, 1]; null label first, so user class c is label c + 1
    den = ExactDenoiser(mixture, scale=2.0, shift=-1.0, null_class=0, one_hot=one_hot)
    model = DenoiserScore(
        den, NUM_CLASSES, null_class=0, one_hot_labels=one_hot, data_range=(0.0, 1.0), model_range=(-1.0, 1.0)
    )
    x = 0.5 + 0.3 * torch.randn(4, *SHAPE)
    y = torch.tensor([2, 0, 1, 2])
    sigma = 0.2
    torch.testing.assert_close(
        model.score(x, sigma, y), mixture.score(x.double(), sigma, y).float(), atol=1e-4, rtol=1e-4
    )
    sigmas, labels = den.calls[-1]
    torch.testing.assert_close(sigmas, torch.full((4,), 2 * sigma))  # model units
    expected_labels = y + 1
    if one_hot:
        expected_labels = F.one_hot(expected_labels, NUM_CLASSES + 1).float()
    torch.testing.assert_close(labels, expected_labels)
    torch.testing.assert_close(model.score(x, sigma), mixture.score(x.double(), sigma).float(), atol=1e-4, rtol=1e-4)
    # the Bayes difference: one denoiser call with the class labels and the null label side by side
    n_calls = len(den.calls)
    bayes = model.bayes_score(x, sigma, y)
    assert len(den.calls) == n_calls + 1
    sigmas, labels = den.calls[-1]
    expected_labels = torch.cat([y + 1, torch.zeros(4, dtype=torch.long)])
    if one_hot:
        expected_labels = F.one_hot(expected_labels, NUM_CLASSES + 1).float()
    torch.testing.assert_close(labels, expected_labels)
    exact = mixture.score(x.double(), sigma, y) - mixture.score(x.double(), sigma)
    torch.testing.assert_close(bayes, exact.float(), atol=1e-4, rtol=1e-4)


def test_conditional_without_null_label_needs_a_target(mixture):
    model = DenoiserScore(ExactDenoiser(mixture), NUM_CLASSES)
    x = 0.5 + 0.3 * torch.randn(2, *SHAPE)
    assert not model.supports_unconditional
    torch.testing.assert_close(model.score(x, 0.1, 1), mixture.score(x.double(), 0.1, 1).float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"Expected `target` \(class labels\)"):
        model.score(x, 0.1)


def test_bad_inputs(mixture):
    model = DenoiserScore(ExactDenoiser(mixture), NUM_CLASSES, sigma_range=(0.01, 5.0), input_shape=SHAPE)
    x = torch.rand(2, *SHAPE)
    with pytest.raises(ValueError, match=r"Expected `sigma` to be a finite number > 0 but got -1.0"):
        model.score(x, -1.0, 0)
    with pytest.raises(ValueError, match=r"Expected `sigma` to be in \[0.01, 5\] for this model but got 6.0"):
        model.score(x, 6.0, 0)
    with pytest.raises(ValueError, match=r"Expected `inputs` to have per-example shape \(1, 3, 3\)"):
        model.score(torch.rand(2, 2, 3, 3), 0.1, 0)
    with pytest.raises(ValueError, match=r"Expected `target` labels in \[0, 3\) but got values in \[0, 5\]"):
        model.score(x, 0.1, [0, 5])
    with pytest.raises(ValueError, match="to hold finite values"):
        model.score(x.clone().fill_(float("inf")), 0.1, 0)
    with pytest.raises(ValueError, match=r"Expected `target=None` for this unconditional score model"):
        DenoiserScore(ExactDenoiser(mixture)).score(x, 0.1, 0)
    with pytest.raises(ValueError, match="Expected `data_range` and `model_range` to be given together"):
        DenoiserScore(ExactDenoiser(mixture), data_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"Expected `null_class` in \[0, 4\) but got 7"):
        DenoiserScore(ExactDenoiser(mixture), NUM_CLASSES, null_class=7)
    with pytest.raises(ValueError, match="Expected `null_class=None` for a model without class labels"):
        DenoiserScore(ExactDenoiser(mixture), null_class=0)
    with pytest.raises(ValueError, match=r"Expected `num_classes` to be >= 1 but got 0"):
        DenoiserScore(ExactDenoiser(mixture), 0)
    with pytest.raises(ValueError, match=r"Expected `sigma_range` to satisfy 0 <= low < high"):
        DenoiserScore(ExactDenoiser(mixture), sigma_range=(1.0, 0.5))
    with pytest.raises(TypeError, match="Expected `denoiser` to be callable"):
        DenoiserScore(3)
    with pytest.raises(ValueError, match="Expected `denoiser` to return a tensor shaped like its input"):
        DenoiserScore(lambda x, sigma: x[:1]).score(torch.rand(2, 4), 0.1)


def test_denoiser_state_is_restored_and_eval_mode_is_used():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.5)

        def forward(self, x, sigma):
            if sigma[0] > 1:
                raise RuntimeError("too noisy")
            return self.drop(self.lin(x))

    den = Noisy().train()
    den.lin.weight.grad = torch.ones(4, 4)
    den.lin.bias.requires_grad_(False)
    before = model_snapshot(den)
    model = DenoiserScore(den)
    x = torch.randn(3, 4)
    torch.testing.assert_close(model.score(x, 0.5), model.score(x, 0.5))  # dropout off inside
    expected = (den.lin(x).detach() - x) / 0.25
    torch.testing.assert_close(model.score(x, 0.5), expected)
    assert_model_unchanged(den, before)
    with pytest.raises(RuntimeError, match="too noisy"):
        model.score(x, 2.0)
    assert_model_unchanged(den, before)


def test_range_and_output_errors_name_the_argument():
    with pytest.raises(ValueError, match="Expected `model_range` to be finite numbers with low < high"):
        DenoiserScore(lambda x, sigma: x, data_range=(0.0, 1.0), model_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="Expected `data_range` to be finite numbers with low < high"):
        DenoiserScore(lambda x, sigma: x, data_range=(1.0, 0.0), model_range=(-1.0, 1.0))
    with pytest.raises(TypeError, match="Expected `denoiser` to return a torch.Tensor"):
        DenoiserScore(lambda x, sigma: x.tolist()).score(torch.rand(2, 4), 0.1)


@pytest.mark.parametrize("sigma_range", [(1.0, 1.0), (0.0, 0.0), (2.0, 1.0)])
def test_an_empty_sigma_range_is_refused(sigma_range):
    with pytest.raises(ValueError, match=r"Expected `sigma_range` to satisfy 0 <= low < high"):
        DenoiserScore(lambda x, sigma: x, sigma_range=sigma_range)
    assert DenoiserScore(lambda x, sigma: x, sigma_range=(1.0, 1.5)).sigma_range == (1.0, 1.5)


def test_score_is_differentiable_in_the_inputs_not_the_parameters():
    class LinearDenoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x, sigma):
            return self.lin(x)

    den = LinearDenoiser()
    lin = den.lin
    model = DenoiserScore(den)
    x = torch.randn(2, 3, requires_grad=True)
    assert not model.score(x.detach(), 0.5).requires_grad  # parameters are frozen inside the call
    s = model.score(x, 0.5)
    s.sum().backward()
    # d/dx sum((W x + b - x) / sigma^2) = (W^T 1 - 1) / sigma^2 for every example
    expected = ((lin.weight.detach().sum(0) - 1) / 0.25).expand(2, 3)
    torch.testing.assert_close(x.grad, expected)
    assert lin.weight.grad is None and lin.bias.grad is None
    assert lin.weight.requires_grad and lin.bias.requires_grad


def test_networks_finds_a_module_behind_a_bound_method():
    lin = nn.Linear(2, 2)
    assert DenoiserScore(lin.forward).networks() == [lin]
    assert DenoiserScore(lin).networks() == [lin]
    assert DenoiserScore(lambda x, sigma: x).networks() == []


def test_check_fit_compares_data_ranges_only_when_both_are_known():
    f = lambda x, sigma: x  # noqa: E731
    unknown = DenoiserScore(f)
    assert unknown.data_range is None
    unknown.check_fit(data_range=(0, 255))  # the model's own range is unknown: nothing to compare
    known = DenoiserScore(f, data_range=(0.0, 1.0), model_range=(-1.0, 1.0))
    known.check_fit(input_shape=(2,), num_classes=3)  # no data_range given: nothing to compare
    known.check_fit(data_range=(1e-12, 1.0))  # float noise around 0 (e.g. a computed minimum) is the same range
    known.check_fit(data_range=(0, 1))
    for bad in ((1e-3, 1.0), (0.0, 1.001), (-1.0, 1.0)):
        with pytest.raises(ValueError, match=r"Expected data in the score model's data_range \(0.0, 1.0\)"):
            known.check_fit(data_range=bad)


class _Reached(Exception):
    pass


class _MetaDenoiser(nn.Module):
    """A denoiser whose weights live on another device (``meta``): records what it is called with, then stops."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros((), device="meta"))
        self.seen = []

    def forward(self, x, sigma, class_labels=None):
        self.seen.append((x.device.type, sigma.device.type, None if class_labels is None else class_labels.device.type))
        raise _Reached


def test_the_denoiser_is_called_on_its_own_device():
    den = _MetaDenoiser()
    model = DenoiserScore(den, NUM_CLASSES, null_class=NUM_CLASSES)
    x, y = torch.rand(2, 4), torch.tensor([0, 2])
    for call in (lambda: model.score(x, 0.3, y), lambda: model.score(x, 0.3), lambda: model.bayes_score(x, 0.3, y)):
        with pytest.raises(_Reached):
            call()
    assert den.seen == [("meta", "meta", "meta")] * 3


def test_the_settings_round_trip_through_to_config_as_json():
    import json

    from captum_pags.scores import DenoiserScore
    from captum_pags.scores._convert import AffineUnits

    settings = dict(
        null_class=3,
        one_hot_labels=True,
        data_range=(0.0, 255.0),
        model_range=(-1.0, 1.0),
        sigma_range=(0.002, 80.0),
        input_shape=(3, 8, 8),
    )
    score = DenoiserScore(lambda x, s, y=None: x, 3, **settings)
    config = json.loads(json.dumps(score.to_config()))
    assert config == {
        "num_classes": 3,
        "null_class": 3,
        "one_hot_labels": True,
        "data_range": [0.0, 255.0],
        "model_range": [-1.0, 1.0],
        "sigma_range": [0.002, 80.0],
        "input_shape": [3, 8, 8],
    }
    assert DenoiserScore(lambda x, s, y=None: x, **config).to_config() == config
    plain = DenoiserScore(lambda x, s: x).to_config()
    assert (plain["data_range"], plain["model_range"], plain["input_shape"]) == (None, None, None)
    units = AffineUnits((0.0, 255.0), (-1.0, 1.0))
    x = torch.tensor([0.0, 127.5, 255.0], dtype=torch.float64)
    torch.testing.assert_close(units.to_model(x), torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(units.to_data(units.to_model(x)), x, rtol=0, atol=1e-12)
    assert units.to_config() == {"data_range": [0.0, 255.0], "model_range": [-1.0, 1.0]}
