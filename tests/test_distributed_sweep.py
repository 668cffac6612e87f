"""The quick sweep gives the same models, metrics and regimes serially, on Ray (a worker killed) and as shards."""

import json
import math
import os
from pathlib import Path

import pytest
import torch

from captum_pags.analysis import SweepConfig, assemble_report, run_sweep, run_tasks, sweep_tasks
from captum_pags.analysis.sweep import _write_config
from captum_pags.cli import main

pytestmark = pytest.mark.slow
KEYS = (
    "accuracy",
    "alignment_bayes",
    "alignment_conditional",
    "tangent_alignment",
    "relative_robustness",
    "robustness_on",
    "robustness_off",
    "tangent_alignment_decoder",
    "relative_robustness_decoder",
    "gradient_norm",
)


def _by_point(result):
    return {(r.method, r.strength, r.seed): r for r in result.results}


def _assert_same(a, b):
    pa, pb = _by_point(a), _by_point(b)
    assert sorted(pa) == sorted(pb)
    for point, ra in pa.items():
        rb = pb[point]
        for key in KEYS:
            # same seeds, same numbers; only float32 reduction order may differ with thread counts
            assert math.isclose(ra.metrics[key], rb.metrics[key], rel_tol=1e-5, abs_tol=1e-7), (point, key)
        assert ra.regime == rb.regime, point


@pytest.fixture(scope="module", autouse=True)
def _worker_threads():
    # Ray tasks of 2 workers use cores // 2 threads each; the serial and sharded runs use as many, so
    # that every run reduces in the same float32 order and the numbers agree to rounding
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def serial(tmp_path_factory, _worker_threads):
    return run_sweep(SweepConfig.quick(out=str(tmp_path_factory.mktemp("serial")), quiet=True))


def test_ray_with_a_killed_worker_gives_the_serial_results(serial, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    tests_dir = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
    from _sweep_faults import dying_run_task

    config = serial.config.replace(out=str(tmp_path))
    _write_config(config)
    payloads = run_tasks(sweep_tasks(config), config, executor="ray", num_workers=2, task_fn=dying_run_task)
    assert (tmp_path / "killed_once").is_file()  # the worker did die
    killed = [p for p in payloads if (p["task"]["method"], p["task"]["strength"]) == ("noise", 1.0)]
    assert killed[0]["resumed"] and killed[0]["pid"] != int((tmp_path / "killed_once").read_text())
    assert len({p["pid"] for p in payloads}) >= 2  # the tasks ran in several worker processes
    ray_result = assemble_report(config)
    assert not ray_result.missing
    _assert_same(serial, ray_result)


def test_two_shards_and_report_give_the_serial_results(serial, tmp_path, capsys):
    out = str(tmp_path)
    assert main(["sweep", "--quick", "--shard", "1/2", "--out", out, "--quiet"]) == 0
    first = capsys.readouterr().out
    assert "captum-pags report" in first
    assert main(["report", out, "--no-maps"]) == 0  # half the grid: the report lists what is missing
    partial = capsys.readouterr().out
    assert "missing results" in partial
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["missing"] and len(payload["missing"]) < len(serial.results)
    assert main(["sweep", "--quick", "--shard", "2/2", "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", out]) == 0
    assert "missing" not in capsys.readouterr().out
    _assert_same(serial, assemble_report(out))
    assert (tmp_path / "report.html").is_file()
