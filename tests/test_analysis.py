import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import assert_model_unchanged, model_snapshot

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
    assert len(sources) == 6  # alignment, robustness, relative robustness, tangent alignment, angles, maps
    for src in sources:  # embedded, or a file that exists beside the page
        assert src.startswith("data:image/png;base64,") or (files["html"].parent / src).is_file()
    csv_lines = files["csv"].read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(quick_sweep.results)
    prov = payload["provenance"]
    for key in ("captum_pags", "git_commit", "torch", "diffusers", "device", "date", "wall_seconds"):
        assert key in prov, key
    assert prov["torch"] == torch.__version__ and prov["wall_seconds"] > 0
    assert prov["models_from_cache"] == []  # a fresh folder: everything trained
    assert "Provenance" in html and torch.__version__ in html
    assert "operationalisation" in html and "operationalisation" in " ".join(payload["notes"])
    summary = {(g["method"], g["strength"]): g for g in payload["summary"]}
    collapsed = summary[("gradient_norm", 1000.0)]
    assert collapsed["collapsed"] and collapsed["mean"]["accuracy"] < 0.15 and collapsed["regime"] == "excessive"
    assert not summary[("noise", 1.0)]["collapsed"]
    assert set(payload["references"]) == {"gradient_norm", "noise"}


@pytest.mark.slow
def test_single_model_placement_against_the_sweep_gives_its_regimes(quick_sweep):
    from captum_pags.metrics import place_model

    path = quick_sweep.files["json"]
    for g in quick_sweep.groups:
        decision = place_model(g["mean"], path, method=g["method"])
        assert decision.regime == g["regime"], (g["method"], g["strength"], decision)
    # without a reference the regime is not guessed
    assert place_model(quick_sweep.groups[0]["mean"], None).regime == "undetermined"


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
    # the same settings once more: every result file is read back, and the summary says so
    assert "5 models, 5 loaded from the cache" in run_sweep(config).summary()
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
    model = MLP().train()
    before = model_snapshot(model)
    res = analyze_model(model, data="digits16", max_examples=24, out=str(tmp_path), n_samples=2, quiet=True)
    assert_model_unchanged(model, before)
    assert 0.0 <= res.metrics["accuracy"] <= 1.0
    assert -1.0 <= res.metrics["alignment_bayes"] <= 1.0
    assert res.metrics["n"] == 24
    assert res.regime == "undetermined"  # no reference: the regime is not guessed
    assert res.metrics["alignment_cosine_bayes"] == res.metrics["alignment_bayes"]
    assert -1.0 <= res.metrics["alignment_ssim_bayes"] <= 1.0
    assert (tmp_path / "report.html").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["config"]["command"] == "analyze"


def test_analyze_model_on_other_data_uses_pca_and_no_scores(tmp_path):
    x, y = torch.rand(20, 3, 4, 4), torch.arange(20) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    res = analyze_model(model, x, y, out=str(tmp_path), n_samples=2, quiet=True)
    assert math.isnan(res.metrics["alignment_bayes"])
    assert 0.0 <= res.metrics["tangent_alignment"] <= 1.0
    assert any("no score model" in n for n in res.notes)


def test_digits16_shaped_tensors_are_not_taken_for_digits16(tmp_path):
    x, y = load_user_data("digits16", max_examples=12)
    res = analyze_model(MLP(), x, y, out=str(tmp_path), n_samples=2, quiet=True)
    assert math.isnan(res.metrics["alignment_bayes"])  # no shipped score model for "your" data
    assert res.config["tangent"][""]["kind"] == "pca"


def _old_analysis(model, x, y, sigma, epsilons, n_samples, seed):
    """The measurements as the analysis made them before it streamed (one pass over all examples)."""
    from captum_pags.datasets import digits16_subspace
    from captum_pags.metrics import manifold_robustness, score_alignment, tangent_alignment
    from captum_pags.models import load_digits16_score_model

    score = load_digits16_score_model()
    space = digits16_subspace()
    model = model.eval()
    with torch.no_grad():
        cond = score.score(x, sigma, y)
        bayes = cond - score.score(x, sigma)
    xg = x.clone().requires_grad_()
    g_ls = torch.autograd.grad(torch.log_softmax(model(xg), 1).gather(1, y[:, None]).sum(), xg)[0]
    xg = x.clone().requires_grad_()
    g_logit = torch.autograd.grad(model(xg).gather(1, y[:, None]).sum(), xg)[0]
    rob = manifold_robustness(model, x, space, epsilons, n_samples=n_samples, seed=seed).mean()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).double().mean())
    return {
        "accuracy": accuracy,
        "alignment_bayes": float(score_alignment(g_ls, bayes).nanmean()),
        "alignment_conditional": float(score_alignment(g_logit, cond).nanmean()),
        "tangent_alignment": float(tangent_alignment(g_ls, x, space).nanmean()),
        "robustness_on": float(rob.on[0, 0]),
        "robustness_off": float(rob.off[0, 0]),
        "relative_robustness": float(rob.relative[0, 0]),
        "gradient_norm": float(g_ls.flatten(1).norm(dim=1).mean()),
    }


@pytest.mark.parametrize("seed", [0, 3])
def test_digits16_defaults_give_the_numbers_of_the_unstreamed_analysis(tmp_path, seed):
    torch.manual_seed(seed)
    model = MLP()
    x, y = load_user_data("digits16", max_examples=40)
    old = _old_analysis(model, x, y, 0.3, (0.5, 1.0), 3, seed)
    kwargs = dict(data="digits16", max_examples=40, epsilons=(0.5, 1.0), n_samples=3, seed=seed, quiet=True)
    one = analyze_model(model, batch_size=64, out=str(tmp_path / "one"), **kwargs).metrics
    for key, value in old.items():  # one batch holds every example: the same draw of directions
        assert math.isclose(one[key], value, rel_tol=1e-4, abs_tol=1e-7), key
    streamed = analyze_model(model, batch_size=16, out=str(tmp_path / "many"), **kwargs).metrics
    for key in ("accuracy", "alignment_bayes", "alignment_conditional", "tangent_alignment", "gradient_norm"):
        assert math.isclose(streamed[key], old[key], rel_tol=1e-4, abs_tol=1e-7), key
    # with batches of 16, batch b draws its directions with seed + b: the mean of per-batch measurements
    from captum_pags.datasets import digits16_subspace
    from captum_pags.metrics import manifold_robustness

    parts = [
        manifold_robustness(model.eval(), x[s : s + 16], digits16_subspace(), (0.5, 1.0), n_samples=3, seed=seed + b)
        for b, s in enumerate(range(0, 40, 16))
    ]
    on = torch.cat([p.on for p in parts]).mean(0)
    off = torch.cat([p.off for p in parts]).mean(0)
    assert math.isclose(streamed["robustness_on"], float(on[0]), rel_tol=1e-4)
    assert math.isclose(streamed["relative_robustness"], float(on[0] / off[0]), rel_tol=1e-4)
    assert streamed["robustness_off_curve"] == pytest.approx(off.tolist(), rel=1e-4)


def test_analysis_leaves_the_global_rng_alone(tmp_path):
    model = MLP()
    state = torch.get_rng_state()
    analyze_model(model, data="digits16", max_examples=8, n_samples=2, out=str(tmp_path), quiet=True)
    assert torch.equal(state, torch.get_rng_state())


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
    with pytest.raises(AnalysisInputError, match=r"logits of shape \(N, classes\)"):
        analyze_model(lambda z: z.flatten(1).sum(1), data="digits16", out=str(tmp_path), quiet=True)
    wrong_input = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 10))
    with pytest.raises(AnalysisInputError, match="does not take inputs of shape"):
        analyze_model(wrong_input, data="digits16", out=str(tmp_path), quiet=True)


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
    x, _y = load_user_data("digits16", max_examples=12)
    path = tmp_path / "model.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), str(path))
    exported = load_user_model(str(path))
    kwargs = dict(data="digits16", max_examples=12, n_samples=2, quiet=True)
    res = analyze_model(exported, out=str(tmp_path / "report"), **kwargs)
    reference = analyze_model(model, out=str(tmp_path / "reference"), **kwargs)
    for key in ("accuracy", "alignment_bayes", "tangent_alignment", "relative_robustness"):
        assert math.isclose(res.metrics[key], reference.metrics[key], rel_tol=1e-4, abs_tol=1e-6), key
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(static))
    with pytest.raises(AnalysisInputError, match="fixed batch size"):
        analyze_model(load_user_model(str(static)), data="digits16", out=str(tmp_path / "static"), quiet=True)


def test_analyze_places_the_model_against_a_sweeps_reference(tmp_path):
    from captum_pags.metrics import place_model, sweep_reference

    ref = sweep_reference([0.95, 0.94, 0.5], [0.1, 0.4, 0.6], [3.0, 1.0, 0.1], source="sweep")
    results = tmp_path / "sweep_results.json"
    results.write_text(json.dumps({"references": {"noise": ref.to_dict()}, "results": []}))
    model = MLP()
    kwargs = dict(data="digits16", max_examples=16, n_samples=2, quiet=True)
    placed = analyze_model(model, reference=str(results), out=str(tmp_path / "a"), **kwargs)
    expected = place_model(placed.metrics, ref).regime
    assert placed.regime == expected != "undetermined"
    by_accuracy = analyze_model(model, reference_accuracy=0.95, out=str(tmp_path / "b"), **kwargs)
    assert by_accuracy.regime == place_model(by_accuracy.metrics, 0.95).regime
    with pytest.raises(AnalysisInputError, match="not both"):
        analyze_model(model, reference=str(results), reference_accuracy=0.9, out=str(tmp_path / "c"), **kwargs)
