import subprocess
import sys

import pytest
import torch

from captum_pags.cli import build_parser, main


def test_help_explains_every_option():
    parser = build_parser()
    for command in ("sweep", "analyze"):
        sub = parser._subparsers._group_actions[0].choices[command]
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{command} {action.option_strings} has no help"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["analyze", "--model", "missing.pt"], "does not exist"),
        (["analyze", "--model", __file__, "--model-class", "captum_pags.models:MLP"], "cannot load weights"),
        (["analyze", "--model", __file__], "not a TorchScript file"),
    ],
)
def test_bad_input_is_one_line_on_stderr(argv, message, capsys):
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("captum-pags: error:") and message in err[0]


def test_unknown_dataset_and_wrong_model(tmp_path, capsys):
    model_file = tmp_path / "m.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))).save(str(model_file))
    assert main(["analyze", "--model", str(model_file), "--data", "imagenet", "--quiet"]) == 2
    assert "digits16" in capsys.readouterr().err
    data = tmp_path / "d.pt"
    torch.save({"x": torch.rand(4, 3, 8, 8), "y": torch.zeros(4, dtype=torch.long)}, data)
    assert main(["analyze", "--model", str(model_file), "--data", str(data), "--quiet", "--out", str(tmp_path)]) == 2
    assert "does not take inputs" in capsys.readouterr().err
    scalar = tmp_path / "s.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 1), torch.nn.Flatten(0))).save(
        str(scalar)
    )
    assert main(["analyze", "--model", str(scalar), "--quiet", "--out", str(tmp_path)]) == 2
    assert "(N, classes)" in capsys.readouterr().err


def test_analyze_writes_a_report(tmp_path, capsys):
    model_file = tmp_path / "m.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))).save(str(model_file))
    out = tmp_path / "report"
    assert main(["analyze", "--model", str(model_file), "--max-examples", "16", "--quiet", "--out", str(out)]) == 0
    assert (out / "report.html").is_file() and "regime:" in capsys.readouterr().out


def test_console_entry_point_runs_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "captum_pags.cli", "analyze", "--model", str(tmp_path / "none.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_help_and_argument_errors_do_not_load_torch():
    code = (
        "import sys\n"
        "from captum_pags.cli import main\n"
        "for argv in (['--help'], ['analyze', '--help'], ['analyze', '--model', 'm.pt', '--batch-size', '0']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout + proc.stderr
    assert proc.stderr.strip() == "captum-pags: error: argument --batch-size: expected an integer >= 1 but got '0'"


def test_the_command_never_reexecutes_itself(monkeypatch, capsys):
    import os

    def execv(*args):
        raise AssertionError("os.execv was called")

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setattr(sys, "argv", ["captum-pags", "analyze", "--model", "missing.pt", "--quiet"])
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main() == 2
    assert "does not exist" in capsys.readouterr().err


def test_analyze_help_shows_an_example_for_each_component():
    sub = build_parser()._subparsers._group_actions[0].choices["analyze"]
    text = sub.format_help()
    for example in (
        "--data cifar10:",
        "--data images/",
        "--data data.npz",
        "--model-class torchvision.models:resnet18",
        "--normalize",
        "--unconditional-score-model",
        "--score-model edm_denoiser.pt2",
        "--tangent pca:",
        "--tangent local-pca:",
        "--tangent decoder:",
        "--tangent denoiser:",
    ):
        assert example in text, example
    assert "default: analysis" in text  # its own folder, never a sweep's report/
