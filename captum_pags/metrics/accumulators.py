"""Streaming and distributed accumulators of the metrics: whole data sets, several ranks.

Each accumulator shares the private per-batch helper of its function (torchmetrics' pattern),
so ``update`` over batches and the function on all data compute the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .._kernel._autodiff import check_model_dtype
from .._kernel._validation import check_int
from ..manifold.base import TangentSpace
from ._common import TensorOrTuple, _check_chunk
from .alignment import Method, _alignment_values, _check_lpips, _paired
from .robustness import (
    Distance,
    ManifoldRobustness,
    _check_robustness_args,
    _check_robustness_inputs,
    _robustness_values,
)
from .tangent import _check_tangent_args, _tangent_values, random_tangent_alignment

__all__ = [
    "AlignmentAccumulator",
    "AlignmentSummary",
    "RobustnessAccumulator",
    "RunningSums",
    "TangentAlignmentAccumulator",
    "distributed_world",
]


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


@dataclass(frozen=True)
class AlignmentSummary:
    """Dataset-level summary of a per-example alignment metric.

    Attributes
    ----------
    mean : Tensor
        0-d mean over the examples with a defined value (NaN values are left out).
    std : Tensor
        0-d population standard deviation over the same examples.
    count : int
        Number of examples with a defined value.
    num_undefined : int
        Number of examples whose value was NaN (e.g. all-zero maps).

    Examples
    --------
    >>> acc = AlignmentAccumulator()
    >>> acc.update(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    >>> summary = acc.compute()
    >>> float(summary.mean), summary.count, summary.num_undefined
    (1.0, 1, 1)
    """

    mean: Tensor
    std: Tensor
    count: int
    num_undefined: int


def _summary(sums: RunningSums) -> AlignmentSummary:
    mean, std, defined, undefined, _ = sums.mean_std()
    return AlignmentSummary(mean, std, int(defined.item()), int(undefined.item()))


class AlignmentAccumulator:
    r"""Accumulate :func:`score_alignment` over a data loader (and over ranks).

    ``update`` computes the per-example alignment of one batch with the same code as
    :func:`score_alignment` and adds it to running sums; ``compute`` returns the mean and standard
    deviation over every example seen on every rank (summed with :func:`torch.distributed.all_reduce`
    when a process group is initialised), leaving NaN values out and counting them:

    .. math::

        \bar m = \frac{1}{|\mathcal{D}|}\sum_{i \in \mathcal{D}} m_i, \qquad
        \mathcal{D} = \{ i : m_i \text{ defined} \}.

    Parameters
    ----------
    method : {"cosine", "pearson", "lpips"}
        As in :func:`score_alignment`.
    lpips_net : Callable, optional
        As in :func:`score_alignment`.
    max_examples_per_batch : int, optional
        As in :func:`score_alignment`.

    Examples
    --------
    >>> acc = AlignmentAccumulator()
    >>> acc.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    >>> acc.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    >>> acc.compute().mean
    tensor(0.5000, dtype=torch.float64)
    """

    def __init__(
        self,
        method: Method = "cosine",
        *,
        lpips_net: Callable[[Tensor, Tensor], Tensor] | None = None,
        max_examples_per_batch: int | None = None,
    ) -> None:
        _check_lpips(method, lpips_net)
        self.method = method
        self.lpips_net = lpips_net
        self.max_examples_per_batch = _check_chunk(max_examples_per_batch)
        self._sums = RunningSums()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sums.reset()

    def update(self, attributions: TensorOrTuple, scores: TensorOrTuple) -> None:
        """Add one batch of maps (same arguments as :func:`score_alignment`)."""
        attr_t, score_t = _paired(attributions, scores)
        self._sums.update(_alignment_values(attr_t, score_t, self.method, self.lpips_net, self.max_examples_per_batch))

    def compute(self) -> AlignmentSummary:
        """Mean, standard deviation and counts over everything seen (all ranks)."""
        return _summary(self._sums)


class TangentAlignmentAccumulator:
    r"""Accumulate :func:`tangent_alignment` over a data loader (and over ranks).

    Same running sums as :class:`AlignmentAccumulator`; ``compute`` also carries the random
    reference level :math:`\sqrt{k/D}` of :func:`random_tangent_alignment` in ``baseline``
    when the tangent space has a fixed input shape.

    Parameters
    ----------
    tangent_space : TangentSpace
        As in :func:`tangent_alignment`.
    max_examples_per_batch : int, optional
        As in :func:`tangent_alignment`.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> acc = TangentAlignmentAccumulator(LinearSubspace(torch.tensor([[1.0, 0.0]])))
    >>> acc.update(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), torch.zeros(2, 2))
    >>> round(float(acc.compute().mean), 4), acc.baseline
    (0.3536, 0.7071067811865476)
    """

    def __init__(self, tangent_space: TangentSpace, *, max_examples_per_batch: int | None = None) -> None:
        if not isinstance(tangent_space, TangentSpace):
            raise TypeError(
                f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
            )
        self.tangent_space = tangent_space
        self.max_examples_per_batch = _check_chunk(max_examples_per_batch)
        self._sums = RunningSums()

    @property
    def baseline(self) -> float | None:
        r"""The random reference :math:`\sqrt{k/D}`, or None when :math:`D` is not fixed."""
        if self.tangent_space.num_features is None:
            return None
        return float(random_tangent_alignment(self.tangent_space))

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sums.reset()

    def update(self, attributions: TensorOrTuple, inputs: TensorOrTuple) -> None:
        """Add one batch (same arguments as :func:`tangent_alignment`)."""
        inputs_t, attr_t = _check_tangent_args(attributions, inputs, self.tangent_space)
        self._sums.update(_tangent_values(attr_t, inputs_t, self.tangent_space, self.max_examples_per_batch))

    def compute(self) -> AlignmentSummary:
        """Mean, standard deviation and counts over everything seen (all ranks)."""
        return _summary(self._sums)


class RobustnessAccumulator:
    r"""Accumulate :func:`manifold_robustness` over a data loader (and over ranks).

    ``update`` evaluates one batch with the same code as :func:`manifold_robustness` and adds the
    per-example ``on`` and ``off`` changes to running sums; ``compute`` returns their means over
    every example on every rank (summed with :func:`torch.distributed.all_reduce` when a process
    group is initialised) as a :class:`ManifoldRobustness` with ``(1, E)`` fields, whose
    ``relative`` is the ratio of the means:

    .. math::

        \overline{\text{on}}(\varepsilon) = \frac{1}{N}\sum_i \text{on}(x_i, \varepsilon), \qquad
        \text{relative}(\varepsilon) = \overline{\text{on}}(\varepsilon) / \overline{\text{off}}(\varepsilon).

    The ``b``-th update (counting from 0) on rank ``r`` of ``W`` uses directions seeded with
    ``seed + b * W + r``, so batches and ranks never share directions and runs are repeatable.

    Parameters
    ----------
    forward_func, tangent_space, epsilons, n_samples, distance, max_examples_per_batch :
        As in :func:`manifold_robustness`.
    seed : int
        Base seed of the directions.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[4.0, 0.0], [-4.0, 0.0]]))
    >>> acc = RobustnessAccumulator(model, LinearSubspace(torch.tensor([[1.0, 0.0]])), [0.1, 0.2], n_samples=2)
    >>> acc.update(torch.zeros(3, 2))
    >>> acc.compute().on
    tensor([[0.3799, 0.6640]])
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        tangent_space: TangentSpace,
        epsilons: float | Sequence[float] | Tensor,
        n_samples: int = 10,
        distance: Distance = "softmax_l1",
        *,
        max_examples_per_batch: int | None = None,
        seed: int = 0,
    ) -> None:
        check_int("seed", seed)
        self._eps = _check_robustness_args(
            forward_func, tangent_space, epsilons, n_samples, distance, max_examples_per_batch, seed
        )
        self.forward_func = forward_func
        self.tangent_space = tangent_space
        self.n_samples = n_samples
        self.distance = distance
        self.max_examples_per_batch = max_examples_per_batch
        self.seed = seed
        self._sums = RunningSums()
        self._updates = 0
        self._dtype: torch.dtype | None = None

    @property
    def epsilons(self) -> list[float]:
        """The perturbation sizes."""
        return list(self._eps)

    def reset(self) -> None:
        """Forget every batch seen so far (the seed sequence starts again)."""
        self._sums.reset()
        self._updates = 0

    def update(self, inputs: TensorOrTuple, additional_forward_args: Any = None) -> None:
        """Add one batch (same ``inputs`` and ``additional_forward_args`` as :func:`manifold_robustness`)."""
        inputs_t = _check_robustness_inputs(inputs, self.tangent_space)
        check_model_dtype(self.forward_func, inputs_t)
        rank, world = distributed_world()
        seed = self.seed + self._updates * world + rank
        on, off = _robustness_values(
            self.forward_func,
            inputs_t,
            self.tangent_space,
            self._eps,
            self.n_samples,
            self.distance,
            self.max_examples_per_batch,
            seed,
            additional_forward_args,
        )
        self._sums.update(torch.stack([on, off], dim=1))  # (N, 2, E)
        self._updates += 1
        self._dtype = on.dtype

    def compute(self) -> ManifoldRobustness:
        """Mean ``on`` and ``off`` changes ``(1, E)`` over everything seen (all ranks)."""
        mean, _, _, _, _ = self._sums.mean_std()
        mean = mean.to(self._dtype)
        eps = torch.tensor(self._eps, dtype=mean.dtype, device=mean.device)
        return ManifoldRobustness(mean[0:1], mean[1:2], eps)
