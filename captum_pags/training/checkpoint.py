"""Checkpoints of :func:`~captum_pags.training.fit`: atomic safetensors + JSON, checked before loading.

A checkpoint is two files: ``checkpoint-<step>.safetensors`` (every tensor: model, optimizer and
scheduler state) and ``checkpoint.json`` (everything else, and the name, size and SHA-256 of the
tensor file). Both are written atomically; the JSON file is the commit point. Nothing is pickled.
Loading validates the whole checkpoint against the objects that receive it (parameter names,
shapes and dtypes, optimizer and scheduler types, parameter groups) before any of them changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from .._kernel._io import atomic_write
from .._kernel._model_state import unwrap_parallel

__all__ = ["load_checkpoint"]

FORMAT = "captum_pags.fit/1"
STATE_FILE = "checkpoint.json"
_WEIGHTS_PREFIX = "checkpoint-"
_WEIGHTS_SUFFIX = ".safetensors"


# ---------------------------------------------------------------------- JSON + safetensors state
def _to_json(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    """Encode nested state as JSON, moving every tensor into ``tensors`` under a path-like key."""
    if isinstance(obj, Tensor):
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"Expected checkpointed dict keys to be str or int but `{key}` has key {k!r}")
            items.append([k, _to_json(v, f"{key}.{k}", tensors)])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_json(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_to_json(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        "Expected checkpointed state to hold only tensors, numbers, strings, lists, tuples and dicts "
        f"but `{key}` is a {type(obj).__name__}"
    )


def _from_json(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_from_json(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_from_json(v, tensors) for v in obj["__tuple__"])
        return {k: _from_json(v, tensors) for k, v in obj["__dict__"]}
    return obj


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# ---------------------------------------------------------------------- global random states
def rng_state() -> dict[str, Any]:
    """Every global random state the loop or a loss may draw from, as JSON-friendly lists."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the legacy global state is what users seed
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global random states recorded by :func:`rng_state`."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ---------------------------------------------------------------------- writing
def save_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, meta: dict[str, Any]
) -> None:
    """Write the checkpoint of ``model``, ``optimizer``, ``scheduler`` and ``meta`` atomically."""
    tensors: dict[str, Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().to("cpu").contiguous().clone()
    optimizer_json = _to_json(optimizer.state_dict(), "optimizer", tensors)
    scheduler_json = None if scheduler is None else _to_json(scheduler.state_dict(), "scheduler", tensors)
    data = save_safetensors(tensors, metadata={"format": "pt"})
    weights = f"{_WEIGHTS_PREFIX}{meta['global_step']:09d}{_WEIGHTS_SUFFIX}"
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / weights, data)
    state = {
        "format": FORMAT,
        "weights": weights,
        "weights_bytes": len(data),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        **meta,
        "optimizer_type": _type_name(optimizer),
        "scheduler_type": None if scheduler is None else _type_name(scheduler),
        "optimizer": optimizer_json,
        "scheduler": scheduler_json,
    }
    # the state file is the commit point: it names the weights file that belongs to it
    atomic_write(directory / STATE_FILE, json.dumps(state).encode())
    for old in directory.glob(f"{_WEIGHTS_PREFIX}*{_WEIGHTS_SUFFIX}"):
        if old.name != weights:
            old.unlink(missing_ok=True)


# ---------------------------------------------------------------------- reading and checking
def read_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
    """The JSON state and the tensors of the checkpoint in ``directory``; None if there is none."""
    state_path = directory / STATE_FILE
    if not state_path.exists():
        return None
    try:
        state = json.loads(state_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"Expected a valid checkpoint state in {state_path} but it is truncated or corrupt: {err}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"Expected a checkpoint state of format {FORMAT!r} in {state_path}")
    weights_path = directory / state["weights"]
    if not weights_path.exists():
        raise ValueError(f"Expected the checkpoint weights {weights_path} named by {state_path} but it is missing")
    data = weights_path.read_bytes()
    if len(data) != state["weights_bytes"]:
        raise ValueError(
            f"Expected checkpoint file {weights_path} to have {state['weights_bytes']} bytes but it has "
            f"{len(data)}: it is truncated or corrupt"
        )
    if hashlib.sha256(data).hexdigest() != state["weights_sha256"]:
        raise ValueError(f"Expected checkpoint file {weights_path} to match its recorded SHA-256 but it is corrupt")
    try:
        tensors = load_safetensors(data)
    except SafetensorError as err:  # pragma: no cover - the checks above catch damaged files first
        raise ValueError(f"Expected a readable safetensors file at {weights_path} but got: {err}") from err
    return state, tensors


def _check_model(directory: Path, model: nn.Module, weights: dict[str, Tensor]) -> None:
    own = model.state_dict()
    missing, unexpected = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(
            f"Expected the checkpoint in {directory} to match the model's parameters but it lacks "
            f"{missing} and has extra {unexpected}"
        )
    for k, mine in own.items():
        theirs = weights[k]
        if mine.shape != theirs.shape or mine.dtype != theirs.dtype:
            raise ValueError(
                f"Expected the checkpoint in {directory} to match the model's parameters but `{k}` is "
                f"{tuple(theirs.shape)} {theirs.dtype} there and {tuple(mine.shape)} {mine.dtype} in the model"
            )


def _check_optimizer(
    directory: Path, state: dict[str, Any], tensors: dict[str, Tensor], optimizer: torch.optim.Optimizer
) -> None:
    saved_type = state.get("optimizer_type")
    if saved_type is not None and saved_type != _type_name(optimizer):
        raise ValueError(
            f"Expected `optimizer` to be a {saved_type} like the one in the checkpoint in {directory} "
            f"but got {_type_name(optimizer)}"
        )
    saved_groups = [len(g["params"]) for g in _from_json(state["optimizer"], tensors)["param_groups"]]
    groups = [len(g["params"]) for g in optimizer.param_groups]
    if saved_groups != groups:
        raise ValueError(
            f"Expected `optimizer` to have parameter groups of sizes {saved_groups} like the one in the "
            f"checkpoint in {directory} but got {groups}"
        )


def _check_scheduler(directory: Path, state: dict[str, Any], scheduler: Any) -> None:
    if state["scheduler"] is None:
        raise ValueError(f"Expected a scheduler state in the checkpoint in {directory} but it has none")
    saved_type = state.get("scheduler_type")
    if saved_type is not None and saved_type != _type_name(scheduler):
        raise ValueError(
            f"Expected `scheduler` to be a {saved_type} like the one in the checkpoint in {directory} "
            f"but got {_type_name(scheduler)}"
        )


def _scheduler_state(saved: dict[str, Any], scheduler: Any) -> dict[str, Any]:
    """JSON gives plain dicts back; restore the counters the scheduler keeps (MultiStepLR milestones)."""
    current = scheduler.state_dict()
    return {k: Counter(v) if isinstance(current.get(k), Counter) else v for k, v in saved.items()}


def check_loadable(
    directory: Path,
    state: dict[str, Any],
    tensors: dict[str, Tensor],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
) -> None:
    """Raise a :class:`ValueError` if the checkpoint cannot be loaded whole into these objects."""
    _check_model(directory, model, _model_tensors(tensors))
    if optimizer is not None:
        _check_optimizer(directory, state, tensors, optimizer)
    if scheduler is not None:
        _check_scheduler(directory, state, scheduler)


def _model_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}


def load_into(
    state: dict[str, Any],
    tensors: dict[str, Tensor],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
) -> None:
    """Load a checkpoint that :func:`check_loadable` accepted."""
    model.load_state_dict(_model_tensors(tensors))
    if optimizer is not None:
        optimizer.load_state_dict(_from_json(state["optimizer"], tensors))
    if scheduler is not None:
        scheduler.load_state_dict(_scheduler_state(_from_json(state["scheduler"], tensors), scheduler))


def load_checkpoint(
    checkpoint_dir: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    r"""Load the last checkpoint written by :func:`~captum_pags.training.fit` into ``model`` (and optimizer, scheduler).

    The weights file's size and SHA-256 are checked against the JSON state, and the whole
    checkpoint against the receiving objects (parameter names, shapes and dtypes; optimizer and
    scheduler types; parameter-group sizes), before anything is loaded: a checkpoint that does not
    fit raises a :class:`ValueError` and leaves ``model``, ``optimizer`` and ``scheduler`` untouched.

    Parameters
    ----------
    checkpoint_dir : str or PathLike
        The ``checkpoint_dir`` given to :func:`~captum_pags.training.fit`.
    model : nn.Module
        Receives the weights (a ``DistributedDataParallel`` wrapper is unwrapped).
    optimizer : torch.optim.Optimizer, optional
        Receives the optimizer state; must be of the checkpointed optimizer's type.
    scheduler : optional
        A learning-rate scheduler of the checkpointed type that receives its state.

    Returns
    -------
    dict
        The JSON state: ``epoch`` (completed epochs), ``batch_in_epoch``, ``global_step``,
        ``history``, the run's ``config`` and the random states.

    Examples
    --------
    >>> import tempfile
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from captum_pags.training import fit
    >>> data = DataLoader(TensorDataset(torch.randn(8, 2), torch.tensor([0, 1] * 4)), batch_size=4)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = fit(torch.nn.Linear(2, 2), torch.nn.CrossEntropyLoss(), data, epochs=1, checkpoint_dir=tmp, quiet=True)
    ...     state = load_checkpoint(tmp, torch.nn.Linear(2, 2))
    >>> state["epoch"], state["global_step"]
    (1, 2)
    """
    directory = Path(checkpoint_dir)
    found = read_checkpoint(directory)
    if found is None:
        raise FileNotFoundError(f"Expected a checkpoint in {directory} but found no {STATE_FILE}")
    state, tensors = found
    raw = unwrap_parallel(model)
    check_loadable(directory, state, tensors, raw, optimizer, scheduler)
    load_into(state, tensors, raw, optimizer, scheduler)
    return state
