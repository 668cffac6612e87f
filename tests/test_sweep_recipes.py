"""Each embedded dataset has its training recipe: shapes32 trains a pooled CNN with cosine decay."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from captum_pags.analysis import SweepConfig
from captum_pags.analysis import tasks as tasks_module
from captum_pags.analysis.config import DATA_RECIPES, data_recipe
from captum_pags.analysis.grid import SweepTask, build_model, model_key, training_settings
from captum_pags.models import ConvNet


def test_each_dataset_gets_its_recipe_and_explicit_settings_win():
    shapes = SweepConfig(data="shapes32")
    recipe = DATA_RECIPES["shapes32"]
    assert (shapes.architecture, shapes.epochs, shapes.lr, shapes.lr_schedule, shapes.seeds) == (
        "convnet",
        10,
        2e-3,
        "cosine",
        (0,),
    )
    assert shapes.strengths["noise"] == recipe.strengths["noise"] != DATA_RECIPES["digits16"].strengths["noise"]
    digits = SweepConfig()
    assert (digits.architecture, digits.epochs, digits.lr, digits.lr_schedule, digits.seeds) == (
        "mlp",
        20,
        1e-3,
        "constant",
        (0, 1, 2),
    )
    mine = SweepConfig(data="shapes32", architecture="mlp", epochs=3, lr=1e-2, lr_schedule="constant", seeds=(4,))
    assert (mine.architecture, mine.epochs, mine.lr, mine.lr_schedule, mine.seeds) == ("mlp", 3, 1e-2, "constant", (4,))
    partial = SweepConfig(data="shapes32", strengths={"noise": (0.0, 0.3)})
    assert partial.strengths["noise"] == (0.0, 0.3)
    assert partial.strengths["gradient_norm"] == recipe.strengths["gradient_norm"]
    assert data_recipe("cifar10:somewhere") is DATA_RECIPES["digits16"]


def test_quick_takes_the_data_grid_and_keeps_it_for_methods_left_out():
    quick = SweepConfig.quick(data="shapes32")
    assert quick.strengths == {k: tuple(v) for k, v in DATA_RECIPES["shapes32"].quick_strengths.items()}
    assert quick.architecture == "convnet" and quick.seeds == (0,)
    partial = SweepConfig.quick(data="shapes32", strengths={"noise": (0.0, 0.5)})
    assert partial.strengths["noise"] == (0.0, 0.5)
    assert partial.strengths["gradient_norm"] == DATA_RECIPES["shapes32"].quick_strengths["gradient_norm"]
    assert SweepConfig.quick().strengths["gradient_norm"] == DATA_RECIPES["digits16"].quick_strengths["gradient_norm"]


def test_replace_moves_defaults_with_the_data_but_keeps_explicit_settings():
    moved = SweepConfig().replace(data="shapes32")
    assert moved == SweepConfig(data="shapes32")
    kept = SweepConfig(epochs=3, strengths={"noise": (0.0, 0.7)}).replace(data="shapes32")
    assert kept.epochs == 3 and kept.strengths["noise"] == (0.0, 0.7)
    assert kept.architecture == "convnet"
    assert kept.strengths["gradient_norm"] == DATA_RECIPES["shapes32"].strengths["gradient_norm"]
    back = SweepConfig(data="shapes32").replace(data="digits16")
    assert back == SweepConfig()
    same = SweepConfig(data="shapes32", lr=5e-3).replace(sigma=0.2)
    assert same.lr == 5e-3 and same.architecture == "convnet" and same.sigma == 0.2


@pytest.mark.parametrize(
    ("schedule", "expected"), [("cosine", torch.optim.lr_scheduler.CosineAnnealingLR), ("constant", None)]
)
def test_the_schedule_reaches_training(tmp_path, monkeypatch, schedule, expected):
    seen = {}

    def fake_fit(model, loss, loader, *, epochs, optimizer, scheduler=None, **kwargs):
        seen.update(epochs=epochs, scheduler=scheduler, lr=optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(tasks_module, "fit", fake_fit)
    cfg = SweepConfig.quick(out=str(tmp_path), epochs=4, lr=3e-3, lr_schedule=schedule, quiet=True)
    tasks_module.train_model(SweepTask("noise", 0.5, 0), cfg)
    assert seen["epochs"] == 4 and seen["lr"] == 3e-3
    if expected is None:
        assert seen["scheduler"] is None
    else:
        assert isinstance(seen["scheduler"], expected) and seen["scheduler"].T_max == 4


def test_a_cosine_schedule_anneals_the_learning_rate_to_zero_over_the_epochs(tmp_path):
    cfg = SweepConfig.quick(out=str(tmp_path), epochs=3, lr=1e-3, lr_schedule="cosine", quiet=True)
    lrs = []
    real_step = torch.optim.lr_scheduler.CosineAnnealingLR.step

    def step(self, *args, **kwargs):
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.lr_scheduler.CosineAnnealingLR, "step", step)
        tasks_module.train_model(SweepTask("noise", 0.5, 0), cfg.replace(methods=("noise",)))
    # the scheduler steps once at construction and once after each epoch: lr of epochs 1..3, then 0
    assert lrs[1:] == pytest.approx([1e-3, 7.5e-4, 2.5e-4], rel=1e-9)


def test_the_cache_key_of_a_constant_schedule_is_unchanged_by_the_option():
    task = SweepTask("noise", 1.0, 0)
    assert "lr_schedule" not in training_settings(task, SweepConfig.quick())
    assert training_settings(task, SweepConfig.quick(lr_schedule="cosine"))["lr_schedule"] == "cosine"
    assert model_key(task, SweepConfig.quick(data="shapes32")).startswith("shapes32_convnet_noise_1_s0_")


def test_convnet_standardises_inside_and_treats_examples_independently():
    torch.manual_seed(0)
    model = ConvNet(width=8, mean=0.3, std=0.2)
    plain = ConvNet(width=8, mean=0.0, std=1.0)
    plain.load_state_dict(model.state_dict())
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    model.double(), plain.double()
    torch.testing.assert_close(model(x), plain((x - 0.3) / 0.2), rtol=1e-12, atol=1e-12)
    # group normalisation: no batch statistics, so one example's logits do not depend on the others
    # and train and eval mode agree
    alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(model(x), alone, rtol=1e-12, atol=1e-12)
    out_train = model.train()(x)
    torch.testing.assert_close(model.eval()(x), out_train, rtol=0, atol=0)
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 4
    assert not any(isinstance(m, nn.GroupNorm) for m in ConvNet(width=8, groups=0).modules())
    assert sum(isinstance(m, nn.ReLU) for m in ConvNet(width=8, activation="relu").modules()) == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"width": 6, "groups": 4}, ValueError, "`width` to be a multiple of `groups`"),
        ({"activation": "tanh"}, ValueError, "`activation`"),
        ({"std": 0.0}, ValueError, "`std` to be a finite number > 0"),
        ({"mean": float("nan")}, ValueError, "`mean` to be a finite number"),
        ({"groups": -1}, ValueError, "`groups` to be >= 0"),
    ],
)
def test_convnet_refuses_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConvNet(**kwargs)


def test_the_sweep_builds_the_convnet_for_the_data():
    model = build_model(SweepConfig.quick(data="shapes32"))
    assert isinstance(model, ConvNet)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert model.features[0].in_channels == 3


def test_a_fresh_process_trains_shapes32_on_its_training_split():
    # the registry of embedded data is filled on first use: the first lookup must already see
    # shapes32, or the sweep would take it for data of the user's and train on the test split
    code = (
        "from captum_pags.analysis.components.embedded import EMBEDDED_DATASETS\n"
        "assert 'shapes32' in EMBEDDED_DATASETS\n"
        "from captum_pags.analysis import SweepConfig\n"
        "from captum_pags.analysis.tasks import training_data, train_source\n"
        "cfg = SweepConfig.quick(data='shapes32')\n"
        "print(len(training_data(cfg)), train_source(cfg).split)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["5000", "train"]
    code = (
        "from captum_pags.analysis import SweepConfig\n"
        "from captum_pags.analysis.tasks import training_data\n"
        "print(len(training_data(SweepConfig.quick(data='shapes32'))))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == [
        "5000"
    ]
