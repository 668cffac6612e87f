"""Running sums behind every metric accumulator, summed over ranks when torch.distributed runs."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def distributed_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class RunningSums:
    """NaN-aware sums of per-example values ``(N, *shape)``: the state of an accumulator.

    Keeps, for every position of ``shape``, the sum, the sum of squares and the number of defined
    (non-NaN) values, plus the number of examples seen. All sums are float64 on the device of the
    first update so that they can be all-reduced with any backend (NCCL needs CUDA tensors).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._state: Tensor | None = None  # (4, *shape): sum, sum of squares, defined count, undefined count
        self.num_examples = 0

    def update(self, values: Tensor) -> None:
        """Add a batch of per-example values ``(N, *shape)``."""
        v = values.detach().to(torch.float64)
        defined = ~torch.isnan(v)
        clean = torch.where(defined, v, torch.zeros_like(v))
        batch = torch.stack([clean.sum(0), (clean * clean).sum(0), defined.sum(0).double(), (~defined).sum(0).double()])
        if self._state is None:
            self._state = batch
        else:
            if batch.shape != self._state.shape:
                raise ValueError(
                    f"Expected per-example values of shape {tuple(self._state.shape[1:])} like earlier updates "
                    f"but got {tuple(batch.shape[1:])}"
                )
            self._state = self._state + batch.to(self._state.device)
        self.num_examples += int(v.shape[0])

    def synced(self) -> tuple[Tensor, int]:
        """The state summed over all ranks (a copy; the local state is unchanged) and the example count."""
        if self._state is None:
            raise RuntimeError("Expected at least one call to `update` before `compute` but got none")
        state = self._state.clone()
        count = torch.tensor([float(self.num_examples)], dtype=torch.float64, device=state.device)
        if distributed_world()[1] > 1:
            dist.all_reduce(state, op=dist.ReduceOp.SUM)
            dist.all_reduce(count, op=dist.ReduceOp.SUM)
        return state, int(count.item())

    def mean_std(self) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
        """Mean and (population) standard deviation of the defined values, their counts, undefined counts."""
        state, n = self.synced()
        total, total_sq, defined, undefined = state.unbind(0)
        mean = total / defined  # NaN where nothing was defined
        var = (total_sq / defined - mean * mean).clamp_min(0.0)
        return mean, var.sqrt(), defined, undefined, n
