"""The classifier of the analysis: how to load it, and its input normalisation as part of the model."""

from __future__ import annotations

import importlib
import json
import math
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import AnalysisInputError

__all__ = ["ClassifierSpec", "NormalizedClassifier", "load_user_model"]


class NormalizedClassifier(nn.Module):
    r"""A classifier with its input normalisation inside, so gradients are w.r.t. the image in data units.

    .. math::

        f_{\text{data}}(x) = f\big((x - \mu) / s\big), \qquad
        \nabla_x f_{\text{data}}(x) = \frac{1}{s} \odot \nabla f\big((x - \mu)/s\big),

    with per-channel mean :math:`\mu` and std :math:`s` (torchvision's ``Normalize``). The wrapped
    model is a submodule: its mode, parameters and hooks are the user's own.

    Parameters
    ----------
    model : nn.Module
        The classifier, taking normalised inputs.
    mean, std : sequence of float
        One value per channel (``std > 0``).

    Examples
    --------
    >>> wrapped = NormalizedClassifier(nn.Identity(), mean=[0.5], std=[0.25])
    >>> wrapped(torch.tensor([[[[1.0]]]]))
    tensor([[[[2.]]]])
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t, std_t = _per_channel("mean", mean), _per_channel("std", std)
        if mean_t.numel() != std_t.numel():
            raise AnalysisInputError(
                f"Expected `mean` and `std` to have one value per channel each but got {mean_t.numel()} and "
                f"{std_t.numel()}"
            )
        if bool((std_t <= 0).any()):
            raise AnalysisInputError(f"Expected every `std` value to be > 0 but got {std_t.tolist()}")
        self.model = model
        self.register_buffer("mean", mean_t.reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.reshape(1, -1, 1, 1), persistent=False)

    @property
    def channels(self) -> int:
        """Number of channels the normalisation is for."""
        return int(self.mean.numel())

    def forward(self, inputs: Tensor) -> Tensor:
        """Logits of the normalised inputs."""
        return self.model((inputs - self.mean.to(inputs.dtype)) / self.std.to(inputs.dtype))


def _per_channel(name: str, values: Any) -> Tensor:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise AnalysisInputError(f"Expected `{name}` to be a sequence of numbers but got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise AnalysisInputError(f"Expected `{name}` to be finite numbers, one per channel, but got {values!r}")
    return torch.tensor(out, dtype=torch.float64)  # cast to the inputs' dtype in forward


def _import(model_class: str) -> Any:
    module_name, _, class_name = model_class.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise AnalysisInputError(f"cannot import model class {model_class!r}") from None


def _kwargs(model_kwargs: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(model_kwargs, dict):
        return dict(model_kwargs)
    try:
        value = json.loads(model_kwargs)
    except json.JSONDecodeError as err:
        raise AnalysisInputError(
            f"Expected --model-kwargs to be a JSON object but got {model_kwargs!r}: {err}"
        ) from None
    if not isinstance(value, dict):
        raise AnalysisInputError(f"Expected --model-kwargs to be a JSON object but got {model_kwargs!r}")
    return value


def load_user_model(
    path: str, model_class: str | None = None, model_kwargs: str | dict[str, Any] = "{}", device: str = "cpu"
) -> nn.Module:
    """Load a classifier: a TorchScript file, a ``torch.export`` archive (``.pt2``), or a state dict plus a class.

    State dicts are read with safetensors or ``torch.load(weights_only=True)``, never plain pickle.

    Parameters
    ----------
    path : str
        ``.pt``/``.pth`` TorchScript archive, ``.pt2`` exported program (:func:`torch.export.save`),
        or a ``.safetensors``/``.pt`` state dict. Export programs with a dynamic batch dimension
        (``dynamic_shapes``): the analysis evaluates batches of several sizes.
    model_class : str, optional
        ``"package.module:ClassName"`` (or dotted) for state dicts, e.g.
        ``"torchvision.models:resnet18"``.
    model_kwargs : str or dict
        Keyword arguments for the class (JSON text or a dict), e.g. ``{"num_classes": 10}``.
    device : str
        Where to put the model.

    Examples
    --------
    >>> load_user_model("missing.pt")
    Traceback (most recent call last):
    ...
    captum_pags.analysis.errors.AnalysisInputError: model file 'missing.pt' does not exist
    """
    p = Path(path)
    if not p.is_file():
        raise AnalysisInputError(f"model file {path!r} does not exist")
    if model_class is None and p.suffix == ".pt2":
        try:
            return torch.export.load(str(p)).module().to(device)
        except (RuntimeError, ValueError, OSError) as err:
            raise AnalysisInputError(f"cannot load the exported program {path!r}: {str(err).splitlines()[0]}") from None
    if model_class is None:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)  # TorchScript files stay supported
                return torch.jit.load(str(p), map_location=device).eval()
        except RuntimeError:
            raise AnalysisInputError(
                f"{path!r} is not a TorchScript file; for a state dict also give --model-class"
            ) from None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cls = _import(model_class)
    try:
        model = cls(**_kwargs(model_kwargs))
    except TypeError as err:
        raise AnalysisInputError(f"cannot build {model_class} with --model-kwargs {model_kwargs!r}: {err}") from None
    try:
        state = load_file(p) if p.suffix == ".safetensors" else torch.load(p, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise AnalysisInputError(
            f"cannot load weights from {path!r} into {model_class}: {str(err).splitlines()[0]}"
        ) from None
    return model.to(device).eval()


class ClassifierSpec:
    """How to load the user's classifier: file, class and kwargs, and an optional input normalisation.

    Parameters
    ----------
    path : str
        Model file (see :func:`load_user_model`).
    model_class : str, optional
        Class of a state dict, e.g. ``"torchvision.models:resnet18"``.
    model_kwargs : dict or str
        Keyword arguments of the class (a dict or JSON text).
    mean, std : sequence of float, optional
        Per-channel input normalisation applied inside :class:`NormalizedClassifier`; give both or
        neither.

    Examples
    --------
    >>> spec = ClassifierSpec("m.pt", mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    >>> ClassifierSpec.from_config(spec.to_config()).to_config() == spec.to_config()
    True
    """

    def __init__(
        self,
        path: str,
        model_class: str | None = None,
        model_kwargs: dict[str, Any] | str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.path, self.model_class = str(path), model_class
        self.model_kwargs = _kwargs(model_kwargs or {})
        if (mean is None) != (std is None):
            raise AnalysisInputError("Expected the normalisation `mean` and `std` to be given together but got one")
        self.mean = None if mean is None else [float(v) for v in _per_channel("mean", mean)]
        self.std = None if std is None else [float(v) for v in _per_channel("std", std)]
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise AnalysisInputError(
                    f"Expected `mean` and `std` to have the same number of channels but got {len(self.mean)} and "
                    f"{len(self.std)}"
                )
            if any(s <= 0 for s in self.std):
                raise AnalysisInputError(f"Expected every `std` value to be > 0 but got {self.std}")

    def to_config(self) -> dict[str, Any]:
        """Plain settings; :meth:`from_config` rebuilds the spec."""
        return {
            "path": self.path,
            "model_class": self.model_class,
            "model_kwargs": dict(self.model_kwargs),
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClassifierSpec:
        """Rebuild a spec from :meth:`to_config`'s dict."""
        return cls(**config)

    def check(self) -> None:
        """Refuse a missing file or an unimportable class before any work."""
        if not Path(self.path).is_file():
            raise AnalysisInputError(f"model file {self.path!r} does not exist")
        if self.model_class is not None:
            _import(self.model_class)

    def load(self, device: str | torch.device = "cpu") -> nn.Module:
        """The classifier in eval mode, wrapped in :class:`NormalizedClassifier` when a normalisation is set."""
        model = load_user_model(self.path, self.model_class, self.model_kwargs, device=str(device))
        if self.mean is not None and self.std is not None:
            model = NormalizedClassifier(model, self.mean, self.std).to(device)
        return model

    def __repr__(self) -> str:
        return f"ClassifierSpec({self.to_config()!r})"
