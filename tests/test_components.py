"""The analysis built from the user's own pieces, at real size (3x32x32), all built locally."""

import json
import math

import numpy as np
import pytest
import torch
from analysis_assets import build_assets, skip_cifar_checksums

from captum_pags.analysis import (
    AnalysisInputError,
    AnalysisSettings,
    ArrayFileData,
    ClassifierSpec,
    DataSource,
    EmbeddedData,
    ImageFolderData,
    NormalizedClassifier,
    ScoreSpec,
    TangentSpec,
    TorchvisionData,
    analyze_model,
    parse_data,
    parse_normalize,
    parse_tangent,
)
from captum_pags.cli import main


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_assets(tmp_path_factory.mktemp("assets"))


def _analyze_cli(assets, out, *extra, capsys=None):
    argv = [
        "analyze",
        "--model",
        str(assets.resnet),
        "--model-class",
        "torchvision.models:resnet18",
        "--model-kwargs",
        '{"num_classes": 10}',
        "--normalize",
        "0.49,0.48,0.45;0.25,0.24,0.26",
        "--data",
        str(assets.images),
        "--epsilons",
        "1",
        "--n-samples",
        "2",
        "--batch-size",
        "3",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())["results"][0]


# ------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("text", "config"),
    [
        ("exact", {"kind": "exact", "dim": None, "path": None}),
        ("pca:8", {"kind": "pca", "dim": 8, "path": None}),
        ("local-pca:4", {"kind": "local-pca", "dim": 4, "path": None}),
        ("local-pca:4:ref.npz", {"kind": "local-pca", "dim": 4, "path": "ref.npz"}),
        ("decoder:vae/", {"kind": "decoder", "dim": None, "path": "vae/"}),
        ("denoiser:16", {"kind": "denoiser", "dim": 16, "path": None}),
    ],
)
def test_tangent_strings_configs_and_back(text, config):
    spec = parse_tangent(text)
    assert spec.to_config() == config
    assert TangentSpec.from_config(spec.to_config()) == spec
    assert spec.to_string() == text


@pytest.mark.parametrize("text", ["pca", "pca:0", "pca:x", "denoiser:3:f.npz", "exact:3", "decoder:", "spline:3"])
def test_bad_tangent_strings(text):
    with pytest.raises(AnalysisInputError, match="--tangent"):
        parse_tangent(text)


def test_data_sources_configs_and_back(assets, tmp_path, monkeypatch):
    skip_cifar_checksums(monkeypatch)
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 3, 32, 32), np.float32), y=np.array([0, 1, 2]))
    sources = [
        parse_data("digits16"),
        parse_data(str(tmp_path / "d.npz")),
        parse_data(str(assets.images)),
        parse_data(f"cifar10:{assets.cifar}"),
    ]
    assert [type(s) for s in sources] == [EmbeddedData, ArrayFileData, ImageFolderData, TorchvisionData]
    for source in sources:
        again = DataSource.from_config(json.loads(json.dumps(source.to_config())))
        assert again.to_config() == source.to_config() and len(again) == len(source) and again.shape == source.shape


def test_settings_and_specs_configs_and_back():
    settings = AnalysisSettings(sigma=0.2, epsilons=(0.5, 1.0, 2.0), n_samples=3, batch_size=8, max_examples=100)
    assert AnalysisSettings.from_config(json.loads(json.dumps(settings.to_config()))) == settings
    with pytest.raises(AnalysisInputError, match="unknown keys"):
        AnalysisSettings.from_config({"epsilonz": [1.0]})
    spec = ClassifierSpec("m.pt", "torchvision.models:resnet18", '{"num_classes": 10}', [0.5] * 3, [0.2] * 3)
    assert ClassifierSpec.from_config(json.loads(json.dumps(spec.to_config()))).to_config() == spec.to_config()
    score = ScoreSpec("cond/", "uncond/", (0.0, 255.0))
    assert ScoreSpec.from_config(json.loads(json.dumps(score.to_config()))).to_config() == score.to_config()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": -1.0}, "`sigma`"),
        ({"sigma": math.nan}, "`sigma`"),
        ({"epsilons": ()}, "`epsilons`"),
        ({"epsilons": (1.0, math.inf)}, "`epsilons`"),
        ({"batch_size": 0}, "`batch_size`"),
        ({"max_examples": -5}, "`max_examples`"),
        ({"n_samples": 2.5}, "`n_samples`"),
        ({"seed": -1}, "`seed`"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(AnalysisInputError, match=match):
        AnalysisSettings(**kwargs)


# ------------------------------------------------------------------------------------------- data
def test_streamed_sources_yield_bounded_float_batches(assets, monkeypatch):
    skip_cifar_checksums(monkeypatch)
    cifar = parse_data(f"cifar10:{assets.cifar}")
    assert (len(cifar), cifar.shape, cifar.num_classes) == (6, (3, 32, 32), 10)
    sizes = [x.shape[0] for x, _ in cifar.batches(4)]
    assert sizes == [4, 2]
    x, y = next(cifar.batches(6))
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1 and y.dtype == torch.int64
    assert cifar.reference(100).shape == (20, 3, 32, 32)  # the training split on disk
    folder = parse_data(str(assets.images), (-1.0, 1.0))
    x, y = next(folder.batches(8))
    assert x.shape == (4, 3, 32, 32) and float(x.min()) < 0 and y.tolist() == [0, 0, 1, 1]


def test_array_files_keep_integers_exact(tmp_path):
    x = np.arange(2 * 1 * 4 * 4, dtype=np.int64).reshape(2, 1, 4, 4)
    np.savez(tmp_path / "ints.npz", x=x, y=np.array([0, 1]))
    data = ArrayFileData(str(tmp_path / "ints.npz"), data_range=(0, 255))
    batch = next(data.batches(2))[0]
    assert batch.dtype == torch.float32 and torch.equal(batch, torch.as_tensor(x, dtype=torch.float32))
    torch.save({"x": torch.rand(5, 3, 8, 8), "y": torch.arange(5)}, tmp_path / "d.pt")
    assert [b[0].shape[0] for b in ArrayFileData(str(tmp_path / "d.pt")).batches(2)] == [2, 2, 1]


@pytest.mark.parametrize(
    ("x", "y", "data_range", "match"),
    [
        (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, int), (0, 1), "channels-last"),
        (np.full((4, 3, 8, 8), 200, np.uint8), np.zeros(4, int), (0, 1), "0..255"),
        (np.full((4, 3, 8, 8), 1.5, np.float32), np.zeros(4, int), (0, 1), "outside data_range"),
        (np.zeros((4, 8, 8), np.float32), np.zeros(4, int), (0, 1), "channel axis"),
        (np.zeros((4, 3, 8, 8), np.float32), np.zeros(4, np.float32), (0, 1), "integer labels"),
        (np.zeros((4, 3, 8, 8), np.float32), np.zeros(3, int), (0, 1), "shape"),
        (np.full((4, 3, 8, 8), np.nan, np.float32), np.zeros(4, int), (0, 1), "finite"),
    ],
)
def test_array_files_that_do_not_fit_are_refused(tmp_path, x, y, data_range, match):
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(AnalysisInputError, match=match):
        ArrayFileData(str(tmp_path / "bad.npz"), data_range)


def test_a_16x16_file_is_not_digits16(tmp_path):
    from captum_pags.analysis import load_user_data

    x, y = load_user_data("digits16", max_examples=8)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    data = parse_data(str(tmp_path / "d.npz"))
    with pytest.raises(AnalysisInputError, match="exact needs embedded data"):
        TangentSpec("exact").check(data)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))
    res = analyze_model(model, data=data, out=str(tmp_path / "a"), n_samples=2, quiet=True)
    assert math.isnan(res.metrics["alignment_bayes"]) and res.config["tangent"][""]["kind"] == "pca"


# ------------------------------------------------------------------------------------------- classifier
def test_normalisation_is_inside_the_model_so_gradients_are_in_data_units():
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    mean, std = [0.2, 0.5, 0.7], [0.1, 0.4, 2.0]
    wrapped = NormalizedClassifier(lin, mean, std).double()
    x = torch.rand(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(wrapped(x)[:, 1].sum(), x)
    s = torch.tensor(std, dtype=torch.float64).repeat_interleave(4)
    expected = (lin[1].weight[1] / s).reshape(3, 2, 2).expand(2, 3, 2, 2)  # chain rule: W / std per channel
    torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-12)
    m = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(wrapped(x), lin((x - m) / torch.tensor(std, dtype=torch.float64)[:, None, None]))
    with pytest.raises(AnalysisInputError, match="std"):
        NormalizedClassifier(lin, [0.0], [0.0])
    with pytest.raises(AnalysisInputError, match="MEAN"):
        parse_normalize("0.5,0.5;0.2")


# ------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("tangent", ["pca:4", "local-pca:3", "decoder:VAE", "denoiser:2"])
def test_cli_analyses_a_resnet_with_a_diffusion_pair_and_each_tangent(assets, tmp_path, tangent):
    tangent = tangent.replace("VAE", str(assets.vae))
    row = _analyze_cli(
        assets,
        tmp_path / "out",
        "--score-model",
        str(assets.conditional),
        "--unconditional-score-model",
        str(assets.unconditional),
        "--tangent",
        tangent,
        "--extra-tangent",
        "flat=pca:2",
        "--max-examples",
        "3" if tangent.startswith("denoiser") else "4",
    )
    assert math.isfinite(row["tangent_alignment_flat"])
    for key in ("alignment_bayes", "alignment_conditional", "tangent_alignment", "robustness_on", "robustness_off"):
        assert math.isfinite(row[key]), (tangent, key, row[key])
    assert -1 <= row["alignment_bayes"] <= 1 and 0 <= row["tangent_alignment"] <= 1


def test_cli_with_a_null_label_model_and_cifar_on_disk(assets, tmp_path, monkeypatch):
    skip_cifar_checksums(monkeypatch)
    out = tmp_path / "out"
    argv = ["--data", f"cifar10:{assets.cifar}", "--score-model", str(assets.null_label), "--tangent", "pca:5"]
    row = _analyze_cli(assets, out, *argv)
    assert math.isfinite(row["alignment_bayes"]) and math.isfinite(row["tangent_alignment"])
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert any("training split" in n for n in notes)  # PCA of the training split, not of the analysed images


@pytest.mark.parametrize(
    ("which", "nan_columns", "reason"),
    [
        ("conditional", ["alignment_bayes"], "null label"),
        ("unconditional", ["alignment_bayes", "alignment_conditional"], "unconditional"),
    ],
)
def test_one_sided_score_models_give_what_they_can_and_say_so_once(
    assets, tmp_path, capsys, which, nan_columns, reason
):
    path = assets.conditional if which == "conditional" else assets.unconditional
    row = _analyze_cli(
        assets, tmp_path / "out", "--score-model", str(path), "--tangent", "pca:3", "--max-examples", "3"
    )
    for key in nan_columns:
        assert row[key] is None  # NaN in the JSON
    if which == "conditional":
        assert math.isfinite(row["alignment_conditional"])
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and reason in notes[0]


def test_python_api_takes_the_same_components(assets, tmp_path):
    model = ClassifierSpec(
        str(assets.resnet), "torchvision.models:resnet18", {"num_classes": 10}, [0.5] * 3, [0.25] * 3
    ).load()
    before = [m.training for m in model.modules()]
    res = analyze_model(
        model,
        data=str(assets.images),
        score_model=str(assets.null_label),
        tangent="pca:3",
        extra_tangents={"local": "local-pca:2"},
        epsilons=(1.0,),
        n_samples=2,
        out=str(tmp_path),
        quiet=True,
    )
    assert [m.training for m in model.modules()] == before
    assert math.isfinite(res.metrics["alignment_bayes"]) and math.isfinite(res.metrics["tangent_alignment_local"])
    assert res.config["score_model"]["path"] == str(assets.null_label)


class _EDMDenoiser(torch.nn.Module):
    """An EDM-style D(x, sigma, class_labels): the optimal denoiser of N(mu_y, I) data, one-hot labels."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("means", torch.linspace(-0.5, 0.5, 10).reshape(10, 1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        mu = (class_labels @ self.means).reshape(-1, 1, 1, 1)
        s2 = sigma.reshape(-1, 1, 1, 1) ** 2
        return (x + s2 * mu) / (1 + s2)


def test_cli_takes_an_edm_denoiser_with_its_settings(assets, tmp_path):
    path = tmp_path / "edm.pt"
    torch.jit.script(_EDMDenoiser()).save(str(path))
    settings = '{"num_classes": 10, "one_hot_labels": true, "model_range": [-1, 1]}'
    extra = ["--score-model", str(path), "--score-model-kwargs", settings, "--tangent", "pca:3"]
    row = _analyze_cli(assets, tmp_path / "out", *extra)
    assert math.isfinite(row["alignment_conditional"]) and row["alignment_bayes"] is None  # no unconditional
    with pytest.raises(AnalysisInputError, match="JSON"):
        from captum_pags.analysis import parse_score_model

        parse_score_model(str(path), kwargs="{num_classes: 10}")


def test_streaming_keeps_no_batch_alive(gaussian_data):
    """Each batch is dropped once measured: at most the current one is alive while the next is made."""
    import gc
    import weakref

    from captum_pags.analysis import ScoreModels, measure_batches

    alive = []

    def batches():
        for b in range(4):
            gc.collect()
            assert sum(r() is not None for r in alive) <= 1, f"batch {b}: earlier batches are still referenced"
            x, y = gaussian_data.sample(8, seed=b)
            alive.append(weakref.ref(x))
            yield x, y
            del x

    m = measure_batches(
        gaussian_data.bayes_classifier(),
        batches(),
        {"": gaussian_data.tangent_space},
        scores=ScoreModels(gaussian_data.score_model),
        sigma=0.3,
        epsilons=(0.5,),
        n_samples=2,
    )
    assert m["n"] == 32 and math.isfinite(m["alignment_bayes"])


def test_alignment_metrics_fit_the_images(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3))
    x, y = torch.rand(6, 1, 6, 6), torch.arange(6) % 3
    res = analyze_model(model, x, y, out=str(tmp_path / "a"), n_samples=2, quiet=True)
    assert "alignment_ssim_bayes" not in res.metrics and res.config["alignment_metrics"] == ["cosine"]
    with pytest.raises(AnalysisInputError, match="11x11"):
        analyze_model(model, x, y, alignment_metrics=("ssim",), out=str(tmp_path / "b"), quiet=True)


def test_shapes32_is_embedded_data_with_its_exact_manifold_and_shipped_score_model(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 5))
    res = analyze_model(model, data="shapes32", max_examples=6, n_samples=2, out=str(tmp_path), quiet=True)
    assert res.config["tangent"][""]["kind"] == "exact" and res.config["data"]["name"] == "shapes32"
    assert math.isfinite(res.metrics["alignment_bayes"]) and 0 <= res.metrics["tangent_alignment"] <= 1
