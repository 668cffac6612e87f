"""Bad and unusual inputs for every public score class and ScoreAttribution.

Every case ends in one of: a ``ValueError``/``TypeError`` whose message names the argument, or
the right answer (compared with a float reference on the same values). After every case, also one
that raised, the networks' mode, parameters, buffers, ``requires_grad``, ``.grad`` and hooks are
as they were. ``python tests/test_bad_inputs_scores.py`` prints the counts.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from _score_fakes import tiny_unet
from conftest import assert_model_unchanged, model_snapshot
from diffusers import DDPMScheduler
from torch import nn

from captum_pags.attr import ScoreAttribution
from captum_pags.scores import (
    BayesOptimalClassifier,
    DenoiserScore,
    DiffusersScore,
    GaussianMixtureScore,
    ScorePair,
    SubspaceGaussianMixtureScore,
)

SHAPE = (1, 8, 8)
C = 3
PRIORS = torch.tensor([0.5, 0.3, 0.2])


class BatchNormDenoiser(nn.Module):
    """A class-conditional denoiser with BatchNorm, so that running it in train mode would change buffers."""

    def __init__(self, num_labels):
        super().__init__()
        self.conv = nn.Conv2d(1 + num_labels, 1, 3, padding=1)
        self.norm = nn.BatchNorm2d(1)

    def forward(self, x, sigma, class_labels=None):
        labels = nn.functional.one_hot(class_labels, self.conv.in_channels - 1).to(x.dtype)
        labels = labels[:, :, None, None].expand(-1, -1, *x.shape[2:])
        out = self.norm(self.conv(torch.cat([x, labels], dim=1)))
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2) + 0.1 * out


@dataclass
class Subject:
    name: str
    call: Callable[..., torch.Tensor]  # call(x, sigma, target, **kw)
    networks: list = field(default_factory=list)
    unconditional: bool = True
    data_range: Any = None
    sigma: float = 0.2


def _mixtures():
    gen = torch.Generator().manual_seed(0)
    d = 64
    means = 0.5 + 0.1 * torch.randn(C, *SHAPE, generator=gen, dtype=torch.float64)
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    full = GaussianMixtureScore(means, 0.01 * a @ a.T / d + 0.01 * torch.eye(d, dtype=torch.float64), PRIORS)
    basis = torch.randn(4, *SHAPE, generator=gen, dtype=torch.float64)
    sub = SubspaceGaussianMixtureScore(basis, torch.randn(C, 4, generator=gen), 0.2, 0.05, PRIORS, input_shape=SHAPE)
    return full, sub


def _unet(num_class_embeds):
    torch.manual_seed(1)
    unet = tiny_unet(num_class_embeds).train()  # train mode: dropout would make calls differ
    unet.conv_in.weight.requires_grad_(False)
    unet.conv_out.weight.grad = torch.ones_like(unet.conv_out.weight)
    return unet


@pytest.fixture(scope="module")
def subjects():
    full, sub = _mixtures()
    null_unet, cond_unet, uncond_unet = _unet(C + 1), _unet(C), _unet(None)
    diffusers = DiffusersScore(null_unet, DDPMScheduler(), null_class=C)
    bn = BatchNormDenoiser(C + 1).train()
    denoiser = DenoiserScore(
        bn, C, null_class=C, data_range=(0.0, 1.0), model_range=(-1.0, 1.0), sigma_range=(0.01, 10.0), input_shape=SHAPE
    )
    pair = ScorePair(DiffusersScore(cond_unet, DDPMScheduler()), DiffusersScore(uncond_unet, DDPMScheduler()))
    clf = BayesOptimalClassifier(full, 0.2)

    def score_of(model):
        return lambda x, sigma, target, **kw: model.score(x, sigma, target, **kw)

    def attribution(model, mode):
        def call(x, sigma, target, batch_size=None):
            return ScoreAttribution(model, sigma, mode=mode, batch_size=batch_size).attribute(x, target=target)

        return call

    def classifier(x, sigma, target, **kw):
        return clf(x)

    return {
        "gaussian_mixture": Subject("gaussian_mixture", score_of(full), sigma=0.2),
        "subspace_mixture": Subject("subspace_mixture", score_of(sub)),
        "diffusers": Subject("diffusers", score_of(diffusers), [null_unet], data_range=(0.0, 1.0)),
        "denoiser": Subject("denoiser", score_of(denoiser), [bn], data_range=(0.0, 1.0)),
        "pair": Subject("pair", score_of(pair), [cond_unet, uncond_unet], data_range=(0.0, 1.0)),
        "attribution_bayes": Subject(
            "attribution_bayes", attribution(diffusers, "bayes"), [null_unet], unconditional=False, data_range=(0, 1)
        ),
        "attribution_mixture": Subject("attribution_mixture", attribution(full, "conditional"), unconditional=False),
        "bayes_classifier": Subject("bayes_classifier", classifier, [clf], unconditional=False),
    }


def _x(n=3, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


REFUSE, ANSWER = "refused", "answered right"


def _cases():
    """(case id, builder) pairs; a builder maps a subject to (args, kwargs, expectation)."""
    nan = _x()
    nan[0, 0, 0, 0] = float("nan")
    inf = _x()
    inf[1, 0, 2, 2] = float("inf")
    bits = (_x() > 0.5).to(torch.int64)
    y = torch.tensor([0, 2, 1])
    cases = {
        # shape
        "wrong_shape": lambda s: ((torch.rand(3, 1, 6, 6), s.sigma, y), {}, (REFUSE, "inputs")),
        "flat_inputs": lambda s: ((torch.rand(3, 64), s.sigma, y), {}, (REFUSE, "inputs")),
        "zero_dim": lambda s: ((torch.tensor(0.5), s.sigma, None), {}, (REFUSE, "inputs")),
        "empty_batch": lambda s: (
            (torch.rand(0, *SHAPE), s.sigma, torch.zeros(0, dtype=torch.long)),
            {},
            (REFUSE, "inputs"),
        ),
        "not_a_tensor": lambda s: ((_x().tolist(), s.sigma, y), {}, (REFUSE, "inputs")),
        # dtype
        "int64_inputs": lambda s: ((bits, s.sigma, y), {}, (ANSWER, bits.float(), 1e-5)),
        "uint8_01": lambda s: ((bits.to(torch.uint8), s.sigma, y), {}, (ANSWER, bits.float(), 1e-5)),
        "uint8_0_255": lambda s: (
            ((255 * _x()).to(torch.uint8), s.sigma, y),
            {},
            (REFUSE, "data range")
            if s.data_range is not None
            else (ANSWER, (255 * _x()).to(torch.uint8).float(), 1e-5),
        ),
        "float16": lambda s: ((_x().half(), s.sigma, y), {}, (ANSWER, _x().half().float(), 2e-2)),
        "bfloat16": lambda s: ((_x().bfloat16(), s.sigma, y), {}, (ANSWER, _x().bfloat16().float(), 5e-2)),
        "float64": lambda s: ((_x().double(), s.sigma, y), {}, (ANSWER, _x(), 1e-4)),
        "complex": lambda s: ((_x().to(torch.complex64), s.sigma, y), {}, (REFUSE, "inputs")),
        "bool": lambda s: ((_x() > 0.5, s.sigma, y), {}, (REFUSE, "inputs")),
        # device
        "meta_device": lambda s: ((_x().to("meta"), s.sigma, y), {}, (REFUSE, "inputs")),
        # NaN / inf
        "nan_inputs": lambda s: ((nan, s.sigma, y), {}, (REFUSE, "inputs")),
        "inf_inputs": lambda s: ((inf, s.sigma, y), {}, (REFUSE, "inputs")),
        # values near and far outside the data range
        "noisy_inputs": lambda s: ((_x() + 0.3 * torch.randn(3, *SHAPE), s.sigma, y), {}, (ANSWER, None, 0)),
        "huge_values": lambda s: (
            (1e3 * _x(), s.sigma, y),
            {},
            (REFUSE, "data range") if s.data_range is not None else (ANSWER, 1e3 * _x(), 1e-5),
        ),
        # sigma
        "sigma_negative": lambda s: ((_x(), -0.1, y), {}, (REFUSE, "sigma")),
        "sigma_nan": lambda s: ((_x(), float("nan"), y), {}, (REFUSE, "sigma")),
        "sigma_inf": lambda s: ((_x(), float("inf"), y), {}, (REFUSE, "sigma")),
        "sigma_string": lambda s: ((_x(), "0.2", y), {}, (REFUSE, "sigma")),
        "sigma_vector": lambda s: ((_x(), torch.tensor([0.1, 0.2]), y), {}, (REFUSE, "sigma")),
        "sigma_huge": lambda s: (
            (_x(), 1e6, y),
            {},
            (REFUSE, "sigma") if s.data_range is not None else (ANSWER, _x(), 1e-5),
        ),
        # targets
        "target_float_list": lambda s: ((_x(), s.sigma, [0.0, 1.0, 2.0]), {}, (REFUSE, "target")),
        "target_fractional": lambda s: ((_x(), s.sigma, torch.tensor([0.5, 1.0, 2.0])), {}, (REFUSE, "target")),
        "target_nan": lambda s: ((_x(), s.sigma, torch.tensor([float("nan"), 1.0, 2.0])), {}, (REFUSE, "target")),
        "target_bool": lambda s: ((_x(), s.sigma, torch.tensor([True, False, True])), {}, (REFUSE, "target")),
        "target_string": lambda s: ((_x(), s.sigma, "cat"), {}, (REFUSE, "target")),
        "target_negative": lambda s: ((_x(), s.sigma, torch.tensor([0, -1, 1])), {}, (REFUSE, "target")),
        "target_too_large": lambda s: ((_x(), s.sigma, torch.tensor([0, C, 1])), {}, (REFUSE, "target")),
        "target_wrong_count": lambda s: ((_x(), s.sigma, torch.tensor([0, 1])), {}, (REFUSE, "target")),
        "target_2d": lambda s: ((_x(), s.sigma, torch.tensor([[0, 1, 2]])), {}, (REFUSE, "target")),
        "target_int": lambda s: ((_x(), s.sigma, 1), {}, (ANSWER, _x(), 1e-5)),
        "target_none": lambda s: (
            (_x(), s.sigma, None),
            {},
            (ANSWER, _x(), 1e-5) if s.unconditional else (REFUSE, "target"),
        ),
        # chunking
        "batch_size_zero": lambda s: ((_x(), s.sigma, y), {"batch_size": 0}, (REFUSE, "batch_size")),
        "batch_size_float": lambda s: ((_x(), s.sigma, y), {"batch_size": 1.5}, (REFUSE, "batch_size")),
        "batch_size_one": lambda s: ((_x(), s.sigma, y), {"batch_size": 1}, (ANSWER, _x(), 1e-5)),
    }
    return cases


CASES = _cases()
SUBJECTS = [
    "gaussian_mixture",
    "subspace_mixture",
    "diffusers",
    "denoiser",
    "pair",
    "attribution_bayes",
    "attribution_mixture",
    "bayes_classifier",
]
# what a plain classifier forward cannot see: sigma, targets and chunking are not its arguments
_CLASSIFIER_SKIPS = ("sigma_", "target_", "batch_size_")


def expected_outcomes(subjects):
    """Counts of the matrix's cases by expected outcome (every one is asserted by the test)."""
    counts: Counter = Counter()
    for name in SUBJECTS:
        for case, build in CASES.items():
            if name == "bayes_classifier" and case.startswith(_CLASSIFIER_SKIPS):
                continue
            counts[build(subjects[name])[2][0]] += 1
    return counts


def _state(networks):
    snaps = [model_snapshot(n) for n in networks]
    buffers = [[b.clone() for b in n.buffers()] for n in networks]
    return snaps, buffers


def _assert_state(networks, state):
    snaps, buffers = state
    for net, snap, bufs in zip(networks, snaps, buffers):
        assert_model_unchanged(net, snap)
        for a, b in zip(net.buffers(), bufs):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# sigma and target are not arguments of a classifier's forward: those cases are not generated for it
_MATRIX = [
    (subject_name, case)
    for subject_name in SUBJECTS
    for case in CASES
    if not (subject_name == "bayes_classifier" and case.startswith(_CLASSIFIER_SKIPS))
]


@pytest.mark.parametrize(("subject_name", "case"), _MATRIX)
def test_bad_input_matrix(subjects, subject_name, case):
    subject = subjects[subject_name]
    args, kwargs, expect = CASES[case](subject)
    x, sigma, target = args
    state = _state(subject.networks)
    if expect[0] == REFUSE:
        with pytest.raises((ValueError, TypeError)) as info:
            subject.call(x, sigma, target, **kwargs)
        assert f"`{expect[1]}`" in str(info.value) or expect[1] in str(info.value), str(info.value)
        assert str(info.value).startswith("Expected"), str(info.value)
    else:
        out = subject.call(x, sigma, target, **kwargs)
        ref_x, tol = expect[1], expect[2]
        expected_dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        assert out.dtype == expected_dtype and out.device == x.device and torch.isfinite(out).all()
        if ref_x is not None:
            ref = subject.call(ref_x, sigma, target)
            scale = float(ref.abs().max()) + 1e-12
            torch.testing.assert_close(out.double(), ref.double(), rtol=tol, atol=tol * scale)
    _assert_state(subject.networks, state)
    # the user's data come back as they went in
    if isinstance(x, torch.Tensor) and x.device.type != "meta":
        assert not x.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("subject_name", ["gaussian_mixture", "diffusers", "pair", "attribution_bayes"])
def test_inputs_on_another_device_come_back_there(subjects, subject_name):
    subject = subjects[subject_name]
    y = torch.tensor([0, 2, 1])
    out = subject.call(_x().cuda(), subject.sigma, y.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), subject.call(_x(), subject.sigma, y), rtol=1e-4, atol=1e-4)


def test_nan_and_inf_mixture_parameters_are_refused_on_construction():
    eye = torch.eye(2)
    bad = torch.tensor([[float("nan"), 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="`means` to hold finite values"):
        GaussianMixtureScore(bad, eye)
    with pytest.raises(ValueError, match="`covariances` to hold finite values"):
        GaussianMixtureScore(torch.zeros(2, 2), eye * float("inf"))
    with pytest.raises(ValueError, match="`weights` to be 2 finite positive numbers"):
        GaussianMixtureScore(torch.zeros(2, 2), eye, torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="`weights` to be 2 finite positive numbers"):
        GaussianMixtureScore(torch.zeros(2, 2), eye, torch.tensor([float("inf"), 1.0]))
    with pytest.raises(TypeError, match="`means` to hold real numbers"):
        GaussianMixtureScore(torch.zeros(2, 2, dtype=torch.complex64), eye)
    basis = torch.tensor([[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="`basis` to hold finite values"):
        SubspaceGaussianMixtureScore(basis * float("nan"), torch.zeros(2, 1), 1.0, 0.1)
    with pytest.raises(ValueError, match="`means` to hold finite values"):
        SubspaceGaussianMixtureScore(basis, torch.tensor([[float("inf")], [0.0]]), 1.0, 0.1)
    with pytest.raises(ValueError, match="`stds` to hold finite values"):
        SubspaceGaussianMixtureScore(basis, torch.zeros(2, 1), float("nan"), 0.1)
    with pytest.raises(ValueError, match="`noise_std` to be a finite number"):
        SubspaceGaussianMixtureScore(basis, torch.zeros(2, 1), 1.0, float("inf"))
    with pytest.raises(ValueError, match="`means` to have shape"):
        GaussianMixtureScore(torch.zeros(2), eye)


def test_low_precision_overflow_is_refused_not_returned_as_inf():
    # a very sharp density: scores of order 1e6, beyond float16's range
    sharp = GaussianMixtureScore(torch.zeros(1, 2), 1e-12 * torch.eye(2))
    x = torch.tensor([[1.0, -1.0]])
    assert torch.isfinite(sharp.score(x, 1e-3)).all()
    with pytest.raises(ValueError, match="overflow.*pass float32 `inputs`"):
        sharp.score(x.half(), 1e-3)


def test_repeated_calls_are_identical_for_train_mode_networks(subjects):
    """Dropout and BatchNorm in train mode would make two identical calls differ."""
    for name in ("diffusers", "denoiser", "pair"):
        subject = subjects[name]
        a = subject.call(_x(), subject.sigma, [0, 1, 2])
        b = subject.call(_x(), subject.sigma, [0, 1, 2])
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_matrix_refuses_and_answers(subjects):
    counts = expected_outcomes(subjects)
    print(f"bad-input matrix: {sum(counts.values())} cases, {counts[REFUSE]} refused, {counts[ANSWER]} answered right")
    assert counts[REFUSE] > 150 and counts[ANSWER] > 50


@pytest.mark.parametrize("data_range", [(0.0, 1.0), (-1.0, 3.0)])
@pytest.mark.parametrize("sigma", [0.05, 0.5])
def test_the_range_rule_at_its_boundaries(data_range, sigma):
    """Values up to one range width plus 6 sigma outside ``data_range`` are scored, beyond it refused."""
    model = DenoiserScore(lambda x, s: 0.5 * x, data_range=data_range, model_range=data_range)
    low, high = data_range
    pad = (high - low) + 6 * sigma
    for value, ok in (
        (high + 0.99 * pad, True),
        (low - 0.99 * pad, True),
        (high + 1.01 * pad, False),
        (low - 1.01 * pad, False),
    ):
        x = torch.full((1, 2), value)
        if ok:
            torch.testing.assert_close(model.score(x, sigma), -0.5 * x / sigma**2)
        else:
            with pytest.raises(ValueError, match="data range"):
                model.score(x, sigma)


def test_a_pair_applies_each_models_own_checks():
    class NonNegative(GaussianMixtureScore):
        def check_call(self, inputs, sigma, target):
            if isinstance(inputs, torch.Tensor) and bool((inputs < 0).any()):
                raise ValueError("Expected `inputs` >= 0 for this model")
            return super().check_call(inputs, sigma, target)

    mixture = NonNegative(torch.zeros(2, 2), torch.eye(2))
    for pair in (
        ScorePair(mixture, GaussianMixtureScore(torch.zeros(1, 2), torch.eye(2))),
        ScorePair(_cond(), mixture),
    ):
        assert torch.isfinite(pair.score(torch.ones(2, 2), 0.3, [0, 1])).all()
        with pytest.raises(ValueError, match="`inputs` >= 0"):
            pair.score(-torch.ones(2, 2), 0.3, [0, 1])


def _cond():
    return DenoiserScore(lambda x, s, class_labels: 0.5 * x, 2)


def test_a_model_returning_nan_is_refused_not_passed_on():
    nan_denoiser = DenoiserScore(lambda x, s: x * float("nan"))
    with pytest.raises(ValueError, match="Expected the score model to return finite scores"):
        nan_denoiser.score(torch.rand(2, 3), 0.2)
    torch.manual_seed(0)
    unet = tiny_unet(4).eval()
    with torch.no_grad():
        unet.conv_out.weight[0, 0, 0, 0] = float("inf")
    model = DiffusersScore(unet, DDPMScheduler(), null_class=3)
    before = _state([unet])
    for call in (lambda: model.score(_x(), 0.2, [0, 1, 2]), lambda: model.bayes_score(_x(), 0.2, [0, 1, 2])):
        with pytest.raises(ValueError, match="returned NaN or inf; check the network's weights"):
            call()
    _assert_state([unet], before)
