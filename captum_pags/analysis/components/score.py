r"""The score model(s) of the analysis: the shipped one, a diffusers folder, an EDM-style denoiser, or a pair.

The analysis needs two scores at the same noise level: the class-conditional
:math:`\nabla \log p_\sigma(x \mid y)` and the unconditional :math:`\nabla \log p_\sigma(x)`;
their difference is the Bayes score difference. One model with a null label gives both; a
class-conditional model without one can be paired with an unconditional model. With only one of
the two, the measurements that need the other are reported as NaN with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import AnalysisInputError

__all__ = ["SHIPPED_SCORE", "ScoreCapabilities", "ScoreConfigInfo", "ScoreModels", "ScoreSpec", "read_score_config"]

#: ``--score-model shipped``: the score model shipped for ``digits16``.
SHIPPED_SCORE = "shipped"


@dataclass(frozen=True)
class ScoreConfigInfo:
    """What a saved score model's configuration files say, read without loading weights.

    Attributes
    ----------
    sample_size : int or None
        Spatial size the UNet was trained on (``unet/config.json``).
    in_channels : int or None
        Channels of its inputs.
    num_class_embeds : int or None
        Label embeddings (``None``: unconditional).
    null_class : int or None
        Label reserved for "no class" (``score_config.json``), if any.
    """

    sample_size: int | tuple[int, ...] | None
    in_channels: int | None
    num_class_embeds: int | None
    null_class: int | None

    @property
    def num_classes(self) -> int | None:
        """Class labels the model takes (without the null label)."""
        if self.num_class_embeds is None:
            return None
        return self.num_class_embeds - (self.null_class is not None)


def read_score_config(path: str) -> ScoreConfigInfo | None:
    """Read a diffusers score-model folder's configs (``unet/config.json``, ``score_config.json``); None for a file.

    Examples
    --------
    >>> from captum_pags.models.score_unet import DIGITS16_SCORE_WEIGHTS
    >>> info = read_score_config(str(DIGITS16_SCORE_WEIGHTS))
    >>> info.sample_size, info.in_channels, info.num_classes
    (16, 1, 10)
    """
    root = Path(path)
    if not root.is_dir():
        return None
    unet_config = root / "unet" / "config.json"
    if not unet_config.is_file():
        raise AnalysisInputError(
            f"Expected the score-model folder {path!r} to hold unet/config.json and scheduler/ (a saved "
            "DDPMPipeline or DiffusersScore) but unet/config.json is missing"
        )
    if not (root / "scheduler" / "scheduler_config.json").is_file():
        raise AnalysisInputError(f"Expected the score-model folder {path!r} to hold scheduler/scheduler_config.json")
    try:
        cfg = json.loads(unet_config.read_text())
        settings_file = root / "score_config.json"
        settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    except json.JSONDecodeError as err:
        raise AnalysisInputError(f"cannot read the configs of {path!r}: {err}") from None
    size = cfg.get("sample_size")
    return ScoreConfigInfo(
        tuple(size) if isinstance(size, list) else size,
        cfg.get("in_channels"),
        cfg.get("num_class_embeds"),
        settings.get("null_class"),
    )


def _quiet_diffusers() -> None:
    """Loading must not print library log lines or progress bars around the command's own output."""
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()


def _load(path: str, unconditional: str | None, data_range: tuple[float, float], device: str, kwargs: dict) -> Any:
    """Load through :func:`~captum_pags.scores.load_score_model` (a pair when ``unconditional`` is given)."""
    from ...scores import load_score_model

    _quiet_diffusers()
    try:
        return load_score_model(path, unconditional=unconditional, data_range=data_range, device=device, **kwargs)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        raise AnalysisInputError(f"cannot load the score model {path!r}: {str(err).splitlines()[0]}") from None


@dataclass(frozen=True)
class ScoreCapabilities:
    """Which scores a (pair of) score model(s) gives, known before loading weights.

    Attributes
    ----------
    has_conditional, has_unconditional : bool
        Whether class-conditional / unconditional scores are available.
    num_classes : int or None
        Classes of the conditional model.
    """

    has_conditional: bool
    has_unconditional: bool
    num_classes: int | None


class ScoreModels:
    """The conditional and unconditional scores the analysis needs, from one model or a pair.

    Parameters
    ----------
    model : ScoreModel, optional
        A class-conditional model (with or without a null label) or an unconditional one.
    unconditional : ScoreModel, optional
        An unconditional model paired with a class-conditional ``model`` without a null label
        (a :class:`~captum_pags.scores.ScorePair`: both evaluated at one noise level).

    Examples
    --------
    >>> from captum_pags.models import load_digits16_score_model
    >>> scores = ScoreModels(load_digits16_score_model())
    >>> scores.has_conditional, scores.has_unconditional, scores.missing()
    (True, True, [])
    """

    def __init__(self, model: Any = None, unconditional: Any = None) -> None:
        if model is not None and unconditional is not None:
            from ...scores import ScorePair

            try:
                model = ScorePair(model, unconditional)
            except (ValueError, TypeError) as err:
                raise AnalysisInputError(f"cannot pair the score models: {err}") from None
        self.model = model if model is not None else unconditional

    @property
    def has_conditional(self) -> bool:
        """Whether class-conditional scores are available."""
        return self.model is not None and self.model.supports_conditional

    @property
    def has_unconditional(self) -> bool:
        """Whether unconditional scores are available."""
        return self.model is not None and self.model.supports_unconditional

    @property
    def unconditional_source(self) -> Any:
        """The score model whose ``target=None`` score is unconditional, or None."""
        return self.model if self.has_unconditional else None

    @property
    def num_classes(self) -> int | None:
        """Classes of the conditional model."""
        return None if self.model is None else self.model.num_classes

    def missing(self) -> list[str]:
        """Sentences naming the measurements that cannot be made with these models (empty: all can)."""
        if self.model is None:
            return ["no score model: perceptual alignment is NaN (give --score-model)"]
        if not self.has_conditional:
            return [
                "the score model is unconditional: alignment_conditional and alignment_bayes are NaN "
                "(they need class-conditional scores)"
            ]
        if not self.has_unconditional:
            return [
                "the score model is class-conditional without a null label: alignment_bayes is NaN (the Bayes "
                "score difference needs an unconditional score; give --unconditional-score-model)"
            ]
        return []

    def check_sigma(self, sigma: float) -> float:
        """Validate the noise level; returns the level actually evaluated (one level for a pair)."""
        if self.model is None:
            return float(sigma)
        return float(self.model.resolve_sigma(sigma))

    def conditional(self, x: Tensor, sigma: float, y: Tensor) -> Tensor:
        r""":math:`\nabla \log p_\sigma(x \mid y)` of a batch."""
        with torch.no_grad():
            return self.model.score(x, sigma, y)

    def bayes(self, x: Tensor, sigma: float, y: Tensor, conditional: Tensor | None = None) -> Tensor:
        r""":math:`\nabla \log p_\sigma(x \mid y) - \nabla \log p_\sigma(x)` of a batch."""
        cond = self.conditional(x, sigma, y) if conditional is None else conditional
        with torch.no_grad():
            return cond - self.model.score(x, sigma)


class ScoreSpec:
    """How to load the score model(s): ``shipped``, a diffusers folder or a denoiser file, plus an optional pair.

    Parameters
    ----------
    path : str, optional
        ``"shipped"`` (the ``digits16`` model), a folder written by ``DDPMPipeline.save_pretrained``
        or :meth:`~captum_pags.scores.DiffusersScore.save_pretrained` (``unet/`` + ``scheduler/``),
        or an EDM-style denoiser ``D(x, sigma[, class_labels])`` saved as TorchScript (``.pt``) or
        ``torch.export`` (``.pt2``); None for no score model.
    unconditional : str, optional
        An unconditional model (same forms) paired with a conditional model without a null label.
    data_range : tuple of float
        Range of the analysed data (mapped onto the model's range).
    kwargs : dict, optional
        Further settings of the wrapper (e.g. ``null_class``; for a denoiser ``num_classes``,
        ``one_hot_labels``, ``model_range``).

    Examples
    --------
    >>> spec = ScoreSpec("shipped")
    >>> ScoreSpec.from_config(spec.to_config()).info().sample_size
    16
    """

    def __init__(
        self,
        path: str | None = None,
        unconditional: str | None = None,
        data_range: Any = (0.0, 1.0),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        if path is None and unconditional is not None:
            path, unconditional = unconditional, None
        self.path, self.unconditional = path, unconditional
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.kwargs = dict(kwargs or {})

    def to_config(self) -> dict[str, Any]:
        """Plain settings; :meth:`from_config` rebuilds the spec."""
        return {
            "path": self.path,
            "unconditional": self.unconditional,
            "data_range": list(self.data_range),
            "kwargs": dict(self.kwargs),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScoreSpec:
        """Rebuild a spec from :meth:`to_config`'s dict."""
        return cls(**config)

    def _info(self, path: str | None) -> ScoreConfigInfo | None:
        if path is None:
            return None
        if path == SHIPPED_SCORE:
            from ...models.score_unet import DIGITS16_SCORE_WEIGHTS

            return read_score_config(str(DIGITS16_SCORE_WEIGHTS))
        if not Path(path).exists():
            raise AnalysisInputError(f"score model {path!r} does not exist (a diffusers folder or a denoiser file)")
        return read_score_config(path)

    def info(self) -> ScoreConfigInfo | None:
        """The main model's configs (None for a denoiser file or no model), read without weights."""
        return self._info(self.path)

    def unconditional_info(self) -> ScoreConfigInfo | None:
        """The paired unconditional model's configs, if a folder."""
        return self._info(self.unconditional)

    def capabilities(self) -> ScoreCapabilities | None:
        """What the model(s) can give, read from their configs; None when a denoiser file leaves it unknown."""
        if self.path is None:
            return None
        info = self.info()
        if info is None:
            return None
        paired = self.unconditional is not None
        conditional = info.num_class_embeds is not None
        unconditional = paired or not conditional or info.null_class is not None
        return ScoreCapabilities(conditional, unconditional, info.num_classes)

    def load(self, device: str | torch.device = "cpu") -> ScoreModels:
        """Load the model(s) (local files only, weights read safely)."""
        if self.path is None:
            return ScoreModels()
        return ScoreModels(_load(self.path, self.unconditional, self.data_range, str(device), self.kwargs))

    def __repr__(self) -> str:
        return f"ScoreSpec({self.to_config()!r})"
