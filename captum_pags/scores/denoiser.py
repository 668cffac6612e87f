r"""Scores of EDM-style denoisers :math:`D(x; \sigma)` by Tweedie's formula."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._kernel._model_state import preserved_state
from .._kernel._validation import check_int
from ._convert import AffineUnits, check_null_class, check_range, embedding_labels, model_device_dtype, output_tensor
from ._files import load_program
from .base import ScoreModel

__all__ = ["DenoiserScore"]


class DenoiserScore(ScoreModel):
    r"""Score of a denoiser :math:`D(x; \sigma)` that estimates :math:`\mathbb{E}[x_0 \mid x]`.

    For denoisers parametrised as in EDM (Karras et al., "Elucidating the Design Space of
    Diffusion-Based Generative Models", NeurIPS 2022), which take the noisy image and its noise
    level directly, Tweedie's formula gives the score of the smoothed density:

    .. math::

        \nabla_x \log p_\sigma(x \mid y) = \frac{D(x; \sigma, y) - x}{\sigma^2}.

    With ``data_range``/``model_range`` the denoiser is evaluated in its own units,
    :math:`x_m = a x + b`, :math:`\sigma_m = a\sigma`, and the score is brought back by the chain
    rule, :math:`a\,(D(x_m; \sigma_m) - x_m)/\sigma_m^2`.

    Parameters
    ----------
    denoiser : Callable
        Called as ``denoiser(x, sigma)`` or ``denoiser(x, sigma, class_labels=labels)``: ``x`` is
        ``(N, *shape)`` in model units, ``sigma`` an ``(N,)`` tensor of model-unit noise levels;
        returns the denoised ``(N, *shape)`` (a tensor, an output with ``.sample`` or a tuple).
    num_classes : int, optional
        Number of classes of a class-conditional denoiser; ``None`` for an unconditional one.
    null_class : int, optional
        Label the denoiser was trained with for "no class"; enables unconditional scores of a
        conditional denoiser. Labels then have ``num_classes + 1`` slots and user class ``y`` is
        passed as ``y`` below ``null_class`` and ``y + 1`` above it.
    one_hot_labels : bool
        Pass labels as one-hot float vectors ``(N, slots)`` (EDM's convention) instead of indices.
    data_range, model_range : tuple of float, optional
        Ranges of the user's data and of the denoiser's training data, given together; ``None``
        (default) when the denoiser works in the data's units.
    sigma_range : tuple of float
        Noise levels (user units) the denoiser may be evaluated at.
    input_shape : sequence of int, optional
        Per-example shape the denoiser expects, checked on every call.

    Examples
    --------
    The optimal denoiser of :math:`\mathcal{N}(0, I)` data is :math:`x / (1 + \sigma^2)`:

    >>> model = DenoiserScore(lambda x, sigma: x / (1 + sigma[:, None] ** 2))
    >>> model.score(torch.tensor([[1.0, 2.0]]), sigma=1.0)
    tensor([[-0.5000, -1.0000]])
    """

    def __init__(
        self,
        denoiser: Any,
        num_classes: int | None = None,
        *,
        null_class: int | None = None,
        one_hot_labels: bool = False,
        data_range: tuple[float, float] | None = None,
        model_range: tuple[float, float] | None = None,
        sigma_range: tuple[float, float] = (0.0, math.inf),
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if not callable(denoiser):
            raise TypeError(f"Expected `denoiser` to be callable but got {type(denoiser).__name__}")
        self.denoiser = denoiser
        if num_classes is not None:
            self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.num_labels: int | None = None if num_classes is None else num_classes + (null_class is not None)
        self.null_class = check_null_class(null_class, self.num_labels)
        self.supports_unconditional = num_classes is None or self.null_class is not None
        self.one_hot_labels = bool(one_hot_labels)
        if (data_range is None) != (model_range is None):
            raise ValueError(
                f"Expected `data_range` and `model_range` to be given together but got data_range={data_range!r} "
                f"and model_range={model_range!r}"
            )
        if data_range is None:
            self.units = AffineUnits((0.0, 1.0), (0.0, 1.0))
        else:
            self.units = AffineUnits(check_range("data_range", data_range), check_range("model_range", model_range))
        self._data_range = None if data_range is None else self.units.data_range
        self._sigma_range = _check_sigma_range(sigma_range)
        self.input_shape = None if input_shape is None else torch.Size(input_shape)

    @property
    def sigma_range(self) -> tuple[float, float]:
        """Noise levels (user units) the denoiser may be evaluated at."""
        return self._sigma_range

    @property
    def data_range(self) -> tuple[float, float] | None:  # type: ignore[override]
        """The user's data range when ``data_range``/``model_range`` were given, else ``None`` (unknown)."""
        return self._data_range

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device | None = None, **kwargs: Any) -> DenoiserScore:
        """Load a denoiser ``D(x, sigma[, class_labels])`` saved as TorchScript or as a ``torch.export`` program.

        TorchScript (:func:`torch.jit.save`, from ``torch.jit.script`` or ``torch.jit.trace``) and
        exported programs (:func:`torch.export.save`, ``.pt2``; export with a dynamic batch
        dimension to score batches of any size) are both loaded without unpickling Python objects.
        The file holds only the network: what it means (classes, null label, units, shape) comes
        from ``kwargs``.

        Parameters
        ----------
        path : str or os.PathLike
            The saved program.
        device : str or torch.device, optional
            Where to load it (default: where it was saved).
        **kwargs
            Settings of :class:`DenoiserScore` (``num_classes``, ``null_class``,
            ``one_hot_labels``, ``data_range``, ``model_range``, ``sigma_range``, ``input_shape``).

        Returns
        -------
        DenoiserScore

        Examples
        --------
        >>> DenoiserScore.load("missing.pt")
        Traceback (most recent call last):
        ...
        ValueError: Expected `path` to be an existing file but got 'missing.pt'
        """
        return cls(load_program(path, device), **kwargs)

    def _score(self, inputs: Tensor, sigma: float, target: Tensor | None) -> Tensor:
        device, _ = model_device_dtype(self.denoiser, inputs)
        labels = None
        if self.num_labels is not None:
            labels = embedding_labels(target, self.null_class, inputs.shape[0], device)
        return self._evaluate(inputs, sigma, labels)

    def _bayes(self, inputs: Tensor, sigma: float, target: Tensor) -> Tensor:
        """Conditional and null-label denoising in one call on ``2n`` examples."""
        n = inputs.shape[0]
        device, _ = model_device_dtype(self.denoiser, inputs)
        labels = torch.cat(
            [embedding_labels(target, self.null_class, n, device), embedding_labels(None, self.null_class, n, device)]
        )
        both = self._evaluate(torch.cat([inputs, inputs]), sigma, labels)
        return both[:n] - both[n:]

    def _evaluate(self, inputs: Tensor, sigma: float, labels: Tensor | None) -> Tensor:
        """The score for label ids ``labels`` (already mapped around the null label)."""
        device, dtype = model_device_dtype(self.denoiser, inputs)
        x_m = self.units.to_model(inputs.to(device=device, dtype=dtype))
        n = x_m.shape[0]
        sigma_m = sigma * self.units.scale
        sigmas = torch.full((n,), sigma_m, dtype=dtype, device=device)
        kwargs = {}
        if labels is not None:
            kwargs["class_labels"] = F.one_hot(labels, self.num_labels).to(dtype) if self.one_hot_labels else labels
        with preserved_state(self.denoiser, train=False, requires_grad=False):
            denoised = output_tensor(self.denoiser(x_m, sigmas, **kwargs), "denoiser")
        if denoised.shape != x_m.shape:
            raise ValueError(
                f"Expected `denoiser` to return a tensor shaped like its input {tuple(x_m.shape)} "
                f"but got {tuple(denoised.shape)}"
            )
        score = (denoised - x_m) * (self.units.scale / sigma_m**2)
        return score.to(device=inputs.device, dtype=inputs.dtype)

    def to_config(self) -> dict[str, Any]:
        """The wrapper's settings as a JSON-serialisable dict."""
        identity = self._data_range is None
        return {
            "num_classes": self.num_classes,
            "null_class": self.null_class,
            "one_hot_labels": self.one_hot_labels,
            "data_range": None if identity else list(self.units.data_range),
            "model_range": None if identity else list(self.units.model_range),
            "sigma_range": list(self._sigma_range),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
        }


def _check_sigma_range(value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"Expected `sigma_range` to be a pair of numbers (low, high) but got {value!r}") from None
    if not (math.isfinite(low) and 0 <= low < high) or math.isnan(high):
        raise ValueError(f"Expected `sigma_range` to satisfy 0 <= low < high but got ({low}, {high})")
    return (low, high)
