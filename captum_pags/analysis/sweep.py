"""The main job: train models of growing robustness, measure them, name their regimes, report."""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._kernel._autodiff import input_gradients
from .._kernel._io import atomic_write
from ..metrics import RegimeThresholds, regime_decisions, regime_rule_text, score_alignment, sweep_reference
from ..models._weights import load_weights
from .config import SweepConfig
from .executors import Executor, run_tasks
from .grid import SweepTask, build_model, data_info, model_key, parse_shard, shard_tasks, sweep_tasks
from .report import write_report
from .results import COLLAPSE_MARGIN, ModelResult, SweepResult
from .tasks import evaluation_data, read_result

__all__ = ["assemble_report", "run_sweep"]

CONFIG_FILE = "sweep_config.json"


def _write_config(config: SweepConfig) -> None:
    atomic_write(Path(config.out) / CONFIG_FILE, json.dumps(config.to_dict(), indent=2).encode())


def _read_config(out: str | Path) -> SweepConfig:
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"Expected `out` to be a sweep's output folder (with {CONFIG_FILE}) but {str(out)!r} has none")
    return SweepConfig.from_dict(json.loads(path.read_text()))


def _check_run(config: SweepConfig) -> None:
    """Refuse an unavailable device or an output folder that cannot be one, before any work."""
    from .components.settings import AnalysisSettings
    from .errors import AnalysisInputError

    AnalysisSettings(device=config.device).check_device()
    _check_architecture(config)
    _check_score_model(config)
    out = Path(config.out).expanduser()
    if out.exists() and not out.is_dir():
        raise AnalysisInputError(f"Expected `out` to be a folder but {config.out!r} is a file: choose another --out")
    parent = out if out.exists() else next((q for q in out.parents if q.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise AnalysisInputError(f"cannot write the sweep to {config.out!r}: {str(parent)!r} is not writable")


def _check_score_model(config: SweepConfig) -> None:
    """Refuse a score model of the user's that does not fit the data, from its configs (as ``analyze`` does)."""
    if config.score_model in ("auto", "shipped", "none"):
        return
    from .components.embedded import EMBEDDED_DATASETS, EmbeddedData
    from .components.fit import check_score_fit
    from .components.parse import parse_data, parse_score_model

    data = EmbeddedData(config.data, "test") if config.data in EMBEDDED_DATASETS else parse_data(config.data)
    check_score_fit(data, parse_score_model(config.score_model))


def _check_architecture(config: SweepConfig) -> None:
    """Build the architecture once and refuse one that does not give ``(N, classes)`` logits for the data."""
    from .errors import AnalysisInputError

    shape, classes = data_info(config)
    with torch.random.fork_rng(devices=[]):  # a throwaway model: the caller's RNG stays as it was
        model = build_model(config).eval()
        try:
            with torch.no_grad():
                out = model(torch.zeros(2, *shape))
        except (RuntimeError, ValueError, TypeError) as err:
            raise AnalysisInputError(
                f"--architecture {config.architecture} does not take {config.data} images of shape {shape}: "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise AnalysisInputError(
            f"Expected --architecture {config.architecture} to give (N, {classes}) logits for the {classes} classes of "
            f"{config.data} but got {got}: set --architecture-kwargs (e.g. '{{\"num_classes\": {classes}}}')"
        )


def run_sweep(
    config: SweepConfig | None = None,
    *,
    executor: Executor = "serial",
    address: str | None = None,
    num_workers: int | None = None,
    shard: str | tuple[int, int] | None = None,
    max_retries: int = 3,
) -> SweepResult:
    """Run the whole PAG analysis on an embedded dataset (``digits16`` by default) and write the report.

    For every method, strength and seed of ``config``: train (or load from the cache) a classifier,
    measure accuracy, perceptual alignment with the shipped class-conditional diffusion model's
    Bayes score difference, tangent alignment and on-/off-manifold robustness on the exact
    64-dimensional ``digits16`` subspace (and the shipped autoencoder's decoder tangent space),
    and write its result file ``out/results/<model>.json``. Then name each grid point's regime
    on the means over seeds (:func:`~captum_pags.metrics.robustness_regime`) and write
    ``results.json``, ``results.csv``, PNG figures and ``report.html`` to ``config.out``
    (:func:`assemble_report`).

    Parameters
    ----------
    config : SweepConfig, optional
        Settings; the defaults run the full grid with three seeds.
    executor : {"serial", "ray"}
        How the tasks run (:func:`~captum_pags.analysis.executors.run_tasks`).
    address, num_workers, max_retries
        Ray settings (see :func:`~captum_pags.analysis.executors.run_tasks`).
    shard : str or (int, int), optional
        ``"I/N"``: run only shard ``I`` of ``N`` and write its result files, no report; run
        :func:`assemble_report` (``captum-pags report OUT``) when the shards are done.

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
    _check_run(config)
    tasks = sweep_tasks(config)
    if shard is not None:
        tasks = shard_tasks(
            tasks, parse_shard(shard) if isinstance(shard, str) else parse_shard(f"{shard[0]}/{shard[1]}")
        )
    _write_config(config)
    payloads = run_tasks(
        tasks, config, executor=executor, address=address, num_workers=num_workers, max_retries=max_retries
    )
    if shard is not None:
        results = [r for p in payloads for r in _model_results(p)]
        return SweepResult(config, results, seconds=time.perf_counter() - start)
    return assemble_report(config, wall_seconds=time.perf_counter() - start, payloads=payloads)


def _model_results(payload: dict[str, Any]) -> list[ModelResult]:
    metrics = {k: (math.nan if v is None else v) for k, v in payload["metrics"].items()}
    return [
        ModelResult(
            method,
            float(strength),
            int(payload["task"]["seed"]),
            dict(metrics),
            train_seconds=float(payload["train_seconds"]),
            from_cache=bool(payload["from_cache"]),
            model=str(payload["model"]),
        )
        for method, strength in payload["serves"]
    ]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def _group(results: list[ModelResult], config: SweepConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Means and sds over seeds per ``(method, strength)``, regimes decided on the means, references."""
    groups: list[dict[str, Any]] = []
    references: dict[str, Any] = {}
    chance = 1.0 / data_info(config)[1]
    for method in config.methods:
        strengths = sorted({r.strength for r in results if r.method == method})
        method_groups = []
        for s in strengths:
            members = [r for r in results if r.method == method and r.strength == s]
            keys = [k for k, v in members[0].metrics.items() if isinstance(v, (int, float))]
            curves = [k for k, v in members[0].metrics.items() if isinstance(v, list)]
            mean, sd = {}, {}
            for k in keys:
                mean[k], sd[k] = _mean_sd([float(m.metrics[k]) for m in members])
            for k in curves:
                columns = list(zip(*[m.metrics[k] for m in members]))
                pairs = [_mean_sd([float(v) for v in col]) for col in columns]
                mean[k], sd[k] = [p[0] for p in pairs], [p[1] for p in pairs]
            collapsed = bool(mean["accuracy"] < chance + COLLAPSE_MARGIN)
            method_groups.append(
                {
                    "method": method,
                    "strength": s,
                    "seeds": sorted(m.seed for m in members),
                    "mean": mean,
                    "sd": sd,
                    "collapsed": collapsed,
                }
            )
        if not method_groups:
            continue
        series = {k: [g["mean"][k] for g in method_groups] for k in ("accuracy", "alignment_bayes", "gradient_norm")}
        decisions = regime_decisions(
            [g["mean"]["relative_robustness"] for g in method_groups],
            series["accuracy"],
            series["alignment_bayes"],
            gradient_norm=series["gradient_norm"],
        )
        for g, d in zip(method_groups, decisions):
            g["regime"], g["reason"] = d.regime, d.reason
        ref = sweep_reference(series["accuracy"], series["alignment_bayes"], series["gradient_norm"])
        references[method] = {**ref.to_dict(), "source": f"sweep of {method} on {config.architecture}"}
        groups.extend(method_groups)
    regime = {(g["method"], g["strength"]): g["regime"] for g in groups}
    for r in results:
        r.regime = regime.get((r.method, r.strength), "undetermined")
    return groups, references


def _maps(config: SweepConfig, groups: list[dict[str, Any]], n: int = 6) -> dict[str, Any] | None:
    """Gradient maps of the first seed's models: unregularised, at the alignment peak, strongest."""
    data = evaluation_data(config)
    x, y = data.images[:n], data.labels[:n]
    panels: list[dict[str, Any]] = []
    if data.bayes_scores is not None:
        panels.append({"label": "Bayes score difference", "maps": data.bayes_scores[:n].cpu(), "alignment": None})
    seed = config.seeds[0]
    for method in config.methods:
        mg = [g for g in groups if g["method"] == method]
        if not mg:
            continue
        aligned = [g for g in mg if not g["collapsed"] and math.isfinite(g["mean"]["alignment_bayes"])]
        peak = max(aligned, key=lambda g: g["mean"]["alignment_bayes"]) if aligned else mg[0]
        chosen = [mg[0], peak, mg[-1]]
        for g in {id(g): g for g in chosen}.values():
            folder = (
                Path(config.out) / "models" / model_key(SweepTask.for_grid_point(method, g["strength"], seed), config)
            )
            if not (folder / "config.json").is_file():
                continue
            model = build_model(config)
            model.load_state_dict(load_weights(folder)[0])
            model = model.to(config.device).eval()

            def log_softmax(inputs: Tensor, m: Callable[[Tensor], Tensor] = model) -> Tensor:
                return torch.log_softmax(m(inputs), dim=1)

            grads = input_gradients(log_softmax, (x,), y)[0].detach()
            align = (
                score_alignment(grads, data.bayes_scores[:n]).cpu().tolist() if data.bayes_scores is not None else None
            )
            flag = ", collapsed" if g["collapsed"] else ""
            panels.append(
                {"label": f"{method} {g['strength']:g}\n{g['regime']}{flag}", "maps": grads.cpu(), "alignment": align}
            )
    if len(panels) <= 1:
        return None
    return {"images": x.cpu(), "labels": y.cpu().tolist(), "panels": panels, "seed": seed}


def _chance_levels(config: SweepConfig) -> dict[str, float]:
    """Chance accuracy, the random-direction tangent alignment sqrt(k/D) of each tangent space, the threshold."""
    data = evaluation_data(config)
    d = data.images[0].numel()
    levels = {
        "accuracy": 1.0 / data_info(config)[1],
        "min_relative_robustness": RegimeThresholds().min_relative_robustness,
    }
    for name, space in {"": data.tangent_space, **data.extra_tangent_spaces}.items():
        levels["tangent_alignment" + (f"_{name}" if name else "")] = math.sqrt(space.dim / d)
    return levels


def _angles(config: SweepConfig) -> dict[str, dict[str, float]]:
    """Principal angles of the shipped estimators to the exact tangent space over the measured images."""
    from .angles import tangent_angles

    data = evaluation_data(config)
    return tangent_angles(data.extra_tangent_spaces, getattr(data, "exact_tangent", None), data.images)


def _components_note(config: SweepConfig) -> str:
    """What the score model and tangent spaces of the report are, in one sentence."""
    from .grid import estimator_names

    data = evaluation_data(config)
    score = (
        f"the shipped class-conditional diffusion model of {config.data}"
        if config.score_model in ("auto", "shipped")
        else f"{config.score_model}"
    )
    tangent = (
        f"the exact {config.data} manifold ({data.tangent_space.dim} dimensions)"
        if config.tangent == "exact"
        else f"--tangent {config.tangent} ({data.tangent_space.dim} dimensions)"
    )
    extras = ", ".join(f"'{n}' ({data.extra_tangent_spaces[n].dim} dimensions)" for n in estimator_names(config))
    return f"score model: {score}; tangent space: {tangent}" + (
        f"; columns marked with an estimator name use that estimated tangent space: {extras}." if extras else "."
    )


def assemble_report(
    out: str | Path | SweepConfig,
    *,
    wall_seconds: float | None = None,
    maps: bool = True,
    payloads: list[dict[str, Any]] | None = None,
) -> SweepResult:
    """Assemble the report from the per-model result files present in a sweep's output folder.

    This is ``captum-pags report OUT``: after the shards of a batch scheduler (or an interrupted
    run) it reads ``OUT/sweep_config.json`` and ``OUT/results/*.json``, decides the regimes on
    the means over seeds, writes the report, and lists the grid points whose results are missing.

    Parameters
    ----------
    out : path or SweepConfig
        The sweep's output folder (or its config).
    wall_seconds : float, optional
        Wall time of the run, for the provenance.
    maps : bool
        Draw gradient maps (needs the models in ``OUT/models``).
    payloads : list of dict, optional
        What the tasks of this run returned; they say which models this run took from the cache
        (the result files say how the run that wrote them got each model).

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> import tempfile
    >>> cfg = SweepConfig.quick(out=tempfile.mkdtemp(), epochs=1, quiet=True, methods=("noise",),
    ...                         strengths={"noise": (0.0, 0.5)}, n_eval=20)
    >>> _ = run_sweep(cfg, shard="1/2")
    >>> assemble_report(cfg.out).missing
    ['noise 0.5 seed 0']
    """
    from .provenance import provenance

    config = out if isinstance(out, SweepConfig) else _read_config(out)
    this_run = {p["model"]: bool(p["from_cache"]) for p in payloads or []}
    results: list[ModelResult] = []
    missing: list[str] = []
    for task in sweep_tasks(config):
        payload = read_result(task, config)
        if payload is None:
            missing.extend(f"{m} {s:g} seed {task.seed}" for m, s in task.serves(config))
        else:
            if payload["model"] in this_run:
                payload["from_cache"] = this_run[payload["model"]]
            results.extend(_model_results(payload))
    order = {m: i for i, m in enumerate(config.methods)}
    results.sort(key=lambda r: (order[r.method], r.strength, r.seed))
    if not results:
        raise ValueError(f"Expected result files in {str(Path(config.out) / 'results')!r} but found none")
    groups, references = _group(results, config)
    cached = sorted({r.model for r in results if r.from_cache})
    prov = provenance(
        config.device,
        wall_seconds,
        models=len({r.model for r in results}),
        models_from_cache=cached,
    )
    figure_maps = _maps(config, groups) if maps else None
    chance = _chance_levels(config)
    angles = _angles(config)
    res = SweepResult(config, results, groups=groups, missing=missing, seconds=wall_seconds or math.nan)
    res.files = write_report(
        config.out,
        res.rows,
        config=config.to_dict(),
        groups=groups,
        references=references,
        provenance=prov,
        missing=missing,
        maps=figure_maps,
        chance=chance,
        tangent_angles=angles,
        title=f"captum_pags sweep on {config.data}",
        notes=[
            f"{len({r.model for r in results})} models ({len(cached)} loaded from the cache), "
            f"{config.architecture}, {len(config.seeds)} training seeds (mean +- sd over seeds), "
            f"sigma={config.sigma}; {_components_note(config)}",
            regime_rule_text(),
            f"A model whose mean accuracy is within {COLLAPSE_MARGIN:g} of chance ({1 / data_info(config)[1]:g}) is "
            "flagged as collapsed: its gradients carry no class information, so it is not drawn as an "
            "alignment point.",
        ],
    )
    return res
