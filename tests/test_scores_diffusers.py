import json
import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _score_fakes import (
    ExactUNet,
    ExactUNetLearnedTime,
    no_network,  # noqa: F401 (a fixture)
)
from _score_fakes import log_sigmas as _log_sigmas
from _score_fakes import tiny_unet as _tiny_unet
from conftest import assert_model_unchanged, model_snapshot
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler
from torch import nn

from captum_pags.scores import DiffusersScore, GaussianMixtureScore, SubspaceGaussianMixtureScore

SHAPE = (1, 4, 4)
D = 16
NUM_CLASSES = 3


def _random_spd(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return 0.02 * a @ a.T / d + 0.01 * torch.eye(d, dtype=torch.float64)


@pytest.fixture(scope="module")
def mixture():
    """Exact class-conditional densities of images in [0, 1] (the user's units)."""
    gen = torch.Generator().manual_seed(0)
    means = 0.5 + 0.2 * torch.randn(NUM_CLASSES, *SHAPE, generator=gen, dtype=torch.float64)
    covs = torch.stack([_random_spd(D, gen) for _ in range(NUM_CLASSES)])
    return GaussianMixtureScore(means, covs, torch.tensor([1.0, 2.0, 1.5]))


def _on_grid_sigma(scheduler, t, scale=2.0):
    return math.exp(float(_log_sigmas(scheduler)[t])) / scale


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_conversion_is_exact_for_every_prediction_type(mixture, prediction_type):
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    unet = ExactUNet(mixture, scheduler, prediction_type, null_class=NUM_CLASSES)
    model = DiffusersScore(unet, scheduler, null_class=NUM_CLASSES)
    assert model.prediction_type == prediction_type
    assert model.num_classes == NUM_CLASSES and model.supports_unconditional
    x = 0.5 + 0.3 * torch.randn(6, *SHAPE)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    for t in (60, 150, 400):
        sigma = _on_grid_sigma(scheduler, t)
        assert model.noise_level(sigma).timestep == t
        expected_cond = mixture.score(x.double(), sigma, y).float()
        expected_uncond = mixture.score(x.double(), sigma).float()
        torch.testing.assert_close(model.score(x, sigma, y), expected_cond, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.score(x, sigma), expected_uncond, atol=1e-4, rtol=1e-4)


def test_unconditional_model_and_other_data_range():
    gen = torch.Generator().manual_seed(3)
    basis = torch.randn(3, *SHAPE, generator=gen, dtype=torch.float64)
    sm = SubspaceGaussianMixtureScore(basis, torch.randn(2, 3, generator=gen, dtype=torch.float64), 0.5, 0.1)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear")
    unet = ExactUNet(sm, scheduler, "epsilon", data_range=(-3.0, 5.0), conditional=False)
    model = DiffusersScore(unet, scheduler, data_range=(-3.0, 5.0))
    assert model.num_classes is None and model.supports_unconditional
    x = torch.randn(5, *SHAPE)
    sigma = _on_grid_sigma(scheduler, 300, scale=2.0 / 8.0)
    torch.testing.assert_close(model.score(x, sigma), sm.score(x.double(), sigma).float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="Expected `target=None`"):
        model.score(x, sigma, target=0)


def test_null_label_first_shifts_user_labels(mixture):
    scheduler = DDPMScheduler()
    unet = ExactUNet(mixture, scheduler, "epsilon", null_class=0)
    model = DiffusersScore(unet, scheduler, null_class=0)
    x = 0.5 + 0.3 * torch.randn(4, *SHAPE)
    sigma = _on_grid_sigma(scheduler, 200)
    # the fake treats embedding c + 1 as class c (null first), so user labels must come back exact
    for y in range(NUM_CLASSES):
        torch.testing.assert_close(
            model.score(x, sigma, y), mixture.score(x.double(), sigma, y).float(), atol=1e-4, rtol=1e-4
        )
    torch.testing.assert_close(model.score(x, sigma), mixture.score(x.double(), sigma).float(), atol=1e-4, rtol=1e-4)


def test_nearest_rule_rounds_in_log_sigma_and_reports_the_sigma_used(mixture):
    scheduler = DDPMScheduler()
    unet = ExactUNet(mixture, scheduler, "epsilon", null_class=NUM_CLASSES)
    model = DiffusersScore(unet, scheduler, null_class=NUM_CLASSES)
    log_sigmas = _log_sigmas(scheduler).tolist()
    x = 0.5 + 0.3 * torch.randn(3, *SHAPE)
    for sigma in (0.0061, 0.05, 0.2533, 1.7, 30.0):
        brute = min(range(len(log_sigmas)), key=lambda t: abs(log_sigmas[t] - math.log(2 * sigma)))
        level = model.noise_level(sigma)
        assert level.timestep == brute
        used = math.exp(log_sigmas[brute]) / 2
        assert level.sigma == pytest.approx(used, rel=1e-12)
        assert model.resolve_sigma(sigma) == pytest.approx(used, rel=1e-12)
        assert level.alpha_cumprod == pytest.approx(float(scheduler.alphas_cumprod[brute]), rel=1e-12)
        torch.testing.assert_close(
            model.score(x, sigma, 1), mixture.score(x.double(), used, 1).float(), atol=1e-4, rtol=1e-4
        )
        # Tweedie uses the sigma actually evaluated
        torch.testing.assert_close(
            model.denoise(x, sigma, 1), x + used**2 * mixture.score(x.double(), used, 1).float(), atol=1e-4, rtol=1e-4
        )
    assert unet.timesteps_seen and all(float(t).is_integer() for t in unet.timesteps_seen)


def test_interpolate_rule_evaluates_the_requested_sigma(mixture):
    scheduler = DDPMScheduler()
    unet = ExactUNet(mixture, scheduler, "v_prediction", null_class=NUM_CLASSES)
    model = DiffusersScore(
        unet, scheduler, null_class=NUM_CLASSES, timestep_rule="interpolate", prediction_type="v_prediction"
    )
    log_sigmas = _log_sigmas(scheduler).numpy()
    x = 0.5 + 0.3 * torch.randn(3, *SHAPE)
    for sigma in (0.0123, 0.2533, 0.7):
        level = model.noise_level(sigma)
        assert level.sigma == sigma and level.model_sigma == pytest.approx(2 * sigma)
        expected_t = np.interp(math.log(2 * sigma), log_sigmas, np.arange(log_sigmas.size))
        assert level.timestep == pytest.approx(expected_t, abs=1e-9)
        assert not float(level.timestep).is_integer()
        torch.testing.assert_close(
            model.score(x, sigma, 2), mixture.score(x.double(), sigma, 2).float(), atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            model.score(x, sigma), mixture.score(x.double(), sigma).float(), atol=1e-4, rtol=1e-4
        )


def test_batch_size_chunks_give_the_same_scores(mixture):
    scheduler = DDPMScheduler()
    model = DiffusersScore(ExactUNet(mixture, scheduler, "epsilon", null_class=NUM_CLASSES), scheduler, null_class=3)
    x = 0.5 + 0.3 * torch.randn(7, *SHAPE)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    torch.testing.assert_close(model.score(x, 0.2, y, batch_size=3), model.score(x, 0.2, y))


def test_real_unet_matches_a_hand_written_conversion():
    torch.manual_seed(0)
    unet = _tiny_unet(num_class_embeds=4).eval()
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    model = DiffusersScore(unet, scheduler, null_class=3)
    x = torch.rand(3, 1, 8, 8)
    level = model.noise_level(0.3)
    abar = float(scheduler.alphas_cumprod[int(level.timestep)])
    x_t = math.sqrt(abar) * (2 * x - 1)
    t = torch.full((3,), int(level.timestep))
    with torch.no_grad():
        v = unet(x_t, t, class_labels=torch.tensor([0, 2, 1])).sample
        v_null = unet(x_t, t, class_labels=torch.full((3,), 3)).sample
    sigma_t = math.sqrt((1 - abar) / abar)
    for out, target in ((v, [0, 2, 1]), (v_null, None)):
        eps = math.sqrt(abar) * out + math.sqrt(1 - abar) * x_t
        torch.testing.assert_close(model.score(x, 0.3, target), -2 * eps / sigma_t, atol=1e-5, rtol=1e-5)


def test_model_state_is_restored_also_when_the_call_raises():
    unet = _tiny_unet(num_class_embeds=4).train()
    unet.conv_in.weight.requires_grad_(False)
    unet.conv_out.weight.grad = torch.ones_like(unet.conv_out.weight)
    model = DiffusersScore(unet, DDPMScheduler(), null_class=3)

    def fail_on_three(module, args):
        if args[0].shape[0] == 3:
            raise RuntimeError("inside the UNet")

    unet.register_forward_pre_hook(fail_on_three)
    before = model_snapshot(unet)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    s = model.score(x, 0.2, [0, 1])
    assert_model_unchanged(unet, before)
    # the score is differentiable w.r.t. the inputs, not the parameters
    s.sum().backward()
    assert x.grad is not None and unet.conv_in.bias.grad is None
    with pytest.raises(RuntimeError, match="inside the UNet"):
        model.score(torch.rand(3, 1, 8, 8), 0.2)
    assert_model_unchanged(unet, before)
    with pytest.raises(ValueError, match="sample_size"):  # refused before the UNet runs
        model.score(torch.rand(2, 1, 5, 5), 0.2)
    assert_model_unchanged(unet, before)


def test_eval_mode_is_used_inside():
    unet = _tiny_unet().train()  # dropout 0.1 makes train mode random
    model = DiffusersScore(unet, DDPMScheduler())
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(model.score(x, 0.2), model.score(x, 0.2))
    assert unet.training


@pytest.mark.usefixtures("no_network")
def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(1)
    unet = _tiny_unet(num_class_embeds=3).eval()
    scheduler = DDIMScheduler(prediction_type="sample")
    model = DiffusersScore(unet, scheduler, data_range=(-2.0, 2.0), null_class=0, timestep_rule="interpolate")
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list((tmp_path / "m").glob(".tmp-*"))
    saved = json.loads((tmp_path / "m" / "score_config.json").read_text())
    assert saved == model.to_config()
    loaded = DiffusersScore.from_pretrained(tmp_path / "m")
    assert loaded.to_config() == model.to_config()
    assert type(loaded.scheduler) is DDIMScheduler and not loaded.unet.training
    x = 4 * torch.rand(3, 1, 8, 8) - 2
    torch.testing.assert_close(loaded.score(x, 0.37, [1, 0, 1]), model.score(x, 0.37, [1, 0, 1]))
    torch.testing.assert_close(loaded.score(x, 0.37), model.score(x, 0.37))
    overridden = DiffusersScore.from_pretrained(tmp_path / "m", timestep_rule="nearest")
    assert overridden.timestep_rule == "nearest"


@pytest.mark.usefixtures("no_network")
def test_from_pretrained_reads_a_diffusers_pipeline_directory(tmp_path):
    unet = _tiny_unet().eval()
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path)
    loaded = DiffusersScore.from_pretrained(tmp_path)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loaded.score(x, 0.2), DiffusersScore(unet, DDPMScheduler()).score(x, 0.2))


def test_from_pretrained_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="Expected `path` to be a local directory"):
        DiffusersScore.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"Expected `path` to contain unet/config.json"):
        DiffusersScore.from_pretrained(tmp_path)
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "os"}))
    with pytest.raises(ValueError, match="to name a diffusers ModelMixin class"):
        DiffusersScore.from_pretrained(tmp_path)


def test_bad_inputs(mixture):
    scheduler = DDPMScheduler()
    unet = ExactUNet(mixture, scheduler, "epsilon", null_class=NUM_CLASSES)
    model = DiffusersScore(unet, scheduler, null_class=NUM_CLASSES)
    x = torch.rand(2, *SHAPE)
    low, high = model.sigma_range
    assert low == pytest.approx(math.exp(float(_log_sigmas(scheduler)[0])) / 2)
    with pytest.raises(ValueError, match=r"Expected `sigma` to be a finite number > 0 but got -1.0"):
        model.score(x, -1.0)
    with pytest.raises(ValueError, match=r"Expected `sigma` to be a finite number > 0 but got 0.0"):
        model.score(x, 0.0)
    with pytest.raises(ValueError, match=r"Expected `sigma` to be in \["):
        model.score(x, 1.01 * high)
    with pytest.raises(ValueError, match=r"Expected `sigma` to be in \["):
        model.score(x, 0.99 * low)
    with pytest.raises(ValueError, match=r"Expected `inputs` to have 1 channel\(s\)"):
        model.score(torch.rand(2, 3, 4, 4), 0.2)
    with pytest.raises(ValueError, match=r"Expected `target` labels in \[0, 3\) but got values in \[0, 3\]"):
        model.score(x, 0.2, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"Expected `target` labels in \[0, 3\)"):
        model.score(x, 0.2, -1)
    with pytest.raises(ValueError, match="to hold finite values"):
        model.score(torch.full((2, *SHAPE), float("nan")), 0.2)
    with pytest.raises(TypeError, match="Expected `inputs` to be a torch.Tensor"):
        model.score(x.numpy(), 0.2)

    no_null = DiffusersScore(ExactUNet(mixture, scheduler, "epsilon"), scheduler)
    assert no_null.num_classes == NUM_CLASSES and not no_null.supports_unconditional
    with pytest.raises(ValueError, match=r"Expected `target` \(class labels\)"):
        no_null.score(x, 0.2)

    with pytest.raises(ValueError, match=r"Expected `null_class` in \[0, 4\) but got 4"):
        DiffusersScore(unet, scheduler, null_class=4)
    with pytest.raises(ValueError, match="Expected `null_class=None` for a model without class labels"):
        DiffusersScore(ExactUNet(mixture, scheduler, "epsilon", conditional=False), scheduler, null_class=0)
    with pytest.raises(TypeError, match="Expected `scheduler` to be a DDPM/DDIM-family scheduler"):
        DiffusersScore(unet, object())
    with pytest.raises(ValueError, match=r"Expected `prediction_type` to be one of .* but got 'flow'"):
        DiffusersScore(unet, scheduler, prediction_type="flow")
    with pytest.raises(ValueError, match=r"Expected `timestep_rule` to be one of"):
        DiffusersScore(unet, scheduler, timestep_rule="round")
    with pytest.raises(ValueError, match=r"Expected `timestep_rule='nearest'` for a model with a learned"):
        DiffusersScore(ExactUNetLearnedTime(mixture, scheduler, "epsilon"), scheduler, timestep_rule="interpolate")
    with pytest.raises(ValueError, match=r"Expected `data_range` to be finite numbers with low < high"):
        DiffusersScore(unet, scheduler, data_range=(1.0, 0.0))
    with pytest.raises(TypeError, match="Expected `unet` to be a callable model"):
        DiffusersScore(None, scheduler)
    timestep_classes = _tiny_unet(class_embed_type="timestep")
    with pytest.raises(ValueError, match="class_embed_type='timestep'"):
        DiffusersScore(timestep_classes, scheduler)


def test_wrong_output_shape_is_reported():
    class Bad(nn.Module):
        def forward(self, sample, timestep):
            return sample[:, :, :2]

    with pytest.raises(ValueError, match=r"Expected `unet` to return a prediction shaped like its input"):
        DiffusersScore(Bad(), DDPMScheduler()).score(torch.rand(1, 1, 4, 4), 0.2)


def test_learned_variance_half_is_dropped():
    class LearnedVariance(nn.Module):
        def forward(self, sample, timestep):
            return torch.cat([torch.ones_like(sample), 5 * torch.ones_like(sample)], dim=1)

    scheduler = DDPMScheduler(variance_type="learned_range")
    model = DiffusersScore(LearnedVariance(), scheduler)
    level = model.noise_level(0.2)
    torch.testing.assert_close(
        model.score(torch.rand(2, 1, 4, 4), 0.2), torch.full((2, 1, 4, 4), -2 / level.model_sigma)
    )


def test_bayes_difference_of_a_null_label_model_is_one_unet_call_per_chunk():
    torch.manual_seed(3)
    unet = _tiny_unet(num_class_embeds=4).eval()
    model = DiffusersScore(unet, DDPMScheduler(), null_class=3)
    batches = []
    hook = unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 2, 1, 1, 0])
        bayes = model.bayes_score(x, 0.3, y, batch_size=3)
        assert batches == [6, 4]  # conditional and null label side by side, chunk by chunk
        expected = model.score(x, 0.3, y) - model.score(x, 0.3)
    finally:
        hook.remove()
    torch.testing.assert_close(bayes, expected, rtol=1e-5, atol=1e-5)
    half = model.bayes_score(x.half(), 0.3, y)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), model.bayes_score(x.half().float(), 0.3, y), rtol=1e-2, atol=1e-2)


def test_bayes_difference_with_the_null_label_first(mixture):
    scheduler = DDPMScheduler()
    model = DiffusersScore(ExactUNet(mixture, scheduler, "epsilon", null_class=0), scheduler, null_class=0)
    x = 0.5 + 0.3 * torch.randn(4, *SHAPE)
    y = torch.tensor([0, 2, 1, 0])
    sigma = _on_grid_sigma(scheduler, 200)
    exact = mixture.score(x.double(), sigma, y) - mixture.score(x.double(), sigma)
    torch.testing.assert_close(model.bayes_score(x, sigma, y), exact.float(), atol=1e-4, rtol=1e-4)


@pytest.mark.usefixtures("no_network")
def test_from_pretrained_puts_the_unet_on_the_device(tmp_path):
    DiffusersScore(_tiny_unet().eval(), DDPMScheduler()).save_pretrained(tmp_path / "m")
    assert {p.device.type for p in DiffusersScore.from_pretrained(tmp_path / "m").unet.parameters()} == {"cpu"}
    on_meta = DiffusersScore.from_pretrained(tmp_path / "m", device="meta")
    assert {p.device.type for p in on_meta.unet.parameters()} == {"meta"}
    assert not on_meta.unet.training


class _WarningRecords(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.usefixtures("no_network")
def test_loading_a_saved_model_logs_no_warnings(tmp_path):
    model = DiffusersScore(_tiny_unet().eval(), DDPMScheduler())
    model.save_pretrained(tmp_path / "m")
    logger = logging.getLogger("diffusers")
    handler, level = _WarningRecords(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        loaded = DiffusersScore.from_pretrained(tmp_path / "m")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.messages == []
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loaded.score(x, 0.2), model.score(x, 0.2))


@pytest.mark.parametrize("config", [{"_class_name": 123}, {"_class_name": None}, {}])
def test_from_pretrained_refuses_a_config_without_a_class_name(tmp_path, config):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="to name a diffusers ModelMixin class in `_class_name`"):
        DiffusersScore.from_pretrained(tmp_path)


@pytest.mark.usefixtures("no_network")
def test_from_pretrained_accepts_a_root_config_next_to_the_unet_folder(tmp_path):
    model = DiffusersScore(_tiny_unet().eval(), DDPMScheduler())
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"note": "a repository's own config"}))
    loaded = DiffusersScore.from_pretrained(tmp_path)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loaded.score(x, 0.2), model.score(x, 0.2))


class _UNetWithNestedFiles(nn.Module):
    """A UNet whose ``save_pretrained`` writes files in nested folders only (no file directly in unet/)."""

    def __init__(self):
        super().__init__()
        self.config = {"in_channels": 1}

    def forward(self, sample, timestep):
        return torch.zeros_like(sample)

    def save_pretrained(self, path, **kwargs):
        for name in ("weights/shard-0/part.txt", "weights/shard-1/part.txt"):
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(name)


def test_save_pretrained_into_an_existing_folder_with_nested_files(tmp_path):
    model = DiffusersScore(_UNetWithNestedFiles(), DDPMScheduler())
    for _ in range(2):  # tmp_path exists already; the second save overwrites the first
        model.save_pretrained(tmp_path)
        for name in ("weights/shard-0/part.txt", "weights/shard-1/part.txt"):
            assert (tmp_path / "unet" / name).read_text() == name
        assert json.loads((tmp_path / "score_config.json").read_text()) == model.to_config()
        assert (tmp_path / "scheduler" / "scheduler_config.json").is_file()
        assert not list(tmp_path.glob(".tmp-*"))


def test_save_pretrained_names_the_part_that_cannot_be_saved(mixture, tmp_path):
    scheduler = DDPMScheduler()
    with pytest.raises(TypeError, match="Expected `unet` to be a diffusers object with `save_pretrained`"):
        DiffusersScore(ExactUNet(mixture, scheduler, "epsilon"), scheduler).save_pretrained(tmp_path / "a")
    bare = SimpleNamespace(alphas_cumprod=scheduler.alphas_cumprod, config={"prediction_type": "epsilon"})
    with pytest.raises(TypeError, match="Expected `scheduler` to be a diffusers object with `save_pretrained`"):
        DiffusersScore(_tiny_unet(), bare).save_pretrained(tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_repr_names_the_networks_and_every_setting():
    score = DiffusersScore(_tiny_unet(), DDPMScheduler())
    settings = ", ".join(f"{k}={v!r}" for k, v in score.to_config().items())
    assert repr(score) == f"DiffusersScore(UNet2DModel, DDPMScheduler, {settings})"
    assert settings.startswith("data_range=[0.0, 1.0], model_range=[-1.0, 1.0], ")
