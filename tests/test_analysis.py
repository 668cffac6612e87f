import json
import math
import re
from pathlib import Path

import pytest
import torch

from captum_pags.analysis import (
    AnalysisInputError,
    SweepConfig,
    analyze_model,
    load_user_data,
    load_user_model,
    run_sweep,
)
from captum_pags.analysis import tasks as tasks_module
from captum_pags.analysis.grid import SweepTask
from captum_pags.models import MLP


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return run_sweep(SweepConfig.quick(out=str(out), quiet=True))


@pytest.mark.slow
def test_quick_sweep_shows_the_inverted_u(quick_sweep):
    for method in quick_sweep.config.methods:
        rows = sorted((r for r in quick_sweep.results if r.method == method), key=lambda r: r.strength)
        align = [r.metrics["alignment_bayes"] for r in rows]
        acc = [r.metrics["accuracy"] for r in rows]
        peak = max(align[1:-1])
        assert peak > align[0] and peak > align[-1], (method, align)
        assert acc[-1] < acc[0] - 0.3, (method, acc)
        assert [r.regime for r in rows] == ["weak", "bayes_aligned", "excessive"], method
        for r in rows:  # the estimated (decoder) tangent space is measured too
            assert 0.25 < r.metrics["tangent_alignment_decoder"] <= 1.0
            assert r.metrics["relative_robustness_decoder"] > 0


@pytest.mark.slow
def test_report_files_are_complete_and_self_contained(quick_sweep):
    files = quick_sweep.files
    for key in ("json", "csv", "html", "alignment", "robustness", "maps"):
        assert files[key].is_file() and files[key].stat().st_size > 0
    payload = json.loads(files["json"].read_text())
    assert len(payload["results"]) == len(quick_sweep.results)
    assert payload["config"]["strengths"]["noise"] == list(quick_sweep.config.strengths["noise"])
    html = files["html"].read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(sources) == 5  # alignment, robustness, relative robustness, tangent alignment, maps
    for src in sources:  # embedded, or a file that exists beside the page
        assert src.startswith("data:image/png;base64,") or (files["html"].parent / src).is_file()
    csv_lines = files["csv"].read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(quick_sweep.results)


@pytest.mark.slow
def test_rerun_reuses_finished_models(quick_sweep, monkeypatch):
    calls = []
    monkeypatch.setattr(tasks_module, "fit", lambda *a, **k: calls.append(1))
    # another noise level: every model is measured again, none trained again
    config = quick_sweep.config.replace(sigma=0.25)
    again = run_sweep(config)
    assert calls == []
    assert all(r.from_cache for r in again.results)
    assert "5 models, 5 loaded from the cache" in again.summary()
    for a, b in zip(quick_sweep.results, again.results):
        assert a.metrics["accuracy"] == b.metrics["accuracy"]
        assert a.metrics["alignment_bayes"] != b.metrics["alignment_bayes"]


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    config = SweepConfig.quick(out=str(tmp_path), epochs=2, quiet=True, methods=("noise",), strengths={"noise": (0.5,)})
    real_fit = tasks_module.fit
    seen = {}

    def interrupted_fit(*args, **kwargs):
        seen.update(kwargs)
        real_fit(*args, **{**kwargs, "epochs": 1})  # the first epoch ends with a checkpoint...
        raise KeyboardInterrupt  # ...then the run is interrupted

    task = SweepTask("noise", 0.5, 0)
    monkeypatch.setattr(tasks_module, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        tasks_module.train_model(task, config)
    assert seen["resume"] is True and Path(seen["checkpoint_dir"]).is_dir()
    monkeypatch.setattr(tasks_module, "fit", real_fit)
    resumed, info = tasks_module.train_model(task, config)
    assert info["resumed"] and not info["from_cache"]
    fresh, _ = tasks_module.train_model(task, config.replace(out=str(tmp_path / "fresh")))
    for a, b in zip(resumed.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert not Path(seen["checkpoint_dir"]).exists()  # cleaned up once the model is final


def test_analyze_model_on_digits16(tmp_path):
    x, y = load_user_data("digits16", max_examples=24)
    model = MLP().train()
    before = [m.training for m in model.modules()]
    res = analyze_model(model, x, y, out=str(tmp_path), n_samples=2, quiet=True)
    assert [m.training for m in model.modules()] == before
    assert 0.0 <= res.metrics["accuracy"] <= 1.0
    assert -1.0 <= res.metrics["alignment_bayes"] <= 1.0
    assert res.regime in ("weak", "bayes_aligned", "excessive")
    assert (tmp_path / "report.html").is_file()


def test_analyze_model_on_other_data_uses_pca_and_no_scores(tmp_path):
    x, y = torch.rand(20, 3, 4, 4), torch.arange(20) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    res = analyze_model(model, x, y, out=str(tmp_path), n_samples=2, quiet=True)
    assert math.isnan(res.metrics["alignment_bayes"])
    assert 0.0 <= res.metrics["tangent_alignment"] <= 1.0


def test_user_model_and_data_loading(tmp_path):
    model = MLP()
    scripted = tmp_path / "model.pt"
    torch.jit.script(model).save(str(scripted))
    x = torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(load_user_model(str(scripted))(x), model.eval()(x))
    from safetensors.torch import save_file

    weights = tmp_path / "mlp.safetensors"
    save_file(model.state_dict(), str(weights))
    loaded = load_user_model(str(weights), "captum_pags.models:MLP")
    torch.testing.assert_close(loaded(x), model(x))
    exported = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(exported))
    torch.testing.assert_close(load_user_model(str(exported))(x), model(x))
    torch.save({"x": x, "y": torch.tensor([0, 1, 2])}, tmp_path / "data.pt")
    xx, yy = load_user_data(str(tmp_path / "data.pt"))
    assert xx.shape == (3, 1, 16, 16) and yy.tolist() == [0, 1, 2]
    import numpy as np

    np.savez(tmp_path / "data.npz", x=x.numpy(), y=np.array([0, 1, 2]))
    assert load_user_data(str(tmp_path / "data.npz"))[0].shape == (3, 1, 16, 16)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: load_user_data("mnist"), "digits16"),
        (lambda p: load_user_data(str(p / "nope.pt")), "does not exist"),
        (lambda p: load_user_model(str(p / "nope.pt")), "does not exist"),
        (lambda p: load_user_model(__file__), "not a TorchScript file"),
        (lambda p: load_user_model(__file__, "no.such:Model"), "cannot import"),
    ],
)
def test_bad_user_input(tmp_path, call, match):
    with pytest.raises(AnalysisInputError, match=match):
        call(tmp_path)


def test_models_that_do_not_fit_the_data(tmp_path):
    x, y = load_user_data("digits16", max_examples=8)
    with pytest.raises(AnalysisInputError, match=r"logits of shape \(N, classes\)"):
        analyze_model(lambda z: z.flatten(1).sum(1), x, y, out=str(tmp_path), quiet=True)
    wrong_input = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 10))
    with pytest.raises(AnalysisInputError, match="does not take inputs of shape"):
        analyze_model(wrong_input, x, y, out=str(tmp_path), quiet=True)


def test_config_validation():
    with pytest.raises(ValueError, match="`methods`"):
        SweepConfig(methods=("dropout",))
    with pytest.raises(ValueError, match=r"`strengths\['noise'\]`"):
        SweepConfig(strengths={"noise": (-1.0,)})
    with pytest.raises(ValueError, match="unknown keys"):
        SweepConfig.from_dict({"epochz": 3})


def test_analyze_an_exported_program(tmp_path):
    """A ``torch.export`` archive cannot switch train/eval mode; the analysis must still run."""
    model = MLP().eval()
    x, y = load_user_data("digits16", max_examples=12)
    path = tmp_path / "model.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), str(path))
    exported = load_user_model(str(path))
    res = analyze_model(exported, x, y, out=str(tmp_path / "report"), n_samples=2, quiet=True)
    reference = analyze_model(model, x, y, out=str(tmp_path / "reference"), n_samples=2, quiet=True)
    for key in ("accuracy", "alignment_bayes", "tangent_alignment", "relative_robustness"):
        assert math.isclose(res.metrics[key], reference.metrics[key], rel_tol=1e-4, abs_tol=1e-6), key
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(static))
    with pytest.raises(AnalysisInputError, match="fixed batch size"):
        analyze_model(load_user_model(str(static)), x, y, out=str(tmp_path / "static"), quiet=True)
