"""A small, resumable, optionally distributed training loop with atomic safetensors checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)
from tqdm.auto import tqdm

from .._kernel._io import atomic_write
from .._kernel._model_state import preserved_state, unwrap_parallel
from .._kernel._validation import check_int

__all__ = ["FitHistory", "fit", "load_checkpoint"]

_FORMAT = "captum_pags.fit/1"
_STATE_FILE = "checkpoint.json"
_WEIGHTS_PREFIX = "checkpoint-"
_WEIGHTS_SUFFIX = ".safetensors"

Criterion = Callable[[nn.Module, Tensor, Tensor], Tensor]
EvalFn = Callable[[nn.Module, DataLoader], dict[str, float]]


@dataclass
class FitHistory:
    """What :func:`fit` did.

    Attributes
    ----------
    epochs : list of dict
        One record per completed epoch: ``epoch`` (1-based), ``train_loss`` (mean over the epoch's
        steps and ranks) and the evaluation results (``eval_loss``, ``eval_accuracy`` by default).
    global_step : int
        Optimizer steps taken in total, including those before a resume.
    resumed_from : int or None
        Global step of the checkpoint the run continued from.

    Examples
    --------
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> model = torch.nn.Linear(2, 2)
    >>> data = DataLoader(TensorDataset(torch.randn(8, 2), torch.arange(8) % 2), batch_size=4)
    >>> history = fit(model, torch.nn.CrossEntropyLoss(), data, epochs=2, quiet=True)
    >>> history.global_step, len(history.epochs)
    (4, 2)
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    global_step: int = 0
    resumed_from: int | None = None


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


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def _save_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, meta: dict[str, Any]
) -> None:
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
        "format": _FORMAT,
        "weights": weights,
        "weights_bytes": len(data),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        **meta,
        "optimizer": optimizer_json,
        "scheduler": scheduler_json,
    }
    # the state file is the commit point: it names the weights file that belongs to it
    atomic_write(directory / _STATE_FILE, json.dumps(state).encode())
    for old in directory.glob(f"{_WEIGHTS_PREFIX}*{_WEIGHTS_SUFFIX}"):
        if old.name != weights:
            old.unlink(missing_ok=True)


def _read_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
    """The JSON state and the tensors of the checkpoint in ``directory``; None if there is none."""
    state_path = directory / _STATE_FILE
    if not state_path.exists():
        return None
    try:
        state = json.loads(state_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"Expected a valid checkpoint state in {state_path} but it is truncated or corrupt: {err}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"Expected a checkpoint state of format {_FORMAT!r} in {state_path}")
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


def load_checkpoint(
    checkpoint_dir: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    r"""Load the last checkpoint written by :func:`fit` into ``model`` (and optimizer, scheduler).

    The weights file's size and SHA-256 are checked against the JSON state before anything is
    loaded, so a truncated or corrupt checkpoint raises a :class:`ValueError` naming the file.

    Parameters
    ----------
    checkpoint_dir : str or PathLike
        The ``checkpoint_dir`` given to :func:`fit`.
    model : nn.Module
        Receives the weights (a ``DistributedDataParallel`` wrapper is unwrapped).
    optimizer : torch.optim.Optimizer, optional
        Receives the optimizer state.
    scheduler : optional
        A learning-rate scheduler that receives its state.

    Returns
    -------
    dict
        The JSON state: ``epoch`` (completed epochs), ``batch_in_epoch``, ``global_step``,
        ``history``, the run's ``config`` and the random states.

    Examples
    --------
    >>> import tempfile
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> data = DataLoader(TensorDataset(torch.randn(8, 2), torch.tensor([0, 1] * 4)), batch_size=4)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = fit(torch.nn.Linear(2, 2), torch.nn.CrossEntropyLoss(), data, epochs=1, checkpoint_dir=tmp, quiet=True)
    ...     state = load_checkpoint(tmp, torch.nn.Linear(2, 2))
    >>> state["epoch"], state["global_step"]
    (1, 2)
    """
    directory = Path(checkpoint_dir)
    found = _read_checkpoint(directory)
    if found is None:
        raise FileNotFoundError(f"Expected a checkpoint in {directory} but found no {_STATE_FILE}")
    state, tensors = found
    raw = unwrap_parallel(model)
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        raw.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"Expected the checkpoint in {directory} to match the model's parameters: {err}") from err
    if optimizer is not None:
        optimizer.load_state_dict(_from_json(state["optimizer"], tensors))
    if scheduler is not None:
        if state["scheduler"] is None:
            raise ValueError(f"Expected a scheduler state in the checkpoint in {directory} but it has none")
        scheduler.load_state_dict(_from_json(state["scheduler"], tensors))
    return state


# ---------------------------------------------------------------------- data order
class _ResumableSampler(DistributedSampler):
    """A :class:`DistributedSampler` that can skip the examples already used in the epoch.

    Rank ``r`` of ``world`` gets positions ``r, r + world, ...`` of one permutation, so ``world``
    ranks with batch size ``B`` see, step by step, the same examples as one rank with ``world * B``.
    """

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int, world: int) -> None:
        super().__init__(range(size), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def _loader_settings(loader: Any) -> tuple[bool, dict[str, Any]]:
    if not isinstance(loader, DataLoader):
        raise TypeError(f"Expected `train_loader` to be a torch DataLoader but got {type(loader).__name__}")
    if isinstance(loader.dataset, IterableDataset):
        raise ValueError(
            "Expected `train_loader` over a map-style dataset (resuming needs indices) but got an IterableDataset"
        )
    if loader.batch_size is None:
        raise ValueError("Expected `train_loader` with a `batch_size` but got a custom `batch_sampler`")
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler):
        if sampler.replacement or sampler.num_samples != len(loader.dataset):
            raise ValueError("Expected `train_loader` to sample without replacement, once per example and epoch")
        shuffle = True
    elif isinstance(sampler, SequentialSampler):
        shuffle = False
    elif isinstance(sampler, DistributedSampler):
        shuffle = sampler.shuffle
    else:
        raise ValueError(
            "Expected `train_loader` built with `shuffle=True` or `shuffle=False` (fit draws a seeded, "
            f"resumable order itself) but got a {type(sampler).__name__}"
        )
    kwargs = {
        "batch_size": loader.batch_size,
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "drop_last": loader.drop_last,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
    }
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
        kwargs["persistent_workers"] = loader.persistent_workers
    return shuffle, kwargs


def _split_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(b, Tensor) for b in batch)):
        raise TypeError(f"Expected the loaders to yield (inputs, targets) tensor pairs but got {type(batch).__name__}")
    return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)


def _as_criterion(loss: Any) -> Criterion:
    if isinstance(loss, nn.modules.loss._Loss):
        return lambda model, inputs, targets: loss(model(inputs), targets)
    if not callable(loss):
        raise TypeError(f"Expected `loss` to be callable as loss(model, inputs, targets) but got {type(loss).__name__}")
    return loss


def _evaluate_classifier(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (eval mode, no gradients)."""
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    total, correct, loss = 0, torch.zeros((), dtype=torch.long), torch.zeros((), dtype=torch.float64)
    with preserved_state(model, train=False), torch.no_grad():
        for batch in loader:
            x, y = _split_batch(batch, device)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            correct += (logits.argmax(dim=1) == y).sum().cpu()
            total += y.shape[0]
    if total == 0:
        raise ValueError("Expected `eval_loader` to yield at least one example")
    return {"eval_loss": float(loss) / total, "eval_accuracy": float(correct) / total}


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------------- the loop
def fit(
    model: nn.Module,
    loss: Criterion | nn.Module,
    train_loader: DataLoader,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: Any = None,
    eval_loader: DataLoader | None = None,
    eval_fn: EvalFn | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    seed: int = 0,
    quiet: bool = False,
    device: str | torch.device | None = None,
) -> FitHistory:
    r"""Train ``model`` for ``epochs`` epochs; seeded, resumable and ready for ``torch.distributed``.

    Each step minimises ``loss(model, inputs, targets)`` (any loss of
    :mod:`captum_pags.training.losses`, a callable with that signature, or a
    ``torch.nn`` loss such as :class:`~torch.nn.CrossEntropyLoss`, applied to the logits):

    .. math::

        \theta_{t+1} = \operatorname{step}\Big(\theta_t,\; \nabla_\theta\,
        \frac{1}{|B_t|} \sum_{i \in B_t} \ell_\theta(x_i, y_i)\Big).

    **Reproducible order.** The examples of epoch ``e`` are a permutation drawn from ``seed + e``
    (or the natural order if ``train_loader`` does not shuffle); the loader is rebuilt with that
    order, keeping its batch size, collate function and workers.

    **Checkpoints.** With ``checkpoint_dir``, the model's and optimizer's tensors (safetensors) and
    a JSON state (epoch, step, position in the epoch, history, every global random state) are
    written atomically at the end of each epoch and every ``checkpoint_every`` steps.
    ``resume=True`` continues from the last checkpoint, so a killed and resumed run ends with the
    same weights as an uninterrupted one. Nothing is pickled.

    **Distributed.** If ``torch.distributed`` is initialised, the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel` (unless it already is), rank ``r`` of
    ``W`` takes every ``W``-th example of the shared permutation, and only rank 0 writes
    checkpoints (holding every rank's random state). ``W`` ranks with batch size ``B`` take the
    same steps as one process with batch size ``W B`` (for losses that are means over examples
    and models without batch statistics). Evaluation runs on every rank over the whole
    ``eval_loader``.

    The model is trained in train mode; its own mode and its parameters' ``.grad`` are restored
    when ``fit`` returns or raises.

    Parameters
    ----------
    model : nn.Module
        Trained in place (moved to ``device``).
    loss : Callable or nn.Module
        ``loss(model, inputs, targets) -> scalar``, or a ``torch.nn`` loss on logits.
    train_loader : DataLoader
        Map-style dataset yielding ``(inputs (B, *shape), targets (B,))``, built with
        ``shuffle=True`` or ``False``.
    epochs : int
        Total number of epochs (a resumed run continues up to it).
    optimizer : torch.optim.Optimizer, optional
        Defaults to Adam with learning rate ``1e-3``.
    scheduler : optional
        Learning-rate scheduler stepped once per epoch (checkpointed too).
    eval_loader : DataLoader, optional
        Evaluated after every epoch.
    eval_fn : Callable, optional
        ``eval_fn(model, eval_loader) -> dict of floats``; defaults to mean cross-entropy and
        accuracy (``eval_loss``, ``eval_accuracy``).
    checkpoint_dir : str or PathLike, optional
        Where checkpoints go (``checkpoint.json`` + ``checkpoint-<step>.safetensors``).
    checkpoint_every : int, optional
        Also checkpoint every this many optimizer steps.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` if there is one.
    seed : int
        Seeds the data order and (rank ``r`` with ``seed + r``) the global random generators.
    quiet : bool
        Hide the progress bar (always hidden on ranks other than 0).
    device : str or torch.device, optional
        Where to train; defaults to the device of the model's parameters.

    Returns
    -------
    FitHistory
        Per-epoch records and the step count.

    Examples
    --------
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> x = torch.tensor([[-1.0, 0.0], [1.0, 0.0]]).repeat(8, 1)
    >>> data = DataLoader(TensorDataset(x, torch.tensor([0, 1]).repeat(8)), batch_size=4, shuffle=True)
    >>> model = torch.nn.Linear(2, 2)
    >>> history = fit(model, torch.nn.CrossEntropyLoss(), data, epochs=3, eval_loader=data, quiet=True,
    ...               optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    >>> history.global_step, history.epochs[-1]["eval_accuracy"]
    (12, 1.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected `model` to be a torch.nn.Module but got {type(model).__name__}")
    criterion = _as_criterion(loss)
    shuffle, loader_kwargs = _loader_settings(train_loader)
    epochs = check_int("epochs", epochs, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if resume and checkpoint_dir is None:
        raise ValueError("Expected `checkpoint_dir` when `resume=True` but got None")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"Expected `eval_fn` to be callable but got {type(eval_fn).__name__}")
    if eval_loader is not None and not isinstance(eval_loader, DataLoader):
        raise TypeError(f"Expected `eval_loader` to be a torch DataLoader but got {type(eval_loader).__name__}")
    evaluate = eval_fn or _evaluate_classifier

    raw = unwrap_parallel(model)
    if device is None:
        params = list(raw.parameters())
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    raw.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(raw.parameters(), lr=1e-3)

    rank, world = _distributed()
    net: nn.Module = model
    if world > 1 and not isinstance(model, DistributedDataParallel):
        net = DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    dataset = train_loader.dataset
    config = {
        "seed": seed,
        "world_size": world,
        "batch_size": loader_kwargs["batch_size"],
        "dataset_size": len(dataset),
        "shuffle": shuffle,
    }

    history = FitHistory()
    epoch, batch_in_epoch, running = 0, 0, [0.0, 0]
    found = None
    if resume and directory is not None and (directory / _STATE_FILE).exists():
        state = load_checkpoint(directory, raw, optimizer, scheduler)
        for key, value in config.items():
            if state["config"].get(key) != value:
                raise ValueError(
                    f"Expected the resumed run to match the checkpoint's {key} ({state['config'].get(key)}) "
                    f"but got {value}"
                )
        epoch, batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        running = state["running"]
        history = FitHistory(list(state["history"]), state["global_step"], state["global_step"])
        _set_rng_state(state["rng"][rank])
        found = state
    if found is None:
        _seed_everything(seed + rank)

    sampler = _ResumableSampler(len(dataset), shuffle, seed, rank, world)

    def save() -> None:
        if directory is None:
            return
        rng = [_rng_state()]
        if world > 1:
            rng = [None] * world
            dist.all_gather_object(rng, _rng_state())
        if rank == 0:
            meta = {
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "global_step": history.global_step,
                "running": running,
                "history": history.epochs,
                "config": config,
                "rng": rng,
            }
            _save_checkpoint(directory, raw, optimizer, scheduler, meta)
        if world > 1:
            dist.barrier()

    # the mode the model came in with is restored at the end (and on errors); the weights are trained
    with preserved_state(raw):
        while epoch < epochs:
            sampler.set_epoch(epoch)
            sampler.start = batch_in_epoch * loader_kwargs["batch_size"]
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)  # worker seeds only
            loader = DataLoader(dataset, sampler=sampler, generator=generator, **loader_kwargs)
            steps_in_epoch = batch_in_epoch + len(loader)
            net.train()
            running_sum = torch.tensor(running[0], dtype=torch.float64, device=device)
            bar = tqdm(
                total=steps_in_epoch,
                initial=batch_in_epoch,
                desc=f"epoch {epoch + 1}/{epochs}",
                disable=quiet or rank != 0,
                leave=False,
            )
            for batch in loader:
                inputs, targets = _split_batch(batch, device)
                optimizer.zero_grad(set_to_none=True)
                value = criterion(net, inputs, targets)
                value.backward()
                optimizer.step()
                running_sum += value.detach().double()
                running[1] += 1
                batch_in_epoch += 1
                history.global_step += 1
                bar.update(1)
                if batch_in_epoch % 10 == 0:
                    bar.set_postfix(loss=float(running_sum) / running[1])
                if checkpoint_every and history.global_step % checkpoint_every == 0 and batch_in_epoch < steps_in_epoch:
                    running[0] = float(running_sum)
                    save()
            bar.close()
            train_sum = torch.tensor([float(running_sum), float(running[1])], dtype=torch.float64, device=device)
            if world > 1:
                dist.all_reduce(train_sum)
            record: dict[str, float] = {
                "epoch": epoch + 1,
                "train_loss": float(train_sum[0] / train_sum[1].clamp_min(1)),
            }
            if eval_loader is not None:
                record.update({k: float(v) for k, v in evaluate(raw, eval_loader).items()})
            if scheduler is not None:
                scheduler.step()
            history.epochs.append(record)
            if not quiet and rank == 0:
                tqdm.write(", ".join(f"{k}={v:.4g}" for k, v in record.items()))
            epoch, batch_in_epoch, running = epoch + 1, 0, [0.0, 0]
            save()
    return history
