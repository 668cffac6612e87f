"""The sweep takes the analysis' components: --data, --score-model, --tangent and any architecture class."""

import json

import pytest
import torch

from captum_pags.analysis import SweepConfig
from captum_pags.analysis import tasks as tasks_module
from captum_pags.analysis.grid import SweepTask, build_model, data_info, model_key, training_settings
from captum_pags.cli import main


def test_defaults_are_the_digits16_pieces():
    cfg = SweepConfig()
    assert (cfg.data, cfg.score_model, cfg.tangent, cfg.architecture) == ("digits16", "auto", "exact", "mlp")
    assert training_settings(SweepTask("noise", 1.0, 0), cfg)["data"] == "digits16:train"
    assert data_info(cfg) == ((1, 16, 16), 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "shapes32"},
        {"data": "shapes32", "tangent": "local-pca:8", "architecture": "cnn"},
        {"architecture": "torchvision.models:resnet18", "architecture_kwargs": {"num_classes": 10}},
        {"tangent": "denoiser:4", "score_model": "none"},
    ],
)
def test_component_settings_round_trip(kwargs):
    cfg = SweepConfig.quick(**kwargs)
    back = SweepConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    for key, value in kwargs.items():
        assert getattr(back, key) == value


def test_the_cache_key_includes_the_data_and_the_architecture_kwargs():
    task = SweepTask("noise", 1.0, 0)
    digits, shapes = SweepConfig.quick(), SweepConfig.quick(data="shapes32")
    assert model_key(task, digits) != model_key(task, shapes)
    assert training_settings(task, shapes)["data"] == "shapes32:train"
    tv = {"architecture": "torchvision.models:resnet18"}
    a = SweepConfig.quick(data="shapes32", **tv, architecture_kwargs={"num_classes": 5})
    b = SweepConfig.quick(data="shapes32", **tv, architecture_kwargs={"num_classes": 5, "zero_init_residual": True})
    assert model_key(task, a) != model_key(task, b)
    assert model_key(task, a).startswith("shapes32_resnet18_noise_1_s0_")


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_builtin_architectures_take_the_data_shape_and_classes(architecture):
    cfg = SweepConfig.quick(data="shapes32", architecture=architecture)
    assert build_model(cfg)(torch.zeros(3, 3, 32, 32)).shape == (3, 5)


def test_a_torchvision_architecture_with_kwargs():
    cfg = SweepConfig.quick(
        data="shapes32", architecture="torchvision.models:resnet18", architecture_kwargs={"num_classes": 5}
    )
    model = build_model(cfg)
    assert type(model).__name__ == "ResNet" and model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_user_data_without_a_training_split_is_refused(tmp_path):
    path = tmp_path / "mine.npz"
    import numpy as np

    np.savez(path, x=np.zeros((4, 3, 8, 8), dtype=np.float32), y=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="training split.*embedded dataset"):
        SweepConfig(data=str(path))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "nosuchdata"], "Expected --data"),
        (["--data", "{npz}"], "training split"),
        (["--tangent", "pca:-3"], "--tangent pca:K"),
        (["--tangent", "sphere"], "Expected --tangent"),
        (["--score-model", "{missing}"], "does not exist"),
        (["--architecture", "resnet"], "module:Name"),
        (["--architecture", "torchvision.models:resnet1800"], "cannot import"),
        (["--architecture", "torchvision.models:resnet18"], "does not take digits16 images"),
        (["--data", "shapes32", "--architecture", "torchvision.models:resnet18"], "(N, 5) logits"),
        (["--architecture-kwargs", "[1]"], "--architecture-kwargs to be a JSON object"),
        (["--architecture-kwargs", "{bad"], "--architecture-kwargs to be a JSON object"),
        (["--architecture-kwargs", '{"hidden": "x"}'], "--architecture"),
    ],
)
def test_component_errors_are_one_line_exit_2_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    import numpy as np

    npz = tmp_path / "mine.npz"
    np.savez(npz, x=np.zeros((4, 1, 16, 16), dtype=np.float32), y=np.zeros(4, dtype=np.int64))
    argv = [a.replace("{npz}", str(npz)).replace("{missing}", str(tmp_path / "missing")) for a in argv]
    monkeypatch.setattr(tasks_module, "train_model", lambda *a, **k: pytest.fail("work started"))
    assert main(["sweep", "--quick", "--quiet", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("captum-pags: error:") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_tangent_angles_are_zero_for_the_same_plane_and_90_for_an_orthogonal_direction():
    from captum_pags.analysis.angles import tangent_angles
    from captum_pags.manifold import LinearSubspace

    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        q = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0].T  # orthonormal rows
        exact = LinearSubspace(q[:2])
        rotated = LinearSubspace(torch.stack([q[0] + q[1], q[0] - q[1]]))  # the same plane, another basis
        half = LinearSubspace(torch.stack([q[0], q[2]]))  # one shared direction, one orthogonal
        angles = tangent_angles({"rotated": rotated, "half": half}, exact, torch.randn(5, 6, generator=g))
        assert angles["rotated"]["max_max"] < 1e-4
        assert angles["half"]["mean"] == pytest.approx(45.0, abs=1e-4)
        assert angles["half"]["max_mean"] == pytest.approx(90.0, abs=1e-4)
    assert tangent_angles({}, exact, torch.zeros(1, 6)) == {}
    assert tangent_angles({"rotated": rotated}, None, torch.zeros(1, 6)) == {}


@pytest.mark.slow
def test_shapes32_sweep_reports_the_estimators_principal_angles(tmp_path):
    from captum_pags.analysis import run_sweep

    cfg = SweepConfig.quick(
        data="shapes32",
        out=str(tmp_path),
        epochs=1,
        quiet=True,
        methods=("noise",),
        strengths={"noise": (0.0, 0.5)},
        n_eval=12,
        n_samples=1,
        epsilons=(1.0,),
    )
    res = run_sweep(cfg)
    payload = json.loads(res.files["json"].read_text())
    angles = payload["tangent_angles"]
    assert sorted(angles) == ["decoder", "denoiser", "local-pca"]
    assert {n: a["dim"] for n, a in angles.items()} == {"decoder": 10, "denoiser": 7, "local-pca": 7}
    for a in angles.values():
        assert 0.0 <= a["mean"] <= a["max_mean"] <= a["max_max"] <= 90.0 + 1e-6
    assert (
        res.files["angles"].is_file() and "Estimated tangent spaces vs the exact one" in res.files["html"].read_text()
    )
    assert payload["title"] == "captum_pags sweep on shapes32"
    assert all(r["accuracy"] >= 0 for r in payload["results"])
    keys = set(payload["results"][0])
    assert {"tangent_alignment_decoder", "tangent_alignment_local-pca", "tangent_alignment_denoiser"} <= keys


@pytest.mark.parametrize(("tangent", "dim"), [("pca:8", 8), ("local-pca:4", 4)])
def test_a_sweep_with_an_estimated_primary_tangent_space(tangent, dim, tmp_path):
    from captum_pags.analysis import run_sweep
    from captum_pags.analysis.tasks import evaluation_data

    cfg = SweepConfig.quick(
        tangent=tangent,
        out=str(tmp_path),
        epochs=1,
        quiet=True,
        methods=("noise",),
        strengths={"noise": (0.0,)},
        n_eval=16,
        n_samples=1,
        epsilons=(1.0,),
    )
    res = run_sweep(cfg)
    assert evaluation_data(cfg).tangent_space.dim == dim
    (row,) = res.rows
    assert 0.0 < row["tangent_alignment"] <= 1.0 and 0.0 < row["tangent_alignment_decoder"] <= 1.0
    assert f"--tangent {tangent} ({dim} dimensions)" in " ".join(json.loads(res.files["json"].read_text())["notes"])


def _tiny_sweep(**overrides):
    settings = dict(
        tangent="pca:4",
        score_model="none",
        epochs=1,
        quiet=True,
        methods=("noise",),
        strengths={"noise": (0.0, 0.5)},
        n_eval=12,
        n_samples=1,
        epsilons=(1.0,),
    )
    settings.update(overrides)
    return SweepConfig.quick(**settings)


def test_a_sweep_on_a_torchvision_dataset_trains_on_its_training_split(tmp_path, monkeypatch):
    from analysis_assets import skip_cifar_checksums, write_fake_cifar10

    from captum_pags.analysis import run_sweep

    skip_cifar_checksums(monkeypatch)
    root = write_fake_cifar10(tmp_path / "cifar", n_train=40, n_test=12)
    cfg = _tiny_sweep(data=f"cifar10:{root}", out=str(tmp_path / "out"))
    assert len(tasks_module.training_data(cfg)) == 40  # the training split, not the measured test split
    assert data_info(cfg) == ((3, 32, 32), 10)
    res = run_sweep(cfg)
    assert len(res.rows) == 2
    for row in res.rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 < row["tangent_alignment"] <= 1.0
        assert row["regime"] == "undetermined"  # no score model: no alignment decides a regime


def test_a_sweep_on_files_of_yours_trains_on_train_data(tmp_path):
    import numpy as np

    from captum_pags.analysis import run_sweep

    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 12)):
        np.savez(
            tmp_path / f"{name}.npz",
            x=rng.random((n, 1, 8, 8), dtype=np.float32),
            y=np.arange(n) % 3,
        )
    cfg = _tiny_sweep(data=str(tmp_path / "test.npz"), train_data=str(tmp_path / "train.npz"), out=str(tmp_path / "o"))
    assert len(tasks_module.training_data(cfg)) == 30 and data_info(cfg) == ((1, 8, 8), 3)
    other = cfg.replace(train_data=str(tmp_path / "test.npz"))
    task = SweepTask("noise", 0.5, 0)
    assert model_key(task, cfg) != model_key(task, other)  # other training images, another model
    res = run_sweep(cfg)
    assert len(res.rows) == 2 and all(0.0 < row["tangent_alignment"] <= 1.0 for row in res.rows)


def test_user_data_needs_an_estimated_tangent_and_embedded_data_refuses_train_data(tmp_path, monkeypatch):
    from analysis_assets import skip_cifar_checksums, write_fake_cifar10

    skip_cifar_checksums(monkeypatch)
    root = write_fake_cifar10(tmp_path / "cifar")
    with pytest.raises(ValueError, match="--tangent exact needs data with a known manifold"):
        SweepConfig(data=f"cifar10:{root}")
    with pytest.raises(ValueError, match="trains on its own training split"):
        SweepConfig(data="digits16", train_data=f"cifar10:{root}")


def test_a_score_model_that_does_not_fit_the_data_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from analysis_assets import tiny_unet
    from diffusers import DDPMScheduler

    from captum_pags.scores import DiffusersScore

    with torch.random.fork_rng(devices=[]):
        DiffusersScore(tiny_unet(11), DDPMScheduler(num_train_timesteps=1000), null_class=10).save_pretrained(
            tmp_path / "cifar_unet"
        )
    monkeypatch.setattr(tasks_module, "train_model", lambda *a, **k: pytest.fail("work started"))
    argv = [
        "sweep",
        "--quick",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
        "--score-model",
        str(tmp_path / "cifar_unet"),
    ]
    assert main(argv) == 2  # a 3x32x32 UNet for 1x16x16 digits16
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("captum-pags: error:") and "--score-model" in err[0], err
    assert not (tmp_path / "out").exists()
