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
