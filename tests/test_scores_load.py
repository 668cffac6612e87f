"""Loading what users hold: diffusers folders (pipeline, unet/ + scheduler/), saved denoisers, the shipped model."""

import json
import shutil
import warnings

import pytest
import torch
from _score_fakes import attention_unet, no_network  # noqa: F401 (a fixture)
from conftest import assert_model_unchanged, model_snapshot
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler
from torch import nn

from captum_pags.scores import (
    DenoiserScore,
    DiffusersScore,
    GaussianMixtureScore,
    ScorePair,
    load_score_model,
)

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Random-init 3x32x32 UNets with attention: class-conditional without a null label, and unconditional."""
    root = tmp_path_factory.mktemp("scores")
    torch.manual_seed(0)
    cond, uncond = attention_unet(num_class_embeds=NUM_CLASSES), attention_unet()
    cond.save_pretrained(root / "cond" / "unet")  # a plain unet/ + scheduler/ folder
    DDPMScheduler().save_pretrained(root / "cond" / "scheduler")
    DDPMPipeline(unet=uncond, scheduler=DDPMScheduler()).save_pretrained(root / "ddpm")
    DDIMPipeline(unet=uncond, scheduler=DDIMScheduler()).save_pretrained(root / "ddim")
    return root, cond.eval(), uncond.eval()


@pytest.mark.usefixtures("no_network")
def test_every_diffusers_layout_loads_with_its_config(saved):
    root, cond, uncond = saved
    x = torch.rand(2, 3, 32, 32)
    for folder, reference in (("cond", cond), ("ddpm", uncond), ("ddim", uncond)):
        model = load_score_model(root / folder)
        assert isinstance(model, DiffusersScore)
        assert model.input_shape == torch.Size((3, 32, 32)) and model.data_range == (0.0, 1.0)
        for p, q in zip(model.unet.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    cond_model = load_score_model(root / "cond")
    assert (cond_model.num_classes, cond_model.supports_unconditional) == (NUM_CLASSES, False)
    assert torch.isfinite(cond_model.score(x, 0.2, [3, 9])).all()
    assert isinstance(load_score_model(root / "ddim").scheduler, DDIMScheduler)


@pytest.mark.usefixtures("no_network")
def test_pair_from_two_folders_gives_finite_bayes_maps(saved):
    root, _, _ = saved
    pair = load_score_model(root / "cond", unconditional=root / "ddpm")
    assert isinstance(pair, ScorePair) and pair.supports_bayes and pair.num_classes == NUM_CLASSES
    x = torch.rand(3, 3, 32, 32)
    bayes = pair.bayes_score(x, 0.3, [0, 5, 9])
    assert bayes.shape == x.shape and torch.isfinite(bayes).all() and bayes.abs().sum() > 0
    expected = pair.conditional.score(x, 0.3, [0, 5, 9]) - pair.unconditional.score(x, 0.3)
    torch.testing.assert_close(bayes, expected, rtol=1e-5, atol=1e-5)  # one grid: no interpolation needed


def test_fit_is_checked_from_the_config_before_any_work(saved):
    root, _, _ = saved
    pair = load_score_model(root / "cond", unconditional=root / "ddpm")
    calls = []
    hook = pair.conditional.unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(ValueError, match="spatial size 32x32 \\(the UNet's sample_size"):
            pair.score(torch.rand(2, 3, 16, 16), 0.3, [0, 1])
        with pytest.raises(ValueError, match="3 channel\\(s\\)"):
            pair.score(torch.rand(2, 1, 32, 32), 0.3, [0, 1])
        with pytest.raises(ValueError, match=r"`target` labels in \[0, 10\)"):
            pair.score(torch.rand(2, 3, 32, 32), 0.3, [0, 999])  # a 1000-class classifier's labels
        with pytest.raises(ValueError, match=r"data range \[0, 1\].*0\.\.255"):
            pair.score(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), 0.3, [0, 1])
        # the same checks from configs alone, for pieces that are not tensors yet (a dataset, a classifier)
        pair.check_fit(input_shape=(3, 32, 32), num_classes=NUM_CLASSES, data_range=(0.0, 1.0))
        with pytest.raises(
            ValueError, match=r"input_shape=\(3, 16, 16\); the UNet's config says in_channels=3, sample_size"
        ):
            pair.conditional.check_fit(input_shape=(3, 16, 16))
        with pytest.raises(ValueError, match=r"per-example shape \(3, 32, 32\)"):
            pair.check_fit(input_shape=(1, 32, 32))
        with pytest.raises(ValueError, match="Expected a classifier with 10 classes.*num_classes=1000"):
            pair.check_fit(num_classes=1000)
        with pytest.raises(ValueError, match=r"data_range \(0.0, 1.0\) but got data_range=\(0.0, 255.0\)"):
            pair.check_fit(data_range=(0, 255))
    finally:
        hook.remove()
    assert calls == []


def test_denoiser_files_torchscript_and_export(tmp_path):
    mixture = GaussianMixtureScore(torch.tensor([[-1.0, 0.5], [1.0, 0.0]]), torch.eye(2), torch.tensor([0.7, 0.3]))

    class Denoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x, sigma):  # the exact denoiser of N(0, I) data
            return self.w * x / (1 + sigma[:, None] ** 2)

    net = Denoiser()
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(net, (x, torch.ones(3))), tmp_path / "d.pt")
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(net, (x, torch.ones(3)), dynamic_shapes=({0: batch}, {0: batch}))
    torch.export.save(program, tmp_path / "d.pt2")
    for name in ("d.pt", "d.pt2"):
        for model in (DenoiserScore.load(tmp_path / name), load_score_model(tmp_path / name, data_range=(-5, 5))):
            torch.testing.assert_close(model.score(x, 1.0), -x / 2)
            torch.testing.assert_close(model.score(x[:1], 0.5), -x[:1] / 1.25)
    assert load_score_model(tmp_path / "d.pt", data_range=(-5, 5)).data_range == (-5.0, 5.0)
    assert mixture.supports_bayes


def test_conditional_denoiser_file_with_labels(tmp_path):
    class Denoiser(nn.Module):
        def forward(self, x, sigma, class_labels):
            shift = class_labels.to(x.dtype)[:, None]
            return (x + sigma[:, None] ** 2 * shift) / (1 + sigma[:, None] ** 2)

    x = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Denoiser()), tmp_path / "c.pt")
    model = load_score_model(tmp_path / "c.pt", num_classes=3, data_range=(-5, 5))
    assert (model.supports_conditional, model.supports_unconditional) == (True, False)
    # N(y, I) data: score (y - x) / (1 + sigma^2)
    torch.testing.assert_close(model.score(x, 1.0, [0, 2]), (torch.tensor([[0.0], [2.0]]) - x) / 2)


@pytest.mark.usefixtures("no_network")
def test_shipped_by_name():
    for name in ("shipped", "digits16"):
        model = load_score_model(name)
        assert model.supports_bayes and model.num_classes == 10 and model.input_shape == torch.Size((1, 16, 16))


def test_bad_paths_and_sources(tmp_path, saved):
    root, _, _ = saved
    with pytest.raises(ValueError, match="Expected `path` to be a diffusers directory.*nope' does not exist"):
        load_score_model(tmp_path / "nope")
    with pytest.raises(TypeError, match="Expected `unconditional` to be a path, 'shipped' or a ScoreModel"):
        load_score_model("shipped", unconditional=3)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="TorchScript file.*not such an archive"):
        load_score_model(tmp_path / "notes.txt")
    torch.save({"w": torch.ones(2)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="another zip archive \\(a state dict"):
        DenoiserScore.load(tmp_path / "state.pt")
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "X", "transformer": ["a", "b"]}))
    with pytest.raises(ValueError, match="`unet` and `scheduler` components.*has transformer"):
        load_score_model(tmp_path / "pipe")
    with pytest.raises(ValueError, match="a single model's folder"):
        load_score_model(root / "cond" / "unet")
    with pytest.raises(ValueError, match="Expected `path` to contain scheduler/scheduler_config.json"):
        (tmp_path / "only_unet" / "unet").mkdir(parents=True)
        (tmp_path / "only_unet" / "unet" / "config.json").write_text((root / "cond/unet/config.json").read_text())
        load_score_model(tmp_path / "only_unet")
    mixture = GaussianMixtureScore(torch.zeros(2, 2), torch.eye(2))
    assert load_score_model(mixture) is mixture
    with pytest.raises(ValueError, match="no loading settings"):
        load_score_model(mixture, null_class=1)


def test_loading_and_scoring_leave_the_networks_as_they_were(saved):
    root, _, _ = saved
    pair = load_score_model(root / "cond", unconditional=root / "ddpm")
    nets = pair.networks()
    nets[0].train()
    snaps = [model_snapshot(n) for n in nets]
    pair.bayes_score(torch.rand(2, 3, 32, 32), 0.3, [1, 2])
    with pytest.raises(TypeError, match="integer labels"):
        pair.bayes_score(torch.rand(2, 3, 32, 32), 0.3, [1.0, 2.0])
    for net, snap in zip(nets, snaps):
        assert_model_unchanged(net, snap)


def test_saved_settings_are_kept_unless_the_data_range_is_stated(tmp_path, saved):
    _, cond, _ = saved
    DiffusersScore(cond, DDPMScheduler(), data_range=(-2.0, 2.0)).save_pretrained(tmp_path / "m")
    assert load_score_model(tmp_path / "m").data_range == (-2.0, 2.0)
    assert load_score_model(tmp_path / "m", data_range=(0, 1)).data_range == (0.0, 1.0)
    assert load_score_model("shipped").data_range == (0.0, 1.0)
    with pytest.raises(ValueError, match="`data_range` to be finite numbers with low < high"):
        load_score_model(tmp_path / "m", data_range=(1, 0))


class _StandardNormalDenoiser(nn.Module):
    """The exact denoiser of N(0, I) data, with a parameter (so that it has a device)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x, sigma):
        return self.w * x / (1 + sigma[:, None] ** 2)


class _ShiftedDenoiser(nn.Module):
    """The exact denoiser of N(y, I) data for class y."""

    def forward(self, x, sigma, class_labels):
        shift = class_labels.to(x.dtype)[:, None]
        return (x + sigma[:, None] ** 2 * shift) / (1 + sigma[:, None] ** 2)


X_DENOISE = torch.tensor([[0.5, -1.0], [2.0, 0.3], [0.0, 1.0]])


@pytest.fixture(scope="module")
def denoiser_files(tmp_path_factory):
    """u.pt / u.pt2: an unconditional denoiser (TorchScript / torch.export); c.pt: a class-conditional one."""
    folder = tmp_path_factory.mktemp("denoisers")
    x = X_DENOISE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(_StandardNormalDenoiser(), (x, torch.ones(3))), folder / "u.pt")
        torch.jit.save(torch.jit.script(_ShiftedDenoiser()), folder / "c.pt")
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        _StandardNormalDenoiser(), (x, torch.ones(3)), dynamic_shapes=({0: batch}, {0: batch})
    )
    torch.export.save(program, folder / "u.pt2")
    return folder


def test_a_denoiser_file_without_a_data_range_works_in_unit_images(denoiser_files):
    x = 0.2 * X_DENOISE
    for name in ("u.pt", "u.pt2"):
        model = load_score_model(denoiser_files / name)
        assert isinstance(model, DenoiserScore) and model.data_range == (0.0, 1.0)
        assert model.units.is_identity
        torch.testing.assert_close(model.score(x, 1.0), -x / 2)
        with pytest.raises(ValueError, match=r"data range \[0, 1\]"):
            model.score(torch.full((1, 2), 255.0), 0.1)


def test_the_device_argument_puts_loaded_denoisers_there(denoiser_files):
    for name in ("u.pt", "u.pt2"):
        assert {p.device.type for p in DenoiserScore.load(denoiser_files / name).denoiser.parameters()} == {"cpu"}
        for model in (
            DenoiserScore.load(denoiser_files / name, device="meta"),
            load_score_model(denoiser_files / name, device="meta"),
        ):
            assert {p.device.type for p in model.denoiser.parameters()} == {"meta"}


def test_a_pair_of_denoiser_files_shares_the_stated_data_range(denoiser_files):
    x = X_DENOISE
    pair = load_score_model(
        denoiser_files / "c.pt", unconditional=denoiser_files / "u.pt", num_classes=3, data_range=(-5, 5)
    )
    assert isinstance(pair, ScorePair)
    assert pair.data_range == pair.conditional.data_range == pair.unconditional.data_range == (-5.0, 5.0)
    # N(y, I) minus N(0, I) scores: y / (1 + sigma^2), whatever x
    torch.testing.assert_close(pair.bayes_score(x, 1.0, [0, 2, 1]), torch.tensor([[0.0], [1.0], [0.5]]).expand(3, 2))


def test_a_local_path_wins_over_a_shipped_name(denoiser_files, tmp_path, monkeypatch):
    shutil.copy(denoiser_files / "u.pt", tmp_path / "digits16")
    monkeypatch.chdir(tmp_path)
    model = load_score_model("digits16")
    assert isinstance(model, DenoiserScore) and model.num_classes is None
    torch.testing.assert_close(model.score(torch.full((1, 2), 0.5), 1.0), torch.full((1, 2), -0.25))
