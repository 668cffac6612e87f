"""The :class:`ScoreModel` interface: scores of Gaussian-smoothed data densities."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from .._kernel._tensors import chunked_map
from .._kernel._validation import check_batch, check_positive, check_tensor

TargetLike = None | int | Tensor | list

__all__ = ["ScoreModel", "format_target"]


def format_target(target: TargetLike, n: int, device: torch.device, num_classes: int | None) -> Tensor | None:
    """Turn ``target`` (None, int, list or tensor) into a ``(N,)`` long tensor on ``device``.

    Raises :class:`ValueError` for wrong lengths or labels outside ``[0, num_classes)``.

    Examples
    --------
    >>> format_target(1, 3, torch.device("cpu"), num_classes=2)
    tensor([1, 1, 1])
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("Expected `target` to be an int, a list of ints or a tensor but got bool")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long, device=device)
    elif isinstance(target, (list, tuple, Tensor)):
        t = torch.as_tensor(target, device=device)
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"Expected `target` to hold integer labels but got dtype {t.dtype}")
        t = t.long()
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"Expected `target` to have shape ({n},) but got {tuple(t.shape)}")
    else:
        raise TypeError(f"Expected `target` to be an int, a list of ints or a tensor but got {type(target).__name__}")
    if num_classes is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(
            f"Expected `target` labels in [0, {num_classes}) but got values in [{int(t.min())}, {int(t.max())}]"
        )
    return t


class ScoreModel(ABC):
    r"""Score of the data density smoothed by Gaussian noise of standard deviation :math:`\sigma`.

    .. math::

        s_\sigma(x) = \nabla_x \log p_\sigma(x), \qquad
        s_\sigma(x, y) = \nabla_x \log p_\sigma(x \mid y), \qquad
        p_\sigma = p * \mathcal{N}(0, \sigma^2 I).

    Subclasses implement :meth:`_score` for a validated batch. ``sigma`` is always in the user's
    data units. Tweedie's formula links the score to the optimal denoiser (:meth:`denoise`):
    :math:`D(x, \sigma) = \mathbb{E}[x_0 \mid x] = x + \sigma^2 s_\sigma(x)`.

    Attributes
    ----------
    num_classes : int or None
        Number of classes for conditional scores; ``None`` for an unconditional model.
    supports_unconditional : bool
        Whether ``target=None`` is allowed.
    input_shape : torch.Size or None
        Per-example input shape, if fixed.

    Examples
    --------
    A standard normal density smoothed at :math:`\sigma` has score :math:`-x / (1 + \sigma^2)`:

    >>> class StandardNormalScore(ScoreModel):
    ...     def _score(self, inputs, sigma, target):
    ...         return -inputs / (1 + sigma**2)
    >>> StandardNormalScore().score(torch.tensor([[2.0, -1.0]]), sigma=1.0)
    tensor([[-1.0000,  0.5000]])
    """

    num_classes: int | None = None
    supports_unconditional: bool = True
    input_shape: torch.Size | None = None
    #: Whether ``sigma = 0`` is a valid noise level (exact densities allow it).
    allows_zero_sigma: bool = False

    @property
    def sigma_range(self) -> tuple[float, float]:
        """Closed interval of noise levels (user units) this model can evaluate."""
        return (0.0, math.inf)

    @abstractmethod
    def _score(self, inputs: Tensor, sigma: float, target: Tensor | None) -> Tensor:
        """Score for a validated batch ``inputs`` of shape ``(n, *shape)``; ``target`` is ``(n,)`` or None."""

    def raw_score(self, inputs: Tensor, sigma: float, target: Tensor | None) -> Tensor:
        """The score of an already validated batch (see :meth:`check_call`), without checks or chunking.

        For callers that transform the score with :mod:`torch.func`; everyone else calls :meth:`score`.
        """
        return self._score(inputs, sigma, target)

    def networks(self) -> list[nn.Module]:
        """The torch modules this score model evaluates (by default: its module attributes).

        Callers that transform the score with :mod:`torch.func` (e.g.
        :class:`~captum_pags.manifold.DenoiserTangent`) freeze these first, so that the score's own
        temporary state changes are no-ops inside the transform. Override it when the networks
        are held elsewhere.

        Examples
        --------
        >>> class Wrapped(ScoreModel):
        ...     def __init__(self):
        ...         self.net = nn.Linear(2, 2)
        ...     def _score(self, inputs, sigma, target):
        ...         return self.net(inputs)
        >>> [type(m).__name__ for m in Wrapped().networks()]
        ['Linear']
        """
        found: list[nn.Module] = []
        for value in vars(self).values():
            module = value if isinstance(value, nn.Module) else getattr(value, "__self__", None)
            if isinstance(module, nn.Module) and all(module is not m for m in found):
                found.append(module)
        return found

    # ------------------------------------------------------------------ validation
    def check_sigma(self, sigma: Any) -> float:
        """Validate ``sigma`` against :attr:`sigma_range` and return it as a float."""
        value = check_positive("sigma", sigma, allow_zero=self.allows_zero_sigma)
        low, high = self.sigma_range
        if not (low <= value <= high):
            raise ValueError(f"Expected `sigma` to be in [{low:.4g}, {high:.4g}] for this model but got {value}")
        return value

    def resolve_sigma(self, sigma: Any) -> float:
        """The noise level (user units) at which :meth:`score` is evaluated for a requested ``sigma``.

        Models on a discrete noise grid (e.g. :class:`~captum_pags.scores.DiffusersScore` rounding
        to the nearest timestep) return the grid point they use; the others return ``sigma``.
        """
        return self.check_sigma(sigma)

    def check_call(self, inputs: Any, sigma: Any, target: TargetLike) -> tuple[float, Tensor | None]:
        """Validate a call's ``inputs``, ``sigma`` and ``target``; return the noise level and ``(N,)`` labels or None.

        Callers that evaluate :meth:`raw_score` inside their own loops (e.g. under
        :mod:`torch.func`) validate once with this method first.
        """
        check_tensor("inputs", inputs)
        n = check_batch("inputs", [inputs])
        if self.input_shape is not None and tuple(inputs.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"Expected `inputs` to have per-example shape {tuple(self.input_shape)} but got "
                f"{tuple(inputs.shape[1:])}"
            )
        sigma = self.check_sigma(sigma)
        if target is not None and self.num_classes is None:
            raise ValueError(
                "Expected `target=None` for this unconditional score model but got a target; "
                "a conditional score needs a class-conditional model"
            )
        if target is None and not self.supports_unconditional:
            raise ValueError(
                "Expected `target` (class labels) because this model has no unconditional score "
                "(e.g. it was trained without a null label)"
            )
        return sigma, format_target(target, n, inputs.device, self.num_classes)

    # ------------------------------------------------------------------ public API
    def score(
        self, inputs: Tensor, sigma: float, target: TargetLike = None, *, batch_size: int | None = None
    ) -> Tensor:
        r"""Score :math:`\nabla_x \log p_\sigma(x\,[\mid y])` of each example.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` points in the user's data units.
        sigma : float
            Noise level (standard deviation, user units).
        target : int, list of int or Tensor, optional
            Class labels ``(N,)`` (or one int for all) for the class-conditional score;
            ``None`` for the unconditional score.
        batch_size : int, optional
            Evaluate at most this many examples at a time to bound memory.

        Returns
        -------
        Tensor
            ``(N, *shape)`` on the inputs' device.
        """
        sigma, t = self.check_call(inputs, sigma, target)
        if t is None:
            return chunked_map(lambda x: self._score(x, sigma, None), inputs, chunk_size=batch_size)
        return chunked_map(lambda x, y: self._score(x, sigma, y), inputs, t, chunk_size=batch_size)

    def denoise(
        self, inputs: Tensor, sigma: float, target: TargetLike = None, *, batch_size: int | None = None
    ) -> Tensor:
        r"""Tweedie denoiser :math:`D(x, \sigma) = x + \sigma^2 \nabla_x \log p_\sigma(x)`.

        Same parameters and return shape as :meth:`score`. :math:`\sigma` is the level actually
        evaluated (:meth:`resolve_sigma`).
        """
        sigma_f = self.check_sigma(sigma)
        return inputs + self.resolve_sigma(sigma_f) ** 2 * self.score(inputs, sigma_f, target, batch_size=batch_size)
