"""Sweep settings are validated at construction, and the model cache key covers every training setting."""

import math

import pytest
import torch

from captum_pags.analysis import SweepConfig, run_sweep
from captum_pags.analysis import tasks as tasks_module
from captum_pags.analysis.grid import SweepTask, model_key, parse_shard, shard_tasks, sweep_tasks
from captum_pags.cli import main


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"methods": ()}, ValueError, "`methods` to hold at least one"),
        ({"methods": "noise"}, TypeError, "`methods` to be a sequence"),
        ({"methods": ("noise", "noise")}, ValueError, "each method once"),
        ({"strengths": {"nosie": (0.0, 1.0)}}, ValueError, r"keys of `strengths`.*\['nosie'\]"),
        ({"strengths": {"noise": (0.0, math.nan)}}, ValueError, r"`strengths\['noise'\]` to hold finite numbers"),
        ({"strengths": {"noise": (0.0, math.inf)}}, ValueError, "finite numbers >= 0"),
        ({"strengths": {"noise": (-1.0,)}}, ValueError, "finite numbers >= 0"),
        ({"strengths": {"noise": ()}}, ValueError, "at least one strength"),
        ({"strengths": {"noise": (1.0, 1.0)}}, ValueError, "each strength once"),
        ({"strengths": {"noise": 1.0}}, TypeError, "sequence of numbers"),
        ({"n_eval": -5}, ValueError, "`n_eval` to be >= 1"),
        ({"n_eval": 0}, ValueError, "`n_eval` to be >= 1"),
        ({"batch_size": 0}, ValueError, "`batch_size` to be >= 1"),
        ({"epochs": 2.5}, TypeError, "`epochs` to be an int"),
        ({"sigma": math.nan}, ValueError, "`sigma` to be a finite number > 0"),
        ({"lr": -1e-3}, ValueError, "`lr` to be a finite number > 0"),
        ({"epsilons": (0.5, math.nan)}, ValueError, "`epsilons` to be a finite number > 0"),
        ({"epsilons": ()}, ValueError, "`epsilons` to hold at least one"),
        ({"seeds": ()}, ValueError, "`seeds` to hold at least one"),
        ({"seeds": (0, 0)}, ValueError, "distinct seeds"),
        ({"seeds": (0.5,)}, TypeError, "`seeds` to be an int"),
        ({"architecture": "resnet"}, ValueError, "`architecture`"),
        ({"architecture_kwargs": [1]}, TypeError, "`architecture_kwargs` to be a dict"),
        ({"pgd_steps": 0}, ValueError, "`pgd_steps` to be >= 1"),
        ({"lr_schedule": "linear"}, ValueError, "`lr_schedule`"),
        ({"data": ""}, TypeError, "`data` to be a non-empty str"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        SweepConfig(**kwargs)


def test_misspelt_keys_are_refused():
    with pytest.raises(TypeError, match="strenghts"):
        SweepConfig(strenghts={"noise": (0.0,)})
    with pytest.raises(ValueError, match=r"unknown keys \['strenghts'\]"):
        SweepConfig.from_dict({"strenghts": {"noise": [0.0, 1.0]}})
    with pytest.raises(TypeError, match="`data` to be a dict"):
        SweepConfig.from_dict([("epochs", 3)])
    cfg = SweepConfig(seeds=(3, 4), strengths={"noise": (0.0, 2.0)}, architecture_kwargs={"hidden": [32]})
    assert SweepConfig.from_dict(cfg.to_dict()) == cfg


def test_defaults_have_three_seeds_and_quick_one():
    assert len(SweepConfig().seeds) >= 3
    assert SweepConfig.quick().seeds == (0,)


def test_grid_tasks_share_the_plain_model_and_shards_cover_it_once():
    cfg = SweepConfig.quick(methods=("gradient_norm", "noise", "pgd"), seeds=(0, 1))
    tasks = sweep_tasks(cfg)
    assert len(tasks) == len(set(tasks)) == 2 * (1 + 2 + 2 + 2)
    assert next(t for t in tasks if t.method == "plain").serves(cfg) == [
        ("gradient_norm", 0.0),
        ("noise", 0.0),
        ("pgd", 0.0),
    ]
    for n in (1, 2, 3, 5, 20):
        shards = [shard_tasks(tasks, (i, n)) for i in range(1, n + 1)]
        flat = [t for s in shards for t in s]
        assert sorted(flat) == sorted(tasks)
    for bad in ("0/2", "3/2", "1-2", "a/b", "1/0"):
        with pytest.raises(ValueError, match="`shard` to be I/N"):
            parse_shard(bad)


@pytest.mark.parametrize(
    "change",
    [
        {"pgd_steps": 3},
        {"epochs": 5},
        {"lr": 2e-3},
        {"batch_size": 32},
        {"architecture": "cnn"},
        {"architecture": "convnet"},
        {"lr_schedule": "cosine"},
        {"architecture_kwargs": {"hidden": [64, 64]}},
    ],
)
def test_cache_key_covers_every_training_setting(change):
    base = SweepConfig.quick()
    task = SweepTask("pgd", 1.0, 0)
    assert model_key(task, base) != model_key(task, base.replace(**change))
    # measurement settings do not retrain
    assert model_key(task, base) == model_key(task, base.replace(sigma=0.2, n_eval=10, epsilons=(0.3,)))
    assert model_key(task, base) != model_key(SweepTask("pgd", 1.0, 1), base)


def test_a_changed_setting_trains_a_new_model(tmp_path, monkeypatch):
    cfg = SweepConfig.quick(out=str(tmp_path), epochs=1, quiet=True, methods=("noise",), strengths={"noise": (0.5,)})
    task = SweepTask("noise", 0.5, 0)
    _, first = tasks_module.train_model(task, cfg)
    _, again = tasks_module.train_model(task, cfg)
    assert not first["from_cache"] and again["from_cache"]
    _, other = tasks_module.train_model(task, cfg.replace(batch_size=32))
    assert not other["from_cache"] and other["model"] != first["model"]


def test_training_does_not_touch_the_global_rng(tmp_path):
    cfg = SweepConfig.quick(out=str(tmp_path), epochs=1, quiet=True, methods=("noise",), strengths={"noise": (0.5,)})
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tasks_module.train_model(SweepTask("noise", 0.5, 0), cfg)
    torch.testing.assert_close(torch.rand(3), expected)


def test_one_strength_per_method_does_not_crash(tmp_path):
    cfg = SweepConfig.quick(
        out=str(tmp_path),
        epochs=1,
        quiet=True,
        n_eval=16,
        n_samples=1,
        strengths={"gradient_norm": (1.0,), "noise": (0.5,)},
    )
    res = run_sweep(cfg)
    assert [g["regime"] in ("weak", "bayes_aligned", "excessive", "undetermined") for g in res.groups] == [True, True]
    assert res.files["html"].is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strengths-noise", "0,nan"], "finite number"),
        (["--seeds", ""], "--seeds"),
        (["--methods", "noise,dropout"], "`methods`"),
        (["--methods", ","], "`methods` to hold at least one"),
        (["--epochs", "0"], "`epochs` to be >= 1"),
        (["--shard", "3/2"], "I/N"),
        (["--address", "auto"], "--executor ray"),
        (["--executor", "ray", "--num-workers", "0"], "--num-workers"),
        (["--device", "cuda:7"], "cuda"),
        (["--device", "gpu"], "`device`"),
    ],
)
def test_cli_errors_are_one_line_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tasks_module, "train_model", lambda *a, **k: pytest.fail("work started"))
    assert main(["sweep", "--quick", "--quiet", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("captum-pags: error:") and message in err[0], err
    assert not (tmp_path / "out" / "results").exists()


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tasks_module, "train_model", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "file").write_text("x")
    assert main(["sweep", "--quick", "--quiet", "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0]


def test_report_of_a_folder_without_a_sweep(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "sweep_config.json" in capsys.readouterr().err


def test_paper_units_convert_the_strength_for_training():
    from captum_pags.analysis.grid import make_loss
    from captum_pags.training import from_paper_strength

    cfg = SweepConfig.quick(strength_units="paper", batch_size=64, methods=("gradient_norm", "pgd", "noise"))
    for method, attr in (("gradient_norm", "lam"), ("noise", "sigma")):
        loss = make_loss(SweepTask(method, 0.5, 0), cfg)
        assert math.isclose(getattr(loss, attr), from_paper_strength(method, 0.5, batch_size=64), rel_tol=1e-12)
    pgd = make_loss(SweepTask("pgd", 2.0, 0), cfg)
    assert math.isclose(pgd._attack_kwargs["epsilon"], 2.0 / 8.0, rel_tol=1e-12)  # eps_paper / sqrt(B)
    ours = cfg.replace(strength_units="ours")
    assert make_loss(SweepTask("gradient_norm", 0.5, 0), ours).lam == 0.5
    assert model_key(SweepTask("pgd", 2.0, 0), cfg) != model_key(SweepTask("pgd", 2.0, 0), ours)
    assert model_key(SweepTask("plain", 0.0, 0), cfg) == model_key(SweepTask("plain", 0.0, 0), ours)
    with pytest.raises(ValueError, match="`strength_units`"):
        SweepConfig(strength_units="lambda")
