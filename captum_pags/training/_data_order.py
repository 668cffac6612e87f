"""The data order of :func:`~captum_pags.training.fit`: a seeded permutation that can resume mid-epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)


class ResumableSampler(DistributedSampler):
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


def loader_settings(loader: Any) -> tuple[bool, dict[str, Any]]:
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


def split_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(b, Tensor) for b in batch)):
        raise TypeError(f"Expected the loaders to yield (inputs, targets) tensor pairs but got {type(batch).__name__}")
    return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)


def steps_per_epoch(size: int, batch_size: int, drop_last: bool, world: int) -> int:
    per_rank = math.ceil(size / world)  # DistributedSampler pads to equal shares
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
