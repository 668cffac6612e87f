"""captum-pags analyze on the embedded shapes32 data: the exact curved tangent space and the shipped pieces."""

import json

import pytest
import torch

from captum_pags.cli import main
from captum_pags.models import SHAPES32_SCORE_WEIGHTS


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3072, 32), torch.nn.Softplus(), torch.nn.Linear(32, 5)
    )
    path = tmp_path_factory.mktemp("shapes32") / "classifier.pt"
    torch.jit.script(net).save(str(path))
    return path


@pytest.mark.parametrize("tangent", ["exact", "decoder:shipped"])
def test_analyze_runs_on_shapes32_with_the_exact_and_the_shipped_decoder_tangent(classifier_file, tmp_path, tangent):
    out = tmp_path / "report"
    argv = ["analyze", "--model", str(classifier_file), "--data", "shapes32", "--tangent", tangent]
    argv += ["--score-model", str(SHAPES32_SCORE_WEIGHTS), "--max-examples", "8", "--n-samples", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    payload = json.loads((out / "results.json").read_text())
    (row,) = payload["results"]
    assert row["n"] == 8
    for key in ("alignment_bayes", "alignment_conditional", "tangent_alignment", "robustness_on", "robustness_off"):
        assert torch.isfinite(torch.tensor(float(row[key]))), key


def test_exact_tangent_refuses_points_off_the_manifold_inside_the_analysis():
    from captum_pags.datasets import load_shapes32, shapes32_tangent

    test = load_shapes32("test")
    with pytest.raises(ValueError, match="defined only on the data manifold"):
        shapes32_tangent("test").basis(test.images[:2] + 0.05)
