"""Scores from diffusers models: a UNet with a DDPM/DDIM-family scheduler, loaded without network."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from .._kernel._model_state import preserved_state
from .._kernel._validation import check_choice
from ._convert import (
    AffineUnits,
    check_null_class,
    check_range,
    config_value,
    embedding_labels,
    model_device_dtype,
    output_tensor,
)
from ._files import SCORE_CONFIG_NAME, load_diffusers_parts, save_diffusers_parts
from .base import ScoreModel, TargetLike

__all__ = ["SCORE_CONFIG_NAME", "DiffusersScore", "NoiseLevel"]

PredictionType = Literal["epsilon", "v_prediction", "sample"]
TimestepRule = Literal["nearest", "interpolate"]
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction", "sample")
TIMESTEP_RULES: tuple[str, ...] = ("nearest", "interpolate")
_CONFIG_KEYS = ("data_range", "model_range", "null_class", "timestep_rule", "prediction_type")
_LEARNED_VARIANCE = ("learned", "learned_range")


@dataclass(frozen=True)
class NoiseLevel:
    r"""Where a requested noise level lands on a diffusion model's schedule.

    Attributes
    ----------
    sigma : float
        Noise standard deviation actually evaluated, in the user's data units.
    model_sigma : float
        The same in the model's units, :math:`\sigma_t`.
    timestep : float
        Timestep passed to the model (a whole number for ``timestep_rule="nearest"``).
    alpha_cumprod : float
        :math:`\bar\alpha_t = 1 / (1 + \sigma_t^2)`.

    Examples
    --------
    >>> from captum_pags.models import load_digits16_score_model
    >>> level = load_digits16_score_model().noise_level(0.25)
    >>> round(level.model_sigma / level.sigma, 6)  # [0, 1] data in a model trained on [-1, 1]
    2.0
    """

    sigma: float
    model_sigma: float
    timestep: float
    alpha_cumprod: float


class DiffusersScore(ScoreModel):
    r"""Score of a diffusers noise-prediction model (``UNet2DModel`` and a DDPM/DDIM-family scheduler).

    A variance-preserving model sees :math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,
    \varepsilon`, i.e. :math:`x_t / \sqrt{\bar\alpha_t}` is the data smoothed by Gaussian noise of
    std :math:`\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}`. With the affine map
    :math:`x_m = a x + b` from the user's ``data_range`` to the model's ``model_range``:

    .. math::

        \sigma_m = a\,\sigma \approx \sigma_t, \qquad x_t = \sqrt{\bar\alpha_t}\, x_m, \qquad
        \nabla_x \log p_\sigma(x \mid y) = -\,a\, \frac{\hat\varepsilon(x_t, t, y)}{\sigma_t}.

    (Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020; the noise
    prediction is a scaled score, Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021.) ``v_prediction`` and ``sample`` outputs are turned
    into :math:`\hat\varepsilon` first:
    :math:`\hat\varepsilon = \sqrt{\bar\alpha_t}\,\hat v + \sqrt{1-\bar\alpha_t}\,x_t` and
    :math:`\hat\varepsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0)/\sqrt{1-\bar\alpha_t}`.

    **Choice of timestep.** ``timestep_rule="nearest"`` (default) evaluates the trained timestep
    whose :math:`\sigma_t` is nearest to :math:`\sigma_m` in :math:`\log\sigma` and returns the
    score *at that* :math:`\sigma_t` (see :meth:`resolve_sigma` / :meth:`noise_level`; with 1000
    DDPM steps neighbouring levels are about 1% apart at :math:`\sigma_m = 0.5`).
    ``"interpolate"`` evaluates exactly :math:`\sigma_m`, passing the fractional timestep that
    interpolates :math:`\log\sigma_t` linearly between its two neighbours (as k-diffusion does);
    it needs a model with a continuous time embedding (diffusers' positional or Fourier ones are).

    Parameters
    ----------
    unet : torch.nn.Module
        Called as ``unet(x_t, timesteps)`` or ``unet(x_t, timesteps, class_labels=labels)`` with
        ``x_t`` of shape ``(N, C, H, W)`` and ``timesteps`` of shape ``(N,)``; returns a tensor, an
        output with ``.sample`` (diffusers) or a tuple. ``unet.config`` (if any) supplies
        ``in_channels`` and ``num_class_embeds``.
    scheduler : diffusers scheduler
        Anything with ``alphas_cumprod`` (DDPM, DDIM, PNDM, DPM-Solver, Euler, ...) and
        ``config.prediction_type``.
    data_range : tuple of float
        Range of the user's data, mapped onto ``model_range`` (default: images in [0, 1]).
    null_class : int, optional
        Label embedding the model was trained with for "no class" (label dropout). It gives the
        unconditional score; user class ``y`` is passed as ``y`` below it and ``y + 1`` above it,
        so with the null label last the user's labels are unchanged.
    model_range : tuple of float
        Range the model was trained on (diffusers convention: [-1, 1]).
    timestep_rule : {"nearest", "interpolate"}
        How a noise level is turned into a timestep (see above).
    prediction_type : {"epsilon", "v_prediction", "sample"}, optional
        Overrides ``scheduler.config.prediction_type``.

    Examples
    --------
    >>> from diffusers import DDPMScheduler, UNet2DModel
    >>> unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
    ...                    norm_num_groups=4, layers_per_block=1, down_block_types=("DownBlock2D",) * 2,
    ...                    up_block_types=("UpBlock2D",) * 2)
    >>> model = DiffusersScore(unet, DDPMScheduler())
    >>> level = model.noise_level(0.25)
    >>> level.timestep, round(level.sigma, 4)
    (144.0, 0.2497)
    >>> model.score(torch.rand(2, 1, 8, 8), sigma=0.25).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        unet: Any,
        scheduler: Any,
        data_range: tuple[float, float] = (0.0, 1.0),
        null_class: int | None = None,
        *,
        model_range: tuple[float, float] = (-1.0, 1.0),
        timestep_rule: TimestepRule = "nearest",
        prediction_type: PredictionType | None = None,
    ) -> None:
        if not callable(unet):
            raise TypeError(f"Expected `unet` to be a callable model but got {type(unet).__name__}")
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        if not isinstance(alphas_cumprod, Tensor):
            raise TypeError(
                "Expected `scheduler` to be a DDPM/DDIM-family scheduler with an `alphas_cumprod` tensor "
                f"but got {type(scheduler).__name__}"
            )
        self.unet = unet
        self.scheduler = scheduler
        self.units = AffineUnits(check_range("data_range", data_range), check_range("model_range", model_range))
        self.timestep_rule: str = check_choice("timestep_rule", timestep_rule, TIMESTEP_RULES)
        if timestep_rule == "interpolate" and config_value(unet, "time_embedding_type") == "learned":
            raise ValueError(
                "Expected `timestep_rule='nearest'` for a model with a learned (table) time embedding, "
                "which cannot take fractional timesteps, but got 'interpolate'"
            )
        if prediction_type is None:
            prediction_type = config_value(scheduler, "prediction_type", "epsilon")
        self.prediction_type: str = check_choice("prediction_type", prediction_type, PREDICTION_TYPES)

        class_embed_type = config_value(unet, "class_embed_type")
        if class_embed_type is not None:
            raise ValueError(
                "Expected a model whose class labels index an embedding table (`num_class_embeds`) but got "
                f"class_embed_type={class_embed_type!r}"
            )
        self.num_class_embeds: int | None = config_value(unet, "num_class_embeds")
        self.null_class = check_null_class(null_class, self.num_class_embeds)
        if self.num_class_embeds is not None:
            self.num_classes = self.num_class_embeds - (self.null_class is not None)
            self.supports_unconditional = self.null_class is not None
        self.in_channels: int | None = config_value(unet, "in_channels")
        self.sample_size: tuple[int, int] | None = _sample_size(config_value(unet, "sample_size"))
        if self.in_channels is not None and self.sample_size is not None:
            self.input_shape = torch.Size((self.in_channels, *self.sample_size))
        self._learned_variance = config_value(scheduler, "variance_type") in _LEARNED_VARIANCE
        self._set_schedule(alphas_cumprod)

    def _set_schedule(self, alphas_cumprod: Tensor) -> None:
        abar = alphas_cumprod.detach().to("cpu", torch.float64).reshape(-1)
        usable = (abar > 0) & (abar < 1)
        if int(usable.sum()) < 2:
            raise ValueError("Expected `scheduler.alphas_cumprod` to hold at least two values in (0, 1)")
        timesteps = torch.arange(abar.numel(), dtype=torch.float64)[usable]
        abar = abar[usable]
        log_sigmas = 0.5 * (torch.log1p(-abar) - torch.log(abar))
        if bool((log_sigmas.diff() <= 0).any()):
            raise ValueError("Expected `scheduler.alphas_cumprod` to be strictly decreasing over its timesteps")
        self._timesteps, self._alphas_cumprod, self._log_sigmas = timesteps, abar, log_sigmas

    @property
    def data_range(self) -> tuple[float, float]:  # type: ignore[override]
        """Range of the user's data that is mapped onto the model's ``model_range``."""
        return self.units.data_range

    def replace(self, **changes: Any) -> DiffusersScore:
        """A wrapper of the same UNet and scheduler with some settings changed (see :meth:`to_config`).

        Examples
        --------
        >>> from captum_pags.models import load_digits16_score_model
        >>> model = load_digits16_score_model().replace(timestep_rule="interpolate")
        >>> model.resolve_sigma(0.25)
        0.25
        """
        return type(self)(self.unet, self.scheduler, **{**self.to_config(), **changes})

    # ------------------------------------------------------------------ noise levels
    @property
    def sigma_range(self) -> tuple[float, float]:
        """Noise levels (user units) the schedule covers: from its first to its last timestep's σ_t."""
        a = self.units.scale
        return (math.exp(float(self._log_sigmas[0])) / a, math.exp(float(self._log_sigmas[-1])) / a)

    def noise_level(self, sigma: float) -> NoiseLevel:
        """The timestep and noise level evaluated for a requested ``sigma`` (user units).

        Parameters
        ----------
        sigma : float
            Requested noise level, within :attr:`sigma_range`.

        Returns
        -------
        NoiseLevel
            ``sigma`` (user units) and ``model_sigma`` actually used, ``timestep`` and ``alpha_cumprod``.
        """
        sigma = self.check_sigma(sigma)
        log_sigma = math.log(sigma * self.units.scale)
        if self.timestep_rule == "nearest":
            i = int(torch.argmin((self._log_sigmas - log_sigma).abs()))
            model_sigma = math.exp(float(self._log_sigmas[i]))
            return NoiseLevel(
                sigma=model_sigma / self.units.scale,
                model_sigma=model_sigma,
                timestep=float(self._timesteps[i]),
                alpha_cumprod=float(self._alphas_cumprod[i]),
            )
        hi = int(torch.searchsorted(self._log_sigmas, torch.tensor([log_sigma], dtype=torch.float64)))
        hi = min(max(hi, 1), self._log_sigmas.numel() - 1)
        lo_ls, hi_ls = float(self._log_sigmas[hi - 1]), float(self._log_sigmas[hi])
        w = (log_sigma - lo_ls) / (hi_ls - lo_ls)
        timestep = (1 - w) * float(self._timesteps[hi - 1]) + w * float(self._timesteps[hi])
        model_sigma = sigma * self.units.scale
        return NoiseLevel(
            sigma=sigma, model_sigma=model_sigma, timestep=timestep, alpha_cumprod=1.0 / (1.0 + model_sigma**2)
        )

    def resolve_sigma(self, sigma: Any) -> float:
        """The noise level (user units) actually evaluated for ``sigma`` (see :meth:`noise_level`)."""
        return self.noise_level(sigma).sigma

    def _shape_advice(self) -> str:
        return (
            f"the UNet's config says in_channels={self.in_channels}, sample_size={self.sample_size} (the size it was "
            "trained at); resize the data or use a score model trained at this size"
        )

    def at_exact_sigma(self, sigma: float) -> ScoreModel | None:
        """Self if ``sigma`` is on the grid, else a ``timestep_rule="interpolate"`` view if the UNet allows it."""
        exact = super().at_exact_sigma(sigma)
        if exact is not None or self.timestep_rule == "interpolate":
            return exact
        if config_value(self.unet, "time_embedding_type") == "learned":
            return None
        return self.replace(timestep_rule="interpolate").at_exact_sigma(sigma)

    # ------------------------------------------------------------------ evaluation
    def check_call(self, inputs: Any, sigma: Any, target: TargetLike) -> tuple[float, Tensor | None]:
        """Validate as :meth:`ScoreModel.check_call`, and the shape against the UNet's config.

        The channel count must be the UNet's ``in_channels`` and the spatial size its
        ``sample_size`` (the size it was trained at), read from ``unet.config``.
        """
        if isinstance(inputs, Tensor):
            c = self.in_channels
            if c is not None and (inputs.dim() < 2 or inputs.shape[1] != c):
                raise ValueError(
                    f"Expected `inputs` to have {c} channel(s) (the model's in_channels), shaped (N, {c}, ...), "
                    f"but got shape {tuple(inputs.shape)}"
                )
            size = self.sample_size
            if size is not None and tuple(inputs.shape[2:]) != size:
                raise ValueError(
                    f"Expected `inputs` of spatial size {size[0]}x{size[1]} (the UNet's sample_size, the size it "
                    f"was trained at) but got shape {tuple(inputs.shape)}; resize the data or use a score model "
                    "trained at this size"
                )
        return super().check_call(inputs, sigma, target)

    def _epsilon(self, out: Tensor, x_t: Tensor, level: NoiseLevel) -> Tensor:
        sqrt_ab, sqrt_1m = math.sqrt(level.alpha_cumprod), math.sqrt(1.0 - level.alpha_cumprod)
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return sqrt_ab * out + sqrt_1m * x_t
        return (x_t - sqrt_ab * out) / sqrt_1m

    def _score(self, inputs: Tensor, sigma: float, target: Tensor | None) -> Tensor:
        device, _ = model_device_dtype(self.unet, inputs)
        labels = None
        if self.num_class_embeds is not None:
            labels = embedding_labels(target, self.null_class, inputs.shape[0], device)
        return self._evaluate(inputs, sigma, labels)

    def _bayes(self, inputs: Tensor, sigma: float, target: Tensor) -> Tensor:
        """Conditional and null-label predictions in one UNet call on ``2n`` examples."""
        n = inputs.shape[0]
        device, _ = model_device_dtype(self.unet, inputs)
        labels = torch.cat(
            [embedding_labels(target, self.null_class, n, device), embedding_labels(None, self.null_class, n, device)]
        )
        both = self._evaluate(torch.cat([inputs, inputs]), sigma, labels)
        return both[:n] - both[n:]

    def _evaluate(self, inputs: Tensor, sigma: float, labels: Tensor | None) -> Tensor:
        """The score for model label ids ``labels`` (already mapped around the null label)."""
        level = self.noise_level(sigma)
        device, dtype = model_device_dtype(self.unet, inputs)
        x_t = math.sqrt(level.alpha_cumprod) * self.units.to_model(inputs.to(device=device, dtype=dtype))
        n = x_t.shape[0]
        if self.timestep_rule == "nearest":
            timesteps = torch.full((n,), int(level.timestep), dtype=torch.long, device=device)
        else:
            t_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # a fractional t needs the digits
            timesteps = torch.full((n,), level.timestep, dtype=t_dtype, device=device)
        kwargs = {} if labels is None else {"class_labels": labels}
        with preserved_state(self.unet, train=False, requires_grad=False):
            out = output_tensor(self.unet(x_t, timesteps, **kwargs), "unet")
        if out.shape != x_t.shape and self._learned_variance and out.shape[1] == 2 * x_t.shape[1]:
            out = out[:, : x_t.shape[1]]  # the other half is the learned variance
        if out.shape != x_t.shape:
            raise ValueError(
                f"Expected `unet` to return a prediction shaped like its input {tuple(x_t.shape)} "
                f"but got {tuple(out.shape)}"
            )
        eps = self._epsilon(out, x_t, level)
        score = eps * (-self.units.scale / level.model_sigma)
        return score.to(device=inputs.device, dtype=inputs.dtype)

    # ------------------------------------------------------------------ configuration and files
    def to_config(self) -> dict[str, Any]:
        """The wrapper's settings as a JSON-serialisable dict (``DiffusersScore(unet, scheduler, **config)``)."""
        return {
            **self.units.to_config(),
            "null_class": self.null_class,
            "timestep_rule": self.timestep_rule,
            "prediction_type": self.prediction_type,
        }

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
        return f"{type(self).__name__}({type(self.unet).__name__}, {type(self.scheduler).__name__}, {settings})"

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the model, the scheduler and the wrapper's settings to a local directory.

        The layout is that of a diffusers pipeline (``DDPMPipeline.save_pretrained`` writes the
        same folders), plus this wrapper's settings::

            path/unet/config.json, path/unet/diffusion_pytorch_model.safetensors
            path/scheduler/scheduler_config.json
            path/score_config.json

        Files are written to a temporary folder first and moved into place one by one
        (:func:`os.replace`), so an interrupted save never leaves a half-written file.

        Parameters
        ----------
        path : str or os.PathLike
            Directory to write (created if needed).
        """
        save_diffusers_parts(self.unet, self.scheduler, self.to_config(), path)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, device: str | torch.device | None = None, **overrides: Any
    ) -> DiffusersScore:
        """Load a score model from a local directory, never reaching the network.

        Reads any of these local layouts, all with ``unet/`` and ``scheduler/`` folders:

        - the one written by :meth:`save_pretrained` (with ``score_config.json``);
        - a saved diffusers pipeline (``DDPMPipeline``/``DDIMPipeline.save_pretrained``, with
          ``model_index.json``);
        - a plain ``unet/`` + ``scheduler/`` folder (e.g. ``unet.save_pretrained(path / "unet")``
          and ``scheduler.save_pretrained(path / "scheduler")``).

        The model and scheduler classes are the ones named in their configs (``_class_name``),
        loaded with ``local_files_only=True``. Settings come from ``score_config.json`` when present, then
        from ``overrides``.

        Parameters
        ----------
        path : str or os.PathLike
            Local directory.
        device : str or torch.device, optional
            Where to put the model (default: CPU).
        **overrides
            Any of ``data_range``, ``null_class``, ``model_range``, ``timestep_rule``, ``prediction_type``.

        Returns
        -------
        DiffusersScore
            With the model in eval mode.
        """
        unet, scheduler, settings = load_diffusers_parts(path, overrides, _CONFIG_KEYS)
        if device is not None:
            unet = unet.to(device)
        return cls(unet.eval(), scheduler, **settings)


def _sample_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    return None
