"""The main job: train models of growing robustness, measure them, name their regimes, report."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._kernel._autodiff import input_gradients
from .._kernel._io import atomic_write
from ..datasets import digits16_subspace, load_digits16
from ..metrics import robustness_regime
from ..models import MLP, SmallCNN, digits16_decoder_tangent, load_digits16_score_model
from ..models._weights import load_weights, save_weights
from ..training import AdversarialLoss, GradientNormLoss, RandomizedSmoothingLoss, StandardLoss, fit
from .config import SweepConfig
from .measure import EvaluationData, measure_model, prepare_evaluation
from .report import write_report

__all__ = ["ModelResult", "SweepResult", "run_sweep", "train_model"]

REGIME_RULE = (
    "Regimes (Srinivas et al., NeurIPS 2023), per method in order of strength: 'excessive' where test "
    "accuracy fell more than 5 points below the unregularised model or, after the alignment peak, alignment "
    "fell more than 10% below it; 'weak' before the peak and away from it, or where the model reacts to "
    "off-manifold noise about as much as to on-manifold noise (on/off change ratio < 2); otherwise "
    "'bayes_aligned'."
)


@dataclass
class ModelResult:
    """Measurements of one trained model (one row of the report).

    Examples
    --------
    >>> r = ModelResult("noise", 0.1, 0, {"accuracy": 0.9}, regime="weak")
    >>> r.row()["accuracy"], r.row()["regime"]
    (0.9, 'weak')
    """

    method: str
    strength: float
    seed: int
    metrics: dict[str, Any]
    regime: str = ""
    train_seconds: float = math.nan

    def row(self) -> dict[str, Any]:
        """Flat dict for tables and JSON."""
        return {
            "method": self.method,
            "strength": self.strength,
            "seed": self.seed,
            **self.metrics,
            "regime": self.regime,
            "train_seconds": self.train_seconds,
        }


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: the config, one :class:`ModelResult` per model, the report files.

    Examples
    --------
    >>> res = SweepResult(SweepConfig.quick(), [ModelResult("noise", 0.0, 0, {"accuracy": 0.9})])
    >>> "noise" in res.summary()
    True
    """

    config: SweepConfig
    results: list[ModelResult]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = math.nan

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per model."""
        return [r.row() for r in self.results]

    def summary(self) -> str:
        """A plain-text table of the main figures."""
        keys = ["accuracy", "alignment_bayes", "alignment_conditional", "tangent_alignment", "relative_robustness"]
        lines = [f"{'method':<14}{'strength':>9}{'seed':>5} " + " ".join(f"{k[:12]:>12}" for k in keys) + "  regime"]
        for r in self.results:
            vals = " ".join(f"{float(r.metrics.get(k, math.nan)):>12.4f}" for k in keys)
            lines.append(f"{r.method:<14}{r.strength:>9g}{r.seed:>5} {vals}  {r.regime}")
        if math.isfinite(self.seconds):
            lines.append(f"total time {self.seconds:.1f} s")
        return "\n".join(lines)


def _build_model(architecture: str) -> nn.Module:
    if architecture == "cnn":
        return SmallCNN(in_channels=1, num_classes=10)
    return MLP(input_shape=(1, 16, 16), hidden=(256, 128, 128), num_classes=10)


def _make_loss(method: str, strength: float, config: SweepConfig) -> nn.Module:
    if strength == 0:
        return StandardLoss()
    if method == "gradient_norm":
        return GradientNormLoss(strength)
    if method == "noise":
        return RandomizedSmoothingLoss(strength)
    return AdversarialLoss(strength, steps=config.pgd_steps, norm="l2")


def _model_name(config: SweepConfig, method: str, strength: float, seed: int) -> str:
    # strength 0 is plain cross-entropy whatever the method: one model serves every method
    kind = "plain" if strength == 0 else f"{method}_{strength:g}"
    return f"{config.architecture}_{kind}_s{seed}_e{config.epochs}_b{config.batch_size}_lr{config.lr:g}"


def train_model(
    method: str, strength: float, seed: int, config: SweepConfig, train_data: Any = None
) -> tuple[nn.Module, float]:
    """Train one classifier of the sweep, or load it from the cache in ``config.out/models``.

    Training resumes from its last checkpoint if it was interrupted. Returns the model (eval mode,
    on ``config.device``) and the training time in seconds (0 when loaded from the cache).

    Examples
    --------
    >>> import tempfile
    >>> cfg = SweepConfig.quick(out=tempfile.mkdtemp(), epochs=1, quiet=True)
    >>> model, seconds = train_model("noise", 0.3, 0, cfg)
    >>> model(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    """
    cache = Path(config.out) / "models"
    name = _model_name(config, method, strength, seed)
    folder = cache / name
    model = _build_model(config.architecture)
    if (folder / "config.json").exists() and not config.retrain:
        state, meta = load_weights(folder)
        model.load_state_dict(state)
        return model.to(config.device).eval(), float(meta.get("train_seconds", 0.0))
    if train_data is None:
        train_data = load_digits16("train").dataset()
    loader = torch.utils.data.DataLoader(train_data, batch_size=config.batch_size, shuffle=True)
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = _build_model(config.architecture)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    fit(
        model,
        _make_loss(method, strength, config),
        loader,
        epochs=config.epochs,
        optimizer=optimizer,
        checkpoint_dir=cache / "checkpoints" / name,
        resume=not config.retrain,
        seed=seed,
        quiet=True,
        device=config.device,
    )
    seconds = time.perf_counter() - start
    # weights first, config last: the config's presence marks a finished model
    save_weights(
        folder,
        model.state_dict(),
        {"method": method, "strength": strength, "seed": seed, "train_seconds": seconds, "config": config.to_dict()},
    )
    shutil.rmtree(cache / "checkpoints" / name, ignore_errors=True)
    return model.eval(), seconds


def _example_maps(
    models: dict[tuple[str, float, int], nn.Module], results: list[ModelResult], data: EvaluationData, n: int
) -> tuple[Tensor, dict[str, Tensor]]:
    x, y = data.images[:n], data.labels[:n]
    maps: dict[str, Tensor] = {}
    if data.bayes_scores is not None:
        maps["Bayes score\ndifference"] = data.bayes_scores[:n]
    by_method: dict[str, list[ModelResult]] = {}
    for r in results:
        if r.seed == results[0].seed:
            by_method.setdefault(r.method, []).append(r)
    for method, rs in by_method.items():
        peak = max(rs, key=lambda r: r.metrics.get("alignment_bayes", -math.inf))
        for label, r in (("none", rs[0]), ("peak", peak), ("max", rs[-1])):
            model = models[(r.method, r.strength, r.seed)]

            def log_softmax(inputs: Tensor, m: Callable[[Tensor], Tensor] = model) -> Tensor:
                return torch.log_softmax(m(inputs), dim=1)

            maps[f"{method}\n{r.strength:g} ({label})"] = input_gradients(log_softmax, (x,), y)[0]
    return x, maps


def run_sweep(config: SweepConfig | None = None) -> SweepResult:
    """Run the whole PAG analysis on ``digits16`` and write the report.

    For every method, strength and seed of ``config``: train (or load from the cache) a classifier,
    measure accuracy, perceptual alignment with the shipped class-conditional diffusion model's
    Bayes score difference, tangent alignment and on-/off-manifold robustness on the exact
    64-dimensional ``digits16`` subspace, then name each model's regime with
    :func:`~captum_pags.metrics.robustness_regime` and write ``results.json``, ``results.csv``, PNG
    figures and ``report.html`` to ``config.out``.

    Parameters
    ----------
    config : SweepConfig, optional
        Settings; the defaults run the full grid.

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> import tempfile
    >>> cfg = SweepConfig.quick(out=tempfile.mkdtemp(), epochs=1, quiet=True, methods=("noise",),
    ...                         strengths={"noise": (0.0, 0.5)}, n_eval=20)
    >>> [r.method for r in run_sweep(cfg).results]
    ['noise', 'noise']
    """
    config = config or SweepConfig()
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    test = load_digits16("test")
    x, y = test.images[: config.n_eval].to(device), test.labels[: config.n_eval].to(device)
    score_model = load_digits16_score_model(device=device)
    data = prepare_evaluation(
        x,
        y,
        digits16_subspace(),
        score_model,
        config.sigma,
        config.epsilons,
        config.n_samples,
        config.seed,
        extra_tangent_spaces={"decoder": digits16_decoder_tangent(device=device)},
    )
    train_data = load_digits16("train").dataset()
    jobs = [(m, s, seed) for m in config.methods for s in sorted(config.strengths[m]) for seed in config.seeds]
    models: dict[tuple[str, float, int], nn.Module] = {}
    results: list[ModelResult] = []
    bar = tqdm(jobs, desc="train + measure", unit="model", disable=config.quiet)
    for method, strength, seed in bar:
        bar.set_postfix_str(f"{method} {strength:g} seed {seed}")
        model, seconds = train_model(method, strength, seed, config, train_data)
        models[(method, strength, seed)] = model
        results.append(ModelResult(method, strength, seed, measure_model(model, data), train_seconds=seconds))
    for method in config.methods:
        for seed in config.seeds:
            group = [r for r in results if r.method == method and r.seed == seed]
            regimes = robustness_regime(
                relative_robustness=[r.metrics["relative_robustness"] for r in group],
                accuracy=[r.metrics["accuracy"] for r in group],
                alignment=[r.metrics["alignment_bayes"] for r in group],
            )
            for r, regime in zip(group, regimes if isinstance(regimes, list) else [regimes]):
                r.regime = regime
    images, maps = _example_maps(models, results, data, n=min(8, x.shape[0]))
    result = SweepResult(config, results, seconds=time.perf_counter() - start)
    result.files = write_report(
        config.out,
        result.rows,
        config=config.to_dict(),
        images=images.cpu(),
        maps={k: v.cpu() for k, v in maps.items()},
        title="captum_pags sweep on digits16",
        notes=[
            f"{len(results)} models, {config.architecture}, sigma={config.sigma}; score model: the shipped "
            "class-conditional diffusion model; tangent space: the exact 64-dimensional digits16 subspace "
            "(columns marked 'decoder': the 16-dimensional tangent space of the shipped autoencoder's decoder).",
            REGIME_RULE,
        ],
    )
    atomic_write(Path(config.out) / "timing.json", json.dumps({"seconds": result.seconds}).encode())
    return result
