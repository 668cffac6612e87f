"""One loader for the score models users hold: a diffusers folder, a saved denoiser, or the shipped model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ._convert import check_range
from .base import ScoreModel
from .denoiser import DenoiserScore
from .diffusers import DiffusersScore
from .pair import ScorePair

__all__ = ["SHIPPED_SCORE_MODELS", "load_score_model"]

#: Names of the score models that ship with the package, and their folders (``save_pretrained`` layout).
SHIPPED_SCORE_MODELS: dict[str, Path] = {
    "digits16": Path(__file__).resolve().parents[1] / "models" / "weights" / "digits16_score",
}
_ALIASES = {"shipped": "digits16"}

ScoreSource = str | os.PathLike | ScoreModel


def load_score_model(
    path: ScoreSource,
    *,
    unconditional: ScoreSource | None = None,
    data_range: tuple[float, float] | None = None,
    device: str | torch.device | None = None,
    unconditional_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ScoreModel:
    """Load a score model from what users hold, locally (nothing is downloaded).

    ``path`` may be

    - a directory: a saved diffusers pipeline (``DDPMPipeline``/``DDIMPipeline``), a plain
      ``unet/`` + ``scheduler/`` folder or one written by :meth:`DiffusersScore.save_pretrained`
      (:meth:`DiffusersScore.from_pretrained`);
    - a file: an EDM-style denoiser ``D(x, sigma[, class_labels])`` saved with
      :func:`torch.jit.save` or :func:`torch.export.save` (:meth:`DenoiserScore.load`);
    - ``"shipped"`` or ``"digits16"``: the shipped ``digits16`` model;
    - a :class:`ScoreModel`, returned as it is.

    With ``unconditional`` (any of the same), the result is a :class:`ScorePair`: conditional
    scores from ``path``, unconditional ones from ``unconditional``, both at one noise level.

    Parameters
    ----------
    path : str, os.PathLike or ScoreModel
        The (class-conditional) score model.
    unconditional : str, os.PathLike or ScoreModel, optional
        An unconditional model of the same data, for models without a null label.
    data_range : tuple of float, optional
        Range of the user's data, mapped onto the model's range. Default: for a diffusers folder
        the ``data_range`` saved in its ``score_config.json``, else images in [0, 1]. Given, it
        wins over the saved setting (it describes your data). For a denoiser file without a
        ``model_range`` keyword the denoiser is taken to work in these units.
    device : str or torch.device, optional
        Where to put the networks.
    unconditional_kwargs : dict, optional
        Settings for loading ``unconditional`` (as ``kwargs`` for ``path``).
    **kwargs
        Settings of :meth:`DiffusersScore.from_pretrained` (``null_class``, ``model_range``,
        ``timestep_rule``, ``prediction_type``) or of :class:`DenoiserScore` (``num_classes``,
        ``null_class``, ``one_hot_labels``, ``model_range``, ``sigma_range``, ``input_shape``).

    Returns
    -------
    ScoreModel
        A :class:`DiffusersScore`, :class:`DenoiserScore` or :class:`ScorePair`.

    Examples
    --------
    >>> model = load_score_model("shipped")
    >>> model.supports_bayes, model.num_classes, tuple(model.input_shape)
    (True, 10, (1, 16, 16))
    """
    model = _load_one("path", path, data_range, device, kwargs)
    if unconditional is None:
        return model
    other = _load_one("unconditional", unconditional, data_range, device, dict(unconditional_kwargs or {}))
    return ScorePair(model, other)


def _load_one(name: str, source: ScoreSource, data_range: Any, device: Any, kwargs: dict[str, Any]) -> ScoreModel:
    if isinstance(source, ScoreModel):
        if kwargs:
            raise ValueError(f"Expected no loading settings for a `{name}` that is already a ScoreModel")
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"Expected `{name}` to be a path, 'shipped' or a ScoreModel but got {type(source).__name__}")
    units = {} if data_range is None else {"data_range": check_range("data_range", data_range)}
    p = Path(source)
    if not p.exists() and isinstance(source, str) and _ALIASES.get(source, source) in SHIPPED_SCORE_MODELS:
        folder = SHIPPED_SCORE_MODELS[_ALIASES.get(source, source)]
        if not folder.is_dir():
            raise FileNotFoundError(f"The shipped score weights are missing from {folder.name}; reinstall captum_pags")
        return DiffusersScore.from_pretrained(folder, device=device, **units, **kwargs)
    if p.is_dir():
        return DiffusersScore.from_pretrained(p, device=device, **units, **kwargs)
    if p.is_file():
        data_units = units.get("data_range", (0.0, 1.0))
        model_range = kwargs.pop("model_range", data_units)
        return DenoiserScore.load(p, device=device, data_range=data_units, model_range=model_range, **kwargs)
    names = ", ".join(repr(n) for n in (*_ALIASES, *SHIPPED_SCORE_MODELS))
    raise ValueError(
        f"Expected `{name}` to be a diffusers directory, a TorchScript/torch.export denoiser file or one of "
        f"{names} but {str(source)!r} does not exist"
    )
