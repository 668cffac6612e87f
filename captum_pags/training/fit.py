"""A small, resumable, optionally distributed training loop that never reseeds the caller's generators."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .._kernel._model_state import preserved_state, unwrap_parallel
from .._kernel._validation import check_int
from ._data_order import ResumableSampler, loader_settings, split_batch, steps_per_epoch
from .checkpoint import (
    STATE_FILE,
    check_loadable,
    load_into,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

__all__ = ["FitHistory", "fit"]

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


# ---------------------------------------------------------------------- global random states
@contextmanager
def _global_rng(seed: int, resumed: dict[str, Any] | None) -> Iterator[None]:
    """Seed (or restore) every global generator inside the block; the caller's states come back after.

    Losses draw noise from the global generators, so the loop seeds them for reproducible runs,
    but a library call must not reseed the user's generators: their states are saved and restored.
    """
    saved = rng_state()
    try:
        if resumed is not None:
            set_rng_state(resumed)
        else:
            random.seed(seed)
            np.random.seed(seed % 2**32)  # noqa: NPY002
            torch.manual_seed(seed)
        yield
    finally:
        set_rng_state(saved)


def _as_criterion(loss: Any) -> Criterion:
    if isinstance(loss, nn.modules.loss._Loss):
        return lambda model, inputs, targets: loss(model(inputs), targets)
    if not callable(loss):
        raise TypeError(f"Expected `loss` to be callable as loss(model, inputs, targets) but got {type(loss).__name__}")
    return loss


def _check_eval_labels(y: Tensor) -> None:
    if y.is_floating_point() or y.is_complex() or y.dim() != 1:
        raise TypeError(f"Expected `eval_loader` to yield (N,) integer class labels but got {tuple(y.shape)} {y.dtype}")


def _check_eval_loader(loader: DataLoader) -> None:
    """The default evaluation's needs, checked on the first batch before any training."""
    batch = next(iter(loader), None)
    if batch is None:
        raise ValueError("Expected `eval_loader` to yield at least one example but it is empty")
    _check_eval_labels(split_batch(batch, torch.device("cpu"))[1])


def _evaluate_classifier(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (eval mode, no gradients)."""
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    total, correct, loss = 0, torch.zeros((), dtype=torch.long), torch.zeros((), dtype=torch.float64)
    with preserved_state(model, train=False), torch.no_grad():
        for batch in loader:
            x, y = split_batch(batch, device)
            _check_eval_labels(y)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            correct += (logits.argmax(dim=1) == y).sum().cpu()
            total += y.shape[0]
    if total == 0:
        raise ValueError("Expected `eval_loader` to yield at least one example")
    return {"eval_loss": float(loss) / total, "eval_accuracy": float(correct) / total}


def _check_loss(value: Any, epoch: int, batch_in_epoch: int, global_step: int) -> None:
    """Stop at the first loss that is not a finite scalar, before it reaches the weights."""
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"Expected `loss` to return a scalar tensor but got {shape}")
    if not bool(torch.isfinite(value.detach()).all()):
        raise FloatingPointError(
            f"Expected a finite training loss but got {float(value.detach())} at epoch {epoch + 1}, step "
            f"{batch_in_epoch + 1} of the epoch (global step {global_step + 1}); nothing was updated at this step"
        )


def _check_weights(model: nn.Module, epoch: int) -> None:
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p.detach()).all()):
            raise FloatingPointError(
                f"Expected finite weights after epoch {epoch + 1} but parameter `{name}` holds NaN or inf "
                "(lower the learning rate or the loss strength)"
            )


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
    same weights as an uninterrupted one. Nothing is pickled. A checkpoint that does not fit the run
    (another model shape, optimizer or scheduler type, seed, batch size, data set size) raises a
    :class:`ValueError` before any of ``model``, ``optimizer`` or ``scheduler`` is changed.

    **Random state.** Inside ``fit`` the global generators (torch, NumPy, Python) are seeded from
    ``seed`` (or restored from the checkpoint), so the noise losses draw reproducible streams; the
    caller's generator states are restored when ``fit`` returns or raises.

    **Finite training.** A loss that is not finite stops the run with a
    :class:`FloatingPointError` naming the epoch and step, before it reaches the weights; so do
    weights that are not finite at the end of an epoch. No checkpoint is written for such a state.

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
        Seeds the data order and (rank ``r`` with ``seed + r``) the global random generators inside
        ``fit`` (the caller's states are restored afterwards).
    quiet : bool
        Hide the progress bar (always hidden on ranks other than 0).
    device : str or torch.device, optional
        Where to train; defaults to the device of the model's parameters.

    Returns
    -------
    FitHistory
        Per-epoch records and the step count.

    Raises
    ------
    ValueError
        Bad arguments (an empty ``train_loader`` included) or a checkpoint that does not fit.
    FloatingPointError
        A non-finite loss or non-finite weights.

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
    shuffle, loader_kwargs = loader_settings(train_loader)
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
    if eval_loader is not None and eval_fn is None:
        _check_eval_loader(eval_loader)
    rank, world = _distributed()
    size = len(train_loader.dataset)
    if size == 0:
        raise ValueError("Expected `train_loader` to hold at least one example but its dataset is empty")
    if steps_per_epoch(size, loader_kwargs["batch_size"], loader_kwargs["drop_last"], world) == 0:
        raise ValueError(
            f"Expected `train_loader` to yield at least one batch per epoch but its {size} examples "
            f"(over {world} ranks) are fewer than `batch_size` {loader_kwargs['batch_size']} with `drop_last=True`"
        )

    raw = unwrap_parallel(model)
    if device is None:
        params = list(raw.parameters())
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    raw.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(raw.parameters(), lr=1e-3)

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
    if resume and directory is not None and (directory / STATE_FILE).exists():
        found = read_checkpoint(directory)
    resumed_rng = None
    if found is not None:
        # every check runs before anything is loaded, so a refused resume leaves all objects untouched
        state, tensors = found
        for key, value in config.items():
            if state["config"].get(key) != value:
                raise ValueError(
                    f"Expected the resumed run to match the checkpoint's {key} ({state['config'].get(key)}) "
                    f"but got {value}"
                )
        check_loadable(directory, state, tensors, raw, optimizer, scheduler)
        load_into(state, tensors, raw, optimizer, scheduler)
        epoch, batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        running = state["running"]
        history = FitHistory(list(state["history"]), state["global_step"], state["global_step"])
        resumed_rng = state["rng"][rank]

    sampler = ResumableSampler(len(dataset), shuffle, seed, rank, world)

    def save() -> None:
        if directory is None:
            return
        rng = [rng_state()]
        if world > 1:
            rng = [None] * world
            dist.all_gather_object(rng, rng_state())
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
            save_checkpoint(directory, raw, optimizer, scheduler, meta)
        if world > 1:
            dist.barrier()

    # the mode the model came in with and the caller's random states are restored at the end (and on
    # errors); the weights are trained
    with preserved_state(raw), _global_rng(seed + rank, resumed_rng):
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
                inputs, targets = split_batch(batch, device)
                optimizer.zero_grad(set_to_none=True)
                buffers = [b.detach().clone() for b in raw.buffers()]  # small: BatchNorm statistics
                value = criterion(net, inputs, targets)
                try:
                    _check_loss(value, epoch, batch_in_epoch, history.global_step)
                except (ValueError, FloatingPointError):
                    with torch.no_grad():  # the failed step's forward pass leaves no statistics behind
                        for b, saved in zip(raw.buffers(), buffers):
                            b.copy_(saved)
                    raise
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
            _check_weights(raw, epoch)
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
