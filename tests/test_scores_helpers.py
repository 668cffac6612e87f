"""Contracts of the score models' helpers and settings, called directly or through the public classes.

Covers the range rule's closed interval, ``batch_size`` chunking of :meth:`ScoreModel.score` and
:meth:`ScoreModel.denoise`, the finite-score check, reading configs from objects with attributes,
label conversion (dtype and device, checked on the ``meta`` device standing in for a second
device), and how :class:`DiffusersScore` reads its scheduler and UNet config: the default
prediction type, non-square ``sample_size``, schedules ending in ``alpha_cumprod = 0``, the
float64 timestep search and the device of the timesteps it feeds the UNet.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from captum_pags.scores import DiffusersScore, ScoreModel
from captum_pags.scores._convert import config_value, embedding_labels
from captum_pags.scores._inputs import cast_result, format_target

META = torch.device("meta")


class RecordingScore(ScoreModel):
    """Score ``-x / (1 + sigma^2)`` (a standard normal), recording the batch size of every evaluation."""

    num_classes = 3

    def __init__(self, data_range=None):
        self.data_range = data_range
        self.batches = []

    def _score(self, inputs, sigma, target):
        self.batches.append(inputs.shape[0])
        return -inputs / (1 + sigma**2)


class ConstantScore(ScoreModel):
    """A score model returning one constant for every entry."""

    def __init__(self, value):
        self.value = value

    def _score(self, inputs, sigma, target):
        return torch.full_like(inputs, self.value)


class LinearUNet(nn.Module):
    """A fake diffusers UNet predicting ``eps = x_t`` in float64, with a config mapping."""

    def __init__(self, **config):
        super().__init__()
        self.config = config
        self.weight = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, sample, timestep, class_labels=None):
        return sample + 0 * self.weight


class MetaUNet(nn.Module):
    """A fake UNet whose parameters live on the ``meta`` device; records where its arguments are."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros((), device=META))
        self.seen = []

    def forward(self, sample, timestep, class_labels=None):
        self.seen.append((sample.device, timestep.device, timestep.dtype, timestep.shape))
        return -torch.ones(sample.shape)  # eps = -1 (on the CPU, so that a score can come back)


def _scheduler(alphas_cumprod, **config):
    """A minimal DDPM-like scheduler: ``alphas_cumprod`` and a config object with attributes."""
    abar = torch.tensor(alphas_cumprod, dtype=torch.float64)
    return SimpleNamespace(alphas_cumprod=abar, config=SimpleNamespace(**config))


def _abar(log_sigma):
    """alpha_cumprod of a noise level: 1 / (1 + sigma^2)."""
    return 1.0 / (1.0 + math.exp(2.0 * log_sigma))


# ---------------------------------------------------------------------- the range rule
def test_range_rule_accepts_the_closed_interval_ends():
    """Values exactly at l - w - 6 sigma and h + w + 6 sigma are accepted; one ulp beyond is refused."""
    model = RecordingScore(data_range=(0.0, 1.0))
    sigma = 0.5  # pad = 1 * 1 + 6 * 0.5 = 4, so the interval is [-4, 5] exactly
    x = torch.tensor([[-4.0, 5.0]], dtype=torch.float64)
    torch.testing.assert_close(model.score(x, sigma), -x / 1.25, rtol=0, atol=0)
    below = torch.tensor([[math.nextafter(-4.0, -math.inf), 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="data range"):
        model.score(below, sigma)
    above = torch.tensor([[0.0, math.nextafter(5.0, math.inf)]], dtype=torch.float64)
    with pytest.raises(ValueError, match="data range"):
        model.score(above, sigma)


# ---------------------------------------------------------------------- batch_size
@pytest.mark.parametrize("target", [None, 1])
def test_score_batch_size_bounds_each_evaluation(target):
    """``score(..., batch_size=2)`` on 5 examples evaluates 2, 2, 1 at a time, with the same result."""
    model = RecordingScore()
    x = torch.arange(10, dtype=torch.float64).reshape(5, 2)
    out = model.score(x, 1.0, target, batch_size=2)
    assert model.batches == [2, 2, 1]
    torch.testing.assert_close(out, -x / 2.0, rtol=0, atol=0)


def test_denoise_passes_batch_size_on():
    """``denoise(..., batch_size=2)`` chunks like ``score`` and returns x + sigma^2 * score."""
    model = RecordingScore()
    x = torch.arange(10, dtype=torch.float64).reshape(5, 2)
    out = model.denoise(x, 1.0, batch_size=2)
    assert model.batches == [2, 2, 1]
    torch.testing.assert_close(out, x - x / 2.0, rtol=0, atol=0)


# ---------------------------------------------------------------------- finite scores
def test_finite_scores_whose_sum_overflows_are_returned():
    """Large but finite scores are not mistaken for NaN/inf because their sum overflows."""
    big = torch.tensor([[3e38, 3e38]])
    assert not bool(torch.isfinite(big.sum()))  # the premise of the test
    assert cast_result(big, torch.float32) is big
    torch.testing.assert_close(ConstantScore(3e38).score(torch.zeros(1, 2), 1.0), big, rtol=0, atol=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        cast_result(torch.tensor([[1.0, math.inf]]), torch.float32)


# ---------------------------------------------------------------------- configs
def test_config_value_reads_a_config_with_attributes():
    """``model.config`` may be an object with attributes (not a mapping): the key is read, else the default."""
    model = SimpleNamespace(config=SimpleNamespace(prediction_type="sample"))
    assert config_value(model, "prediction_type", "epsilon") == "sample"
    assert config_value(model, "variance_type", "fixed_small") == "fixed_small"
    assert config_value(SimpleNamespace(), "prediction_type", "epsilon") == "epsilon"


def test_prediction_type_from_a_scheduler_config_with_attributes_or_the_default():
    """The scheduler's ``config.prediction_type`` is used when given, ``"epsilon"`` when it has none."""
    abar = [0.9, 0.5, 0.1]
    unet = LinearUNet(in_channels=1)
    assert DiffusersScore(unet, _scheduler(abar, prediction_type="v_prediction")).prediction_type == "v_prediction"
    default = DiffusersScore(unet, _scheduler(abar))
    assert default.prediction_type == "epsilon"
    # eps = x_t is then read as a noise prediction: score = -a * sqrt(abar_t) * x_m / sigma_t
    x = torch.full((1, 1, 2, 2), 0.75, dtype=torch.float64)
    level = default.noise_level(0.5)  # sigma_m = 1 (a = 2): timestep 1, abar 0.5
    assert (level.timestep, level.alpha_cumprod) == (1.0, 0.5)
    expected = -2.0 * math.sqrt(0.5) * 0.5 / 1.0
    torch.testing.assert_close(default.score(x, 0.5), torch.full_like(x, expected), rtol=1e-12, atol=0)


@pytest.mark.parametrize("sample_size", [(4, 3), [4, 3]])
def test_non_square_sample_size_gives_the_input_shape(sample_size):
    """A ``(height, width)`` sample_size (tuple or list) fixes the per-example shape ``(C, H, W)``."""
    model = DiffusersScore(LinearUNet(in_channels=2, sample_size=sample_size), _scheduler([0.9, 0.5, 0.1]))
    assert model.sample_size == (4, 3)
    assert model.input_shape == torch.Size((2, 4, 3))
    assert model.score(torch.rand(1, 2, 4, 3), 0.5).shape == (1, 2, 4, 3)
    with pytest.raises(ValueError, match="sample_size"):
        model.score(torch.rand(1, 2, 3, 4), 0.5)


# ---------------------------------------------------------------------- the schedule
def test_schedule_drops_an_alpha_cumprod_of_zero():
    """A final ``alpha_cumprod = 0`` (infinite noise) is not a usable level: the range ends before it."""
    model = DiffusersScore(LinearUNet(in_channels=1), _scheduler([0.9, 0.5, 0.0]), data_range=(-1.0, 1.0))
    low, high = model.sigma_range
    assert math.isclose(low, 1.0 / 3.0, rel_tol=1e-12)  # sqrt(0.1 / 0.9)
    assert math.isclose(high, 1.0, rel_tol=1e-12)  # sqrt(0.5 / 0.5)
    assert model.noise_level(1.0).timestep == 1.0
    with pytest.raises(ValueError, match="sigma"):
        model.noise_level(5.0)


def test_interpolated_timestep_is_searched_in_float64():
    """Grid levels closer than float32 resolution: the fractional timestep is float64 interpolation."""
    grid = [-1.0, 0.3, 0.3 + 1e-9, 1.0]
    model = DiffusersScore(
        LinearUNet(in_channels=1),
        _scheduler([_abar(v) for v in grid]),
        data_range=(-1.0, 1.0),
        timestep_rule="interpolate",
    )
    log_sigmas = model._log_sigmas.numpy()
    np.testing.assert_allclose(log_sigmas, grid, rtol=0, atol=1e-14)
    sigma = math.exp(0.5 * (log_sigmas[1] + log_sigmas[2]))  # half-way between the two close levels
    expected = float(np.interp(math.log(sigma), log_sigmas, np.arange(4.0)))
    assert 1.4 < expected < 1.6
    level = model.noise_level(sigma)
    assert math.isclose(level.timestep, expected, rel_tol=0, abs_tol=1e-3)
    assert level.sigma == sigma


# ---------------------------------------------------------------------- labels and devices
def test_embedding_labels_are_long_on_the_requested_device():
    """Model label ids come back as long (what index ops such as one_hot need), on ``device``."""
    target = torch.tensor([0, 2, 1], dtype=torch.int32)
    for null_class, expected in ((None, [0, 2, 1]), (1, [0, 3, 2])):
        labels = embedding_labels(target, null_class, 3, torch.device("cpu"))
        assert labels.dtype == torch.long
        assert labels.tolist() == expected
        moved = embedding_labels(target, null_class, 3, META)
        assert (moved.device, moved.dtype, moved.shape) == (META, torch.long, (3,))
    null = embedding_labels(None, 4, 3, torch.device("cpu"))
    assert (null.dtype, null.tolist()) == (torch.long, [4, 4, 4])


@pytest.mark.parametrize("target", [2, [0, 1, 2], torch.tensor([0, 1, 2])])
def test_format_target_puts_labels_on_the_requested_device(target):
    """``format_target`` returns an ``(N,)`` long tensor on ``device`` for an int, a list or a tensor."""
    on_cpu = format_target(target, 3, torch.device("cpu"), num_classes=3)
    assert on_cpu.dtype == torch.long
    assert on_cpu.tolist() == ([2, 2, 2] if isinstance(target, int) else [0, 1, 2])
    moved = format_target(target, 3, META, num_classes=None)
    assert (moved.device, moved.dtype, moved.shape) == (META, torch.long, (3,))


@pytest.mark.parametrize("rule", ["nearest", "interpolate"])
def test_unet_gets_inputs_and_timesteps_on_its_own_device(rule):
    """The UNet is called with x_t and the timesteps on its parameters' device (here ``meta``)."""
    unet = MetaUNet()
    model = DiffusersScore(unet, _scheduler([0.9, 0.5, 0.1]), data_range=(-1.0, 1.0), timestep_rule=rule)
    sigma = 0.75 if rule == "interpolate" else 1.0
    out = model.score(torch.zeros(2, 1, 2, 2), sigma)
    t_dtype = torch.long if rule == "nearest" else torch.float32
    assert unet.seen == [(META, META, t_dtype, (2,))]
    # eps = -1 gives the score 1 / sigma_t (scale 1), on the inputs' device
    assert out.device == torch.device("cpu")
    torch.testing.assert_close(out, torch.full((2, 1, 2, 2), 1.0 / sigma), rtol=1e-6, atol=0)


# ---------------------------------------------------------------------- capabilities, errors and dtypes
class ConditionalOnlyScore(ScoreModel):
    """A class-conditional model without a null label: conditional scores only (``target + 0 * x``)."""

    num_classes = 3
    supports_unconditional = False

    def _score(self, inputs, sigma, target):
        return target.to(inputs.dtype).view(-1, 1) + 0 * inputs


class DtypeRecordingScore(ScoreModel):
    """Class-conditional with unconditional scores: ``target - x`` (``-x`` without one); records input dtypes."""

    num_classes = 3

    def __init__(self):
        self.dtypes = []

    def _score(self, inputs, sigma, target):
        self.dtypes.append(inputs.dtype)
        return -inputs if target is None else target.to(inputs.dtype).view(-1, 1) - inputs


def test_check_supports_conditional_does_not_need_unconditional_scores():
    """A model without a null label gives conditional scores; only ``"unconditional"``/``"bayes"`` are refused."""
    model = ConditionalOnlyScore()
    model.check_supports("conditional")
    torch.testing.assert_close(model.score(torch.zeros(2, 1), 1.0, [1, 2]), torch.tensor([[1.0], [2.0]]))
    for kind in ("unconditional", "bayes"):
        with pytest.raises(ValueError, match="unconditional scores"):
            model.check_supports(kind)


def test_meta_inputs_are_refused_naming_inputs():
    """Inputs without data (``meta``) are refused before evaluation, the message naming `inputs`."""
    model = RecordingScore()
    with pytest.raises(ValueError, match=r"Expected `inputs` on a device that holds data"):
        model.score(torch.zeros(2, 1, device=META), 1.0)
    assert model.batches == []


def test_bayes_score_refuses_a_bad_batch_size_naming_it():
    """``bayes_score(batch_size=0)`` is refused with a message naming `batch_size`."""
    with pytest.raises(ValueError, match=r"Expected `batch_size` to be >= 1 but got 0"):
        DtypeRecordingScore().bayes_score(torch.zeros(2, 1), 1.0, 1, batch_size=0)


def test_bayes_score_evaluates_float16_in_float32_and_returns_float16():
    """float16 inputs: both terms are evaluated in float32, the difference comes back in float16."""
    model = DtypeRecordingScore()
    x = torch.tensor([[0.5], [1.5]], dtype=torch.float16)
    out = model.bayes_score(x, 1.0, [1, 2])
    assert model.dtypes == [torch.float32, torch.float32]
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, torch.tensor([[1.0], [2.0]], dtype=torch.float16), rtol=0, atol=0)


# ---------------------------------------------------------------------- units and configs
def test_identity_units_return_the_tensor_itself():
    """Identity units map neither way: the very tensor comes back (an integer tensor stays integer)."""
    from captum_pags.scores._convert import AffineUnits

    units = AffineUnits((0.0, 1.0), (0.0, 1.0))
    assert units.is_identity
    x = torch.tensor([0, 3], dtype=torch.long)
    assert units.to_model(x) is x
    assert units.to_data(x) is x
    assert units.to_model(x).dtype == torch.long


def test_config_value_of_a_mapping_without_the_key_is_the_default():
    """A mapping config (as diffusers models have) missing the key gives the default, not None."""
    model = SimpleNamespace(config={"in_channels": 3})
    assert config_value(model, "in_channels", 1) == 3
    assert config_value(model, "prediction_type", "epsilon") == "epsilon"


# ---------------------------------------------------------------------- ScorePair
def test_score_pair_names_a_wrong_unconditional_argument():
    """A non-ScoreModel ``unconditional`` is refused naming `unconditional`."""
    from captum_pags.scores import ScorePair

    with pytest.raises(TypeError, match=r"Expected `unconditional` to be a captum_pags ScoreModel but got str"):
        ScorePair(DtypeRecordingScore(), "not a model")


class GridScore(DtypeRecordingScore):
    """``DtypeRecordingScore`` on a noise grid: 0.7 is evaluated at 0.5."""

    def resolve_sigma(self, sigma):
        value = self.check_sigma(sigma)
        return 0.5 if value == 0.7 else value


class RefusingScore(ScoreModel):
    """Unconditional score 0 whose ``resolve_sigma`` refuses 0.5, with a view (score 1) evaluating it exactly."""

    def __init__(self, value=0.0, refuse=True):
        self.value, self.refuse = value, refuse

    def resolve_sigma(self, sigma):
        if self.refuse and sigma == 0.5:
            raise ValueError("not on this model's grid")
        return self.check_sigma(sigma)

    def at_exact_sigma(self, sigma):
        return RefusingScore(1.0, refuse=False) if sigma == 0.5 else self

    def _score(self, inputs, sigma, target):
        return torch.full_like(inputs, self.value)


def test_score_pair_uses_the_exact_view_of_a_model_that_refuses_the_level():
    """A model whose ``resolve_sigma`` refuses the common level is used through its ``at_exact_sigma`` view."""
    from captum_pags.scores import ScorePair

    pair = ScorePair(GridScore(), RefusingScore())
    x = torch.zeros(2, 1)
    assert pair.resolve_sigma(0.7) == 0.5
    torch.testing.assert_close(pair.score(x, 0.7), torch.ones(2, 1), rtol=0, atol=0)  # the view's score 1
    torch.testing.assert_close(pair.score(x, 1.0), torch.zeros(2, 1), rtol=0, atol=0)  # the model itself


# ---------------------------------------------------------------------- analytic mixtures
def test_mixture_log_prob_comes_back_in_the_inputs_dtype():
    """``log_prob`` is computed in float64 and returned in the inputs' dtype (float32 here)."""
    from captum_pags.scores import GaussianMixtureScore

    mixture = GaussianMixtureScore(torch.zeros(1, 1), torch.eye(1))
    x = torch.zeros(2, 1)
    out = mixture.log_prob(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((2,), -0.5 * math.log(2 * math.pi)), rtol=0, atol=1e-7)
    assert mixture.log_prob(x.double()).dtype == torch.float64


def test_subspace_mixture_accepts_one_std_per_class():
    """``stds`` of shape ``(C,)`` is one std per class, broadcast along the ``k`` subspace directions."""
    from captum_pags.scores import SubspaceGaussianMixtureScore

    basis = torch.eye(3, dtype=torch.float64)[:2]  # k = 2, D = 3
    means = torch.zeros(3, 2, dtype=torch.float64)  # C = 3
    per_class = SubspaceGaussianMixtureScore(basis, means, torch.tensor([1.0, 2.0, 3.0]), 0.5)
    assert per_class.stds.tolist() == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    full = SubspaceGaussianMixtureScore(basis, means, torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]), 0.5)
    x = torch.tensor([[1.0, -1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(per_class.score(x, 0.0, 1), full.score(x, 0.0, 1), rtol=0, atol=0)
    # class 1: on-subspace variance 2^2 + 0.5^2 = 4.25, off-subspace 0.25
    torch.testing.assert_close(
        per_class.score(x, 0.0, 1), torch.tensor([[-1.0 / 4.25, 1.0 / 4.25, -8.0]], dtype=torch.float64)
    )


# ---------------------------------------------------------------------- DiffusersScore details
def test_schedule_drops_an_alpha_cumprod_of_one():
    """A first ``alpha_cumprod = 1`` (no noise, log sigma = -inf) is not a usable level either."""
    model = DiffusersScore(LinearUNet(in_channels=1), _scheduler([1.0, 0.9, 0.5]), data_range=(-1.0, 1.0))
    low, high = model.sigma_range
    assert math.isclose(low, 1.0 / 3.0, rel_tol=1e-12)
    assert math.isclose(high, 1.0, rel_tol=1e-12)
    assert model.noise_level(low).timestep == 1.0


def test_interpolation_in_the_last_grid_interval_uses_its_two_ends():
    """A sigma between the last two grid levels interpolates between them (no extrapolation)."""
    grid = [-1.0, 0.0, 2.0]
    model = DiffusersScore(
        LinearUNet(in_channels=1),
        _scheduler([_abar(v) for v in grid]),
        data_range=(-1.0, 1.0),
        timestep_rule="interpolate",
    )
    assert math.isclose(model.noise_level(math.exp(1.0)).timestep, 1.5, rel_tol=0, abs_tol=1e-12)
    assert math.isclose(model.noise_level(math.exp(-0.5)).timestep, 0.5, rel_tol=0, abs_tol=1e-12)


def test_two_dimensional_inputs_with_the_right_channels_are_accepted():
    """Inputs ``(N, C)`` with C = in_channels pass the channel check (no sample_size to check)."""
    model = DiffusersScore(LinearUNet(in_channels=1), _scheduler([0.9, 0.5, 0.1]))
    x = torch.full((2, 1), 0.75, dtype=torch.float64)
    expected = -2.0 * math.sqrt(0.5) * 0.5  # as in the prediction-type test: timestep 1, abar 0.5
    torch.testing.assert_close(model.score(x, 0.5), torch.full_like(x, expected), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="channel"):
        model.score(torch.zeros(2, 2, dtype=torch.float64), 0.5)


class StringUNet(LinearUNet):
    """A fake UNet returning something that is not a prediction."""

    def forward(self, sample, timestep, class_labels=None):
        return "not a tensor"


def test_a_unet_returning_no_tensor_is_refused_naming_unet():
    """A UNet output without a tensor is refused, the message naming `unet`."""
    model = DiffusersScore(StringUNet(in_channels=1), _scheduler([0.9, 0.5, 0.1]))
    with pytest.raises(TypeError, match=r"Expected `unet` to return a torch.Tensor.*but it returned str"):
        model.score(torch.zeros(1, 1, 2, 2), 0.5)


@pytest.mark.parametrize("sample_size", [[4, 3, 2], (4.0, 3.0)])
def test_sample_size_other_than_an_int_pair_is_ignored(sample_size):
    """A ``sample_size`` that is not an int or a pair of ints fixes no spatial size."""
    model = DiffusersScore(LinearUNet(in_channels=1, sample_size=sample_size), _scheduler([0.9, 0.5, 0.1]))
    assert model.sample_size is None
    assert model.input_shape is None


# ---------------------------------------------------------------------- files
def test_save_diffusers_parts_creates_missing_parent_folders(tmp_path):
    """Saving into ``a/b`` that does not exist yet creates both folders."""
    from captum_pags.scores._files import SCORE_CONFIG_NAME, save_diffusers_parts

    def saver(directory, **kwargs):
        directory.mkdir(parents=True)
        (directory / "config.json").write_text("{}")

    part = SimpleNamespace(save_pretrained=saver)
    root = tmp_path / "a" / "b"
    save_diffusers_parts(part, part, {"null_class": None}, root)
    assert (root / "unet" / "config.json").read_text() == "{}"
    assert (root / "scheduler" / "config.json").read_text() == "{}"
    assert (root / SCORE_CONFIG_NAME).read_text() == '{\n  "null_class": null\n}\n'


def test_load_program_refuses_a_zip_with_constants_but_no_code(tmp_path):
    """A zip with ``constants.pkl`` but no ``code/`` is not TorchScript: it is refused as another archive."""
    import zipfile

    from captum_pags.scores._files import load_program

    path = tmp_path / "weights.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/constants.pkl", b"")
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="another zip archive"):
        load_program(path)


def test_load_program_reports_the_first_line_of_the_loading_error(tmp_path):
    """A broken TorchScript archive is refused with the first line of torch's own error."""
    import zipfile

    from captum_pags.scores._files import load_program

    path = tmp_path / "broken.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/constants.pkl", b"garbage")
        archive.writestr("archive/code/model.py", b"garbage")
    with pytest.raises(RuntimeError) as direct:
        torch.jit.load(str(path))
    first = str(direct.value).splitlines()[0]
    assert first and first != "None"
    with pytest.raises(ValueError) as refused:
        load_program(path)
    assert str(refused.value).endswith(f"loading failed: {first}")
