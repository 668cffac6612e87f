"""One task of the sweep: train (or load) one model, measure it, write its result file atomically."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._kernel._io import atomic_write
from ..datasets import digits16_subspace, load_digits16
from ..models import digits16_decoder_tangent, load_digits16_score_model
from ..models._weights import load_weights, save_weights
from ..training import fit
from .config import SweepConfig
from .grid import SweepTask, build_model, evaluation_settings, make_loss, model_key, settings_hash, training_settings
from .measure import EvaluationData, measure_model, prepare_evaluation

__all__ = ["RESULTS_DIR", "read_result", "result_path", "run_task", "train_model"]

#: Sub-folder of the output folder holding one result file per model.
RESULTS_DIR = "results"
_FORMAT = "captum_pags.sweep-result/1"
# evaluation data prepared once per process (a Ray worker measures many models)
_EVALUATION_CACHE: dict[str, EvaluationData] = {}


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Restore the global torch, NumPy and Python random states afterwards, also after an error."""
    py, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002 - the legacy global state itself
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)  # noqa: NPY002


def train_model(task: SweepTask, config: SweepConfig, train_data: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train one classifier of the sweep, or load it from the cache in ``config.out/models``.

    Training resumes from its last :func:`~captum_pags.training.fit` checkpoint if it was
    interrupted (Ctrl-C, a killed worker). The model's folder is named by
    :func:`~captum_pags.analysis.grid.model_key`, a hash of every training setting, so a changed
    setting trains a new model instead of reusing a stale one.

    Returns
    -------
    model : nn.Module
        Eval mode, on ``config.device``.
    info : dict
        ``train_seconds`` (of the original training), ``from_cache`` and ``resumed`` flags, ``model``
        (the folder name).

    Examples
    --------
    >>> import tempfile
    >>> cfg = SweepConfig.quick(out=tempfile.mkdtemp(), epochs=1, quiet=True)
    >>> model, info = train_model(SweepTask("noise", 0.3, 0), cfg)
    >>> model(torch.zeros(2, 1, 16, 16)).shape, info["from_cache"]
    (torch.Size([2, 10]), False)
    """
    cache = Path(config.out) / "models"
    name = model_key(task, config)
    folder = cache / name
    checkpoints = cache / "checkpoints" / name
    if (folder / "config.json").exists() and not config.retrain:
        with _preserved_rng():
            model = build_model(config)
        state, meta = load_weights(folder)
        model.load_state_dict(state)
        info = {"model": name, "train_seconds": float(meta.get("train_seconds", 0.0)), "from_cache": True}
        return model.to(config.device).eval(), {**info, "resumed": False}
    if config.retrain:
        shutil.rmtree(checkpoints, ignore_errors=True)
    resumed = (checkpoints / "checkpoint.json").is_file()
    start = time.perf_counter()
    with _preserved_rng():  # seeding the model and the training must not reseed the caller's RNGs
        if train_data is None:
            train_data = training_data(config)
        loader = torch.utils.data.DataLoader(train_data, batch_size=config.batch_size, shuffle=True)
        torch.manual_seed(task.seed)
        model = build_model(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
            if config.lr_schedule == "cosine"
            else None
        )
        fit(
            model,
            make_loss(task, config),
            loader,
            epochs=config.epochs,
            optimizer=optimizer,
            scheduler=scheduler,
            checkpoint_dir=checkpoints,
            resume=True,
            seed=task.seed,
            quiet=True,
            device=config.device,
        )
    seconds = time.perf_counter() - start
    meta = {
        "task": {"method": task.method, "strength": task.strength, "seed": task.seed},
        "train_seconds": seconds,
        "training": training_settings(task, config),
    }
    # weights first, config last: the config's presence marks a finished model
    save_weights(folder, model.state_dict(), meta)
    shutil.rmtree(checkpoints, ignore_errors=True)
    info = {"model": name, "train_seconds": seconds, "from_cache": False, "resumed": resumed}
    return model.to(config.device).eval(), info


def train_source(config: SweepConfig) -> Any:
    """The training images: ``train_data``, or the training split of a torchvision or embedded ``data``."""
    from .components.embedded import EmbeddedData
    from .components.images import TorchvisionData
    from .components.parse import parse_data

    if config.train_data is not None:
        source = parse_data(config.train_data)
    else:
        source = parse_data(config.data)
    if isinstance(source, TorchvisionData) and source.split != "train":
        source = TorchvisionData(source.name_, source.root, "train", source.data_range)
    if isinstance(source, EmbeddedData) and source.split != "train":
        source = EmbeddedData(source.name, "train")
    return source


def _gathered(source: Any, max_examples: int | None, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*source.batches(batch_size, max_examples))
    return torch.cat(xs), torch.cat(ys)


def training_data(config: SweepConfig) -> torch.utils.data.Dataset:
    """The training split of ``config.data`` (or ``config.train_data``)."""
    if config.data == "digits16":
        return load_digits16("train").dataset()
    from .components.embedded import EMBEDDED_DATASETS, EmbeddedData

    if config.data in EMBEDDED_DATASETS:
        images, labels = EmbeddedData(config.data, "train")._loaded()
    else:
        images, labels = _gathered(train_source(config), None)
    return torch.utils.data.TensorDataset(images, labels)


def _components(config: SweepConfig, device: torch.device) -> tuple[Any, Any, Any, Any, dict[str, Any], Any]:
    """Test images and labels, score model, tangent space, shipped estimators and the exact space of the data."""
    from .components.embedded import EMBEDDED_DATASETS, EmbeddedData
    from .components.parse import parse_data, parse_score_model, parse_tangent
    from .components.score import ScoreModels

    auto = config.score_model in ("auto", "shipped")  # the model shipped for the data
    if config.data == "digits16":
        test = load_digits16("test")
        x, y = test.images, test.labels
        exact: Any = digits16_subspace()
        extras: dict[str, Any] = {"decoder": digits16_decoder_tangent(device=device)}
        shipped: Any = load_digits16_score_model(device=device) if auto else None
    elif config.data in EMBEDDED_DATASETS:
        data = EmbeddedData(config.data, "test")
        x, y = data._loaded()
        exact = data.exact_tangent()
        extras, shipped = {}, None
        if config.data == "shapes32":
            from ..models import load_shapes32_score_model, shapes32_tangent_estimators

            extras = shapes32_tangent_estimators(device, sigma=0.1)
            shipped = load_shapes32_score_model(device) if auto else None
    else:  # the user's data: no known manifold, no shipped pieces
        data = parse_data(config.data)
        x, y = _gathered(data, config.n_eval)
        exact, extras, shipped = None, {}, None
    x, y = x[: config.n_eval].to(device), y[: config.n_eval].to(device)
    score = shipped
    models = ScoreModels(shipped, None) if shipped is not None else None
    if not auto and config.score_model != "none":
        models = parse_score_model(config.score_model).load(device)
        score = models.model if models.has_conditional and models.has_unconditional else None
    if config.tangent == "exact":
        space = exact
    else:
        if config.data in EMBEDDED_DATASETS or config.data == "digits16":
            data = EmbeddedData(config.data, "test")
        space, _ = parse_tangent(config.tangent).build(data, scores=models, sigma=config.sigma, device=device)
    return x, y, score, space, extras, exact


def evaluation_data(config: SweepConfig) -> EvaluationData:
    """The shared evaluation data of ``config`` (test images, scores, tangent spaces), once per process."""
    key = settings_hash(evaluation_settings(config))
    if key not in _EVALUATION_CACHE:
        device = torch.device(config.device)
        x, y, score, space, extras, exact = _components(config, device)
        _EVALUATION_CACHE.clear()
        ev = prepare_evaluation(
            x,
            y,
            space,
            score,
            config.sigma,
            config.epsilons,
            config.n_samples,
            config.seed,
            extra_tangent_spaces=extras,
        )
        ev.exact_tangent = exact  # type: ignore[attr-defined]
        _EVALUATION_CACHE[key] = ev
    return _EVALUATION_CACHE[key]


def result_path(task: SweepTask, config: SweepConfig) -> Path:
    """Where the result file of ``task`` lives: ``out/results/<model key>.json``."""
    return Path(config.out) / RESULTS_DIR / f"{model_key(task, config)}.json"


def read_result(task: SweepTask, config: SweepConfig) -> dict[str, Any] | None:
    """The result of ``task`` if its file exists and was measured with ``config``'s settings, else ``None``."""
    path = result_path(task, config)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if payload.get("format") != _FORMAT or payload.get("evaluation_key") != settings_hash(evaluation_settings(config)):
        return None
    return payload


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def run_task(task: SweepTask, config: SweepConfig | dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """Train (or load) and measure one model and write ``out/results/<model>.json`` atomically.

    A result already on disk for the same settings is returned as it is (``config.retrain`` measures
    again). This is the unit an executor runs: serially, as a Ray task or in one shard of a batch
    scheduler's array job.

    Parameters
    ----------
    task : SweepTask
        The model to train and measure.
    config : SweepConfig or dict
        The sweep's settings (a dict from :meth:`SweepConfig.to_dict` travels to workers).
    threads : int, optional
        Torch intra-op threads for this task (workers sharing a machine set it so that they do not
        oversubscribe its cores).

    Returns
    -------
    dict
        The result payload: ``task``, ``model``, ``metrics``, ``train_seconds``, ``from_cache``,
        ``resumed``, ``measure_seconds``, ``pid``.

    Examples
    --------
    >>> import tempfile
    >>> cfg = SweepConfig.quick(out=tempfile.mkdtemp(), epochs=1, n_eval=8, n_samples=1, quiet=True)
    >>> res = run_task(SweepTask("noise", 0.5, 0), cfg)
    >>> sorted(res["metrics"])[:2], result_path(SweepTask("noise", 0.5, 0), cfg).is_file()
    (['accuracy', 'alignment_bayes'], True)
    """
    if isinstance(config, dict):
        config = SweepConfig.from_dict(config)
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    if not config.retrain:
        done = read_result(task, config)
        if done is not None:  # measured before: nothing trained or measured now
            done["metrics"] = {k: _from_json(v) for k, v in done["metrics"].items()}
            done["from_cache"] = True
            return done
    model, info = train_model(task, config)
    start = time.perf_counter()
    metrics = measure_model(model, evaluation_data(config))
    payload = {
        "format": _FORMAT,
        "task": {"method": task.method, "strength": task.strength, "seed": task.seed},
        "serves": [list(p) for p in task.serves(config)],
        **info,
        "measure_seconds": time.perf_counter() - start,
        "evaluation_key": settings_hash(evaluation_settings(config)),
        "pid": os.getpid(),
        "metrics": metrics,
    }
    atomic_write(result_path(task, config), json.dumps(_json_safe(payload), indent=1).encode())
    return payload
