"""Conversions shared by the learned score models: data units, class labels, model outputs.

:class:`~captum_pags.scores.DiffusersScore` and :class:`~captum_pags.scores.DenoiserScore` both
evaluate a network that works in its own units (e.g. images in [-1, 1]) and may take class labels
with a reserved *null* label for the unconditional score. Both conversions live here, once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "AffineUnits",
    "check_null_class",
    "check_range",
    "config_value",
    "embedding_labels",
    "model_device_dtype",
    "output_tensor",
]


def check_range(name: str, value: Any) -> tuple[float, float]:
    """Return ``value`` as ``(low, high)`` floats after checking ``low < high``, both finite."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"Expected `{name}` to be a pair of numbers (low, high) but got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"Expected `{name}` to be finite numbers with low < high but got ({low}, {high})")
    return (low, high)


@dataclass(frozen=True)
class AffineUnits:
    r"""The affine map from the user's data units to a model's units.

    .. math::

        x_{\text{model}} = a\,x + b, \qquad a = \frac{h_m - l_m}{h_d - l_d}, \qquad
        b = l_m - a\,l_d, \qquad \sigma_{\text{model}} = a\,\sigma, \qquad
        \nabla_x \log p_\sigma(x) = a\, \nabla_{x_m} \log p^{\text{model}}_{a\sigma}(x_m),

    for ``data_range`` :math:`(l_d, h_d)` and ``model_range`` :math:`(l_m, h_m)`. The last identity
    is the chain rule: the density in data units is :math:`a^D` times the density in model units.

    Examples
    --------
    >>> units = AffineUnits((0.0, 1.0), (-1.0, 1.0))
    >>> units.scale, units.shift
    (2.0, -1.0)
    >>> units.to_model(torch.tensor([0.0, 0.5, 1.0]))
    tensor([-1.,  0.,  1.])
    """

    data_range: tuple[float, float]
    model_range: tuple[float, float]

    @property
    def scale(self) -> float:
        """``a``, model units per data unit."""
        return (self.model_range[1] - self.model_range[0]) / (self.data_range[1] - self.data_range[0])

    @property
    def shift(self) -> float:
        """``b``, the model value of data value 0."""
        return self.model_range[0] - self.scale * self.data_range[0]

    @property
    def is_identity(self) -> bool:
        """Whether data and model units coincide."""
        return self.scale == 1.0 and self.shift == 0.0

    def to_model(self, x: Tensor) -> Tensor:
        """Map data-unit points ``x`` (any shape) to model units."""
        return x if self.is_identity else x * self.scale + self.shift

    def to_data(self, x_model: Tensor) -> Tensor:
        """Map model-unit points back to data units."""
        return x_model if self.is_identity else (x_model - self.shift) / self.scale

    def to_config(self) -> dict[str, list[float]]:
        """The two ranges as JSON-ready lists."""
        return {"data_range": list(self.data_range), "model_range": list(self.model_range)}


def config_value(model: Any, key: str, default: Any = None) -> Any:
    """Read ``model.config[key]`` from a diffusers config (a mapping) or any object with attributes."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def check_null_class(null_class: Any, num_embeddings: int | None) -> int | None:
    """Check that ``null_class`` indexes one of ``num_embeddings`` label embeddings."""
    if null_class is None:
        return None
    if isinstance(null_class, bool) or not isinstance(null_class, int):
        raise TypeError(f"Expected `null_class` to be an int or None but got {type(null_class).__name__}")
    if num_embeddings is None:
        raise ValueError(f"Expected `null_class=None` for a model without class labels but got null_class={null_class}")
    if not 0 <= null_class < num_embeddings:
        raise ValueError(f"Expected `null_class` in [0, {num_embeddings}) but got {null_class}")
    return null_class


def embedding_labels(target: Tensor | None, null_class: int | None, n: int, device: torch.device) -> Tensor:
    """Model label ids for user class labels: the null slot is skipped; ``None`` gives the null label.

    User class ``y`` is embedding ``y`` when ``y < null_class`` and ``y + 1`` otherwise, so a model
    whose null label is the last embedding sees the user's labels unchanged.
    """
    if target is None:
        if null_class is None:
            raise ValueError("Expected `null_class` to be set to compute an unconditional score")
        return torch.full((n,), null_class, dtype=torch.long, device=device)
    labels = target.to(device=device, dtype=torch.long)
    if null_class is not None:
        labels = labels + (labels >= null_class).long()
    return labels


def model_device_dtype(model: Any, fallback: Tensor) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first parameter (or buffer); ``fallback``'s otherwise."""
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device, t.dtype
        for t in model.buffers():
            if t.is_floating_point():
                return t.device, t.dtype
    return fallback.device, fallback.dtype


def output_tensor(out: Any, name: str) -> Tensor:
    """The prediction tensor of a model output: a tensor, an object with ``.sample``, or a tuple's first item."""
    if isinstance(out, Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(
        f"Expected `{name}` to return a torch.Tensor, an output with `.sample` or a tuple of tensors "
        f"but it returned {type(out).__name__}"
    )
