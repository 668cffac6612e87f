"""Every user error of ``captum-pags analyze``: one line on stderr, exit 2, no traceback, before any work."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from analysis_assets import build_assets

from captum_pags.analysis import user as user_module
from captum_pags.analysis.components import score as score_module
from captum_pags.cli import main


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    a = build_assets(root)
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))).save(str(root / "mlp16.pt"))
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 1000))).save(
        str(root / "imagenet_head.pt")
    )
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))).save(str(root / "mlp32.pt"))
    rng = np.random.default_rng(0)
    np.savez(root / "nhwc.npz", x=rng.random((4, 32, 32, 3), dtype=np.float32), y=np.zeros(4, int))
    np.savez(root / "bytes.npz", x=rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), y=np.zeros(4, int))
    np.savez(root / "grey16.npz", x=rng.random((4, 1, 16, 16), dtype=np.float32), y=np.zeros(4, int))
    np.savez(root / "labels12.npz", x=rng.random((4, 1, 16, 16), dtype=np.float32), y=np.array([0, 3, 7, 12]))
    np.savez(root / "grey32.npz", x=rng.random((4, 1, 32, 32), dtype=np.float32), y=np.zeros(4, int))
    np.savez(root / "rgb32_255.npz", x=255 * rng.random((4, 3, 32, 32), dtype=np.float32), y=np.zeros(4, int))
    (root / "a_file").write_text("not a folder")
    (root / "sweep" / "models").mkdir(parents=True)
    (root / "sweep_json").mkdir()
    (root / "sweep_json" / "results.json").write_text(json.dumps({"config": {"methods": ["noise"]}, "results": []}))
    return a


@pytest.fixture
def no_work(monkeypatch):
    """Fail loudly if the measurement starts, or if score weights are read for a decision."""

    def work(*args, **kwargs):
        raise AssertionError("the analysis started before the input was refused")

    monkeypatch.setattr(user_module, "measure_batches", work)
    return monkeypatch


CASES = {
    # numbers
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
    "negative max examples": (["--max-examples", "-1"], "--max-examples"),
    "NaN epsilon": (["--epsilons", "0.5,nan"], "--epsilons"),
    "negative epsilon": (["--epsilons", "-1"], "--epsilons"),
    "negative sigma": (["--sigma", "-1"], "--sigma"),
    "NaN sigma": (["--sigma", "nan"], "--sigma"),
    "no samples": (["--n-samples", "0"], "--n-samples"),
    "negative seed": (["--seed", "-2"], "--seed"),
    "reference accuracy above 1": (["--reference-accuracy", "2"], "--reference-accuracy"),
    "missing reference": (["--reference", "{root}/none.json"], "does not exist"),
    "reference and reference accuracy": (["--reference", "{root}/a_file", "--reference-accuracy", "0.9"], "not both"),
    "unknown alignment metric": (["--alignment-metrics", "cosine,l2"], "--alignment-metrics"),
    "bad data range": (["--data", "{root}/grey16.npz", "--data-range", "1,0"], "--data-range"),
    # devices
    "unknown device": (["--device", "banana"], "banana"),
    "CUDA without CUDA": (["--device", "cuda"], "CUDA is not available"),
    # folders and files
    "out is a file": (["--out", "{root}/a_file"], "is a file"),
    "out is a sweep's folder": (["--out", "{root}/sweep"], "sweep's report"),
    "out holds a sweep's results": (["--out", "{root}/sweep_json"], "sweep's report"),
    "missing model": (["--model", "{root}/none.pt"], "does not exist"),
    "missing data": (["--data", "{root}/none.npz"], "does not exist"),
    "unknown data": (["--data", "imagenet"], "--data"),
    "missing score model": (["--score-model", "{root}/none"], "does not exist"),
    "missing decoder": (["--tangent", "decoder:{root}/none"], "does not exist"),
    "missing local-pca file": (["--tangent", "local-pca:3:{root}/none.npz"], "does not exist"),
    "bad tangent": (["--tangent", "spline:3"], "--tangent"),
    "bad extra tangent": (["--extra-tangent", "pca:3"], "--extra-tangent NAME=SPEC"),
    "bad model kwargs": (
        [
            "--model",
            "{root}/resnet18.safetensors",
            "--model-class",
            "torchvision.models:resnet18",
            "--model-kwargs",
            "{num_classes: 10}",
        ],
        "JSON",
    ),
    "unknown model class": (
        ["--model", "{root}/resnet18.safetensors", "--model-class", "no.such:Net"],
        "cannot import",
    ),
    "normalize and mean": (["--normalize", "0.5;0.2", "--mean", "0.5", "--std", "0.2"], "not both"),
    # pieces that do not fit
    "NHWC array": (["--data", "{root}/nhwc.npz"], "channels-last"),
    "0..255 bytes as [0, 1]": (["--data", "{root}/bytes.npz"], "0..255"),
    "values outside the range": (["--data", "{root}/rgb32_255.npz"], "outside data_range"),
    "16x16 file is not digits16": (["--data", "{root}/grey16.npz", "--tangent", "exact"], "exact needs embedded"),
    "spatial size vs sample_size": (
        ["--model", "{root}/mlp32.pt", "--data", "{root}/images", "--score-model", "{root}/small"],
        "sample_size",
    ),
    "channels vs in_channels": (
        ["--model", "{root}/mlp32.pt", "--data", "{root}/grey32.npz", "--score-model", "{root}/cond"],
        "channel",
    ),
    "classifier vs score model classes": (
        ["--model", "{root}/imagenet_head.pt", "--data", "{root}/images", "--score-model", "{root}/cond"],
        "1000 classes but the score model 10",
    ),
    "shipped model with another range": (
        ["--data", "{root}/rgb32_255.npz", "--data-range", "0,255", "--score-model", "shipped"],
        "[0, 1]",
    ),
    "denoiser tangent without unconditional score": (
        [
            "--model",
            "{root}/mlp32.pt",
            "--data",
            "{root}/images",
            "--score-model",
            "{root}/cond",
            "--tangent",
            "denoiser:4",
        ],
        "unconditional",
    ),
    "labels beyond the classifier's classes": (["--data", "{root}/labels12.npz"], "labels go from 0 to 12"),
    "normalisation of other channels": (["--normalize", "0.5,0.5,0.5;0.2,0.2,0.2"], "channel"),
    "model that does not take the data": (["--model", "{root}/mlp32.pt"], "does not take inputs"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_user_error_is_one_line_exit_2_before_any_work(assets, no_work, capsys, case):
    extra, message = CASES[case]
    root = str(assets.root)
    argv = ["analyze", "--model", f"{root}/mlp16.pt", "--quiet", "--out", f"{root}/out"]
    argv += [a.replace("{root}", root) for a in extra]
    if "--score-model" in extra and "shipped" not in extra:
        no_work.setattr(score_module, "_load", _no_weights)  # decided from configs alone
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("captum-pags: error:") and message in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def _no_weights(*args, **kwargs):
    raise AssertionError("score-model weights were loaded to decide a refusal")


def test_a_refusal_from_the_console_has_no_log_lines_or_traceback(assets):
    root = str(assets.root)
    argv = ["--model", f"{root}/mlp32.pt", "--data", f"{root}/images", "--score-model", f"{root}/small", "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "captum_pags.cli", "analyze", *argv, "--out", f"{root}/out2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "sample_size" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"), [(["--device", "banana"], "banana"), (["--out", "{root}/a_file"], "is a file")]
)
def test_sweep_refuses_a_bad_device_or_output_before_training(assets, monkeypatch, capsys, extra, message):
    from captum_pags.analysis import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "run_sweep", lambda *a, **k: pytest.fail("the sweep started"))
    argv = ["sweep", "--quick", "--quiet", *[a.replace("{root}", str(assets.root)) for a in extra]]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
