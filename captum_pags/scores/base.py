"""The :class:`ScoreModel` interface: scores of Gaussian-smoothed data densities."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._kernel._tensors import chunked_map
from .._kernel._validation import check_batch, check_choice, check_int, check_positive, check_tensor
from ._inputs import LOW_PRECISION, TargetLike, cast_result, check_has_data, format_target, promote_inputs

ScoreKind = Literal["conditional", "unconditional", "bayes"]
#: The three score maps a model may give (see :meth:`ScoreModel.check_supports`).
SCORE_KINDS: tuple[str, ...] = ("conditional", "unconditional", "bayes")
#: How far (in data-range widths) inputs may stray outside a learned model's ``data_range``.
RANGE_SLACK = 1.0
#: How many noise standard deviations inputs may stray beyond that.
RANGE_SIGMAS = 6.0

__all__ = ["SCORE_KINDS", "ScoreKind", "ScoreModel", "TargetLike", "check_has_data", "format_target", "promote_inputs"]


class ScoreModel(ABC):
    r"""Score of the data density smoothed by Gaussian noise of standard deviation :math:`\sigma`.

    .. math::

        s_\sigma(x) = \nabla_x \log p_\sigma(x), \qquad
        s_\sigma(x, y) = \nabla_x \log p_\sigma(x \mid y), \qquad
        p_\sigma = p * \mathcal{N}(0, \sigma^2 I).

    Subclasses implement the hook :meth:`_score` for a validated batch; callers use :meth:`score`
    (or, inside their own transforms, :meth:`check_call` once and then :meth:`raw_score`).
    ``sigma`` is always in the user's data units. Tweedie's formula links the score to the
    optimal denoiser (:meth:`denoise`):
    :math:`D(x, \sigma) = \mathbb{E}[x_0 \mid x] = x + \sigma^2 s_\sigma(x)`.

    Integer inputs are promoted to floats (never truncated); ``float16``/``bfloat16`` inputs are
    evaluated in ``float32`` and the score is returned in the input dtype (a score too large for
    it is refused, never returned as ``inf``).

    Attributes
    ----------
    num_classes : int or None
        Number of classes for conditional scores; ``None`` for an unconditional model.
    supports_unconditional : bool
        Whether ``target=None`` (the unconditional score) is available. With
        :attr:`supports_conditional` and :attr:`supports_bayes` it says what the model can give;
        :meth:`check_supports` refuses the rest, naming what to supply.
    input_shape : torch.Size or None
        Per-example input shape, if fixed (checked on every call, before any work).
    data_range : tuple of float or None
        Range of the data the model was trained on, in the user's units, if known. Inputs far
        outside it are refused (see :meth:`check_call`).

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
    data_range: tuple[float, float] | None = None
    #: Whether ``sigma = 0`` is a valid noise level (exact densities allow it).
    allows_zero_sigma: bool = False

    # ------------------------------------------------------------------ capabilities
    @property
    def supports_conditional(self) -> bool:
        r"""Whether class-conditional scores :math:`\nabla \log p_\sigma(x \mid y)` are available."""
        return self.num_classes is not None

    @property
    def supports_bayes(self) -> bool:
        """Whether the Bayes score difference (conditional minus unconditional) is available."""
        return self.supports_conditional and self.supports_unconditional

    def check_supports(self, kind: ScoreKind, *, name: str = "score") -> None:
        """Raise a :class:`ValueError` saying what to supply if this model cannot give ``kind``.

        Parameters
        ----------
        kind : {"conditional", "unconditional", "bayes"}
            The score map wanted.
        name : str
            The caller's argument that asked for it (named in the message).

        Examples
        --------
        >>> from captum_pags.scores import GaussianMixtureScore
        >>> GaussianMixtureScore(torch.zeros(2, 1), torch.eye(1)).check_supports("bayes")
        """
        check_choice(name, kind, SCORE_KINDS)
        if kind != "unconditional" and not self.supports_conditional:
            raise ValueError(
                f"Expected a class-conditional `score_model` for {name}={kind!r} but {type(self).__name__} is "
                "unconditional (no class labels); pass a class-conditional model as well, e.g. "
                "`ScorePair(conditional, unconditional)` or `load_score_model(conditional_path, unconditional=...)`"
            )
        if kind != "conditional" and not self.supports_unconditional:
            raise ValueError(
                f"Expected a `score_model` with unconditional scores for {name}={kind!r} but "
                f"{type(self).__name__} is class-conditional without a null label; pass an unconditional "
                "model as well (`unconditional=`), e.g. `ScorePair(conditional, unconditional)`"
            )

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

    def check_fit(
        self,
        *,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        data_range: tuple[float, float] | None = None,
    ) -> None:
        """Refuse, before any work, data or a classifier that do not fit this model (read from configs).

        Parameters
        ----------
        input_shape : sequence of int, optional
            Per-example shape of the data, e.g. ``(3, 32, 32)``; must equal :attr:`input_shape`
            when the model has one.
        num_classes : int, optional
            Number of classes of the classifier to compare with; must equal :attr:`num_classes`
            of a class-conditional model.
        data_range : tuple of float, optional
            Range of the data; must equal :attr:`data_range` when the model knows its own.

        Examples
        --------
        >>> from captum_pags.scores import GaussianMixtureScore
        >>> mixture = GaussianMixtureScore(torch.zeros(10, 4), torch.eye(4))
        >>> mixture.check_fit(input_shape=(4,), num_classes=10)
        >>> mixture.check_fit(num_classes=1000)
        Traceback (most recent call last):
        ...
        ValueError: Expected a classifier with 10 classes (the score model's) but got num_classes=1000
        """
        if input_shape is not None and self.input_shape is not None:
            if tuple(input_shape) != tuple(self.input_shape):
                raise ValueError(
                    f"Expected data of per-example shape {tuple(self.input_shape)} for this score model but got "
                    f"input_shape={tuple(input_shape)}; {self._shape_advice()}"
                )
        if num_classes is not None and self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(
                f"Expected a classifier with {self.num_classes} classes (the score model's) but got "
                f"num_classes={num_classes}"
            )
        if data_range is not None and self.data_range is not None:
            low, high = (float(v) for v in data_range)
            if not (math.isclose(low, self.data_range[0], abs_tol=1e-9) and math.isclose(high, self.data_range[1])):
                raise ValueError(
                    f"Expected data in the score model's data_range {tuple(self.data_range)} but got "
                    f"data_range={(low, high)}; rescale the data or state the data's range when building the "
                    "score model (`data_range=`)"
                )

    def _shape_advice(self) -> str:
        return "resize the data or use a score model built for this shape"

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

    def at_exact_sigma(self, sigma: float) -> ScoreModel | None:
        """A score model that evaluates exactly ``sigma`` (this one or a view of it), or ``None`` if none can.

        :class:`~captum_pags.scores.ScorePair` uses it to evaluate two models at one common noise
        level. By default: ``self`` when :meth:`resolve_sigma` keeps ``sigma``, else ``None``;
        models on a noise grid that can also interpolate it override this.
        """
        try:
            used = self.resolve_sigma(sigma)
        except ValueError:
            return None
        return self if math.isclose(used, sigma, rel_tol=1e-12, abs_tol=0.0) else None

    def check_call(self, inputs: Any, sigma: Any, target: TargetLike) -> tuple[float, Tensor | None]:
        r"""Validate a call's ``inputs``, ``sigma`` and ``target``; return the noise level and ``(N,)`` labels or None.

        Every check is cheap and runs before the model is evaluated: the per-example shape
        (:attr:`input_shape`), the dtype (real numbers), finite values, the noise level, the
        labels (integers in ``[0, num_classes)``, one per example) and the values' range:

        **Range rule.** A model with a known :attr:`data_range` :math:`[l, h]` (width
        :math:`w = h - l`) refuses inputs with values outside
        :math:`[l - w - 6\sigma,\ h + w + 6\sigma]`. Noisy or perturbed points legitimately leave
        :math:`[l, h]` a little; values beyond a whole range width (plus six noise standard
        deviations) mean the data are in other units than the model's, e.g. 0..255 images for a
        [0, 1] model, whose scores would be silently wrong.

        Callers that evaluate :meth:`raw_score` inside their own loops (e.g. under
        :mod:`torch.func`) validate once with this method first.
        """
        check_tensor("inputs", inputs)
        promote_inputs(inputs)  # dtype check only
        check_has_data("inputs", inputs)
        n = check_batch("inputs", [inputs])
        if self.input_shape is not None and tuple(inputs.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"Expected `inputs` to have per-example shape {tuple(self.input_shape)} (the shape this score "
                f"model was built for) but got {tuple(inputs.shape[1:])}"
            )
        sigma = self.check_sigma(sigma)
        if target is not None and not self.supports_conditional:
            raise ValueError(
                f"Expected `target=None` for this unconditional score model ({type(self).__name__}) but got a "
                "target; for class-conditional scores pass a class-conditional model as well, e.g. "
                "`ScorePair(conditional, unconditional)`"
            )
        if target is None and not self.supports_unconditional:
            raise ValueError(
                f"Expected `target` (class labels): {type(self).__name__} is class-conditional without a null "
                "label, so it has no unconditional score; pass an unconditional model as well "
                "(`unconditional=`), e.g. `ScorePair(conditional, unconditional)`"
            )
        labels = format_target(target, n, inputs.device, self.num_classes)
        self._check_range(inputs, sigma)
        return sigma, labels

    def _check_range(self, inputs: Tensor, sigma: float) -> None:
        if self.data_range is None:
            return
        low, high = self.data_range
        pad = RANGE_SLACK * (high - low) + RANGE_SIGMAS * sigma
        lo, hi = float(inputs.detach().min()), float(inputs.detach().max())
        if lo < low - pad or hi > high + pad:
            raise ValueError(
                f"Expected `inputs` in the score model's data range [{low:g}, {high:g}] (values up to one range "
                f"width plus 6 sigma outside it are accepted, i.e. [{low - pad:g}, {high + pad:g}]) but got values "
                f"in [{lo:g}, {hi:g}]; are the data in other units (e.g. 0..255)? Rescale them or give the score "
                "model the data's `data_range`"
            )

    # ------------------------------------------------------------------ public API
    def score(
        self, inputs: Tensor, sigma: float, target: TargetLike = None, *, batch_size: int | None = None
    ) -> Tensor:
        r"""Score :math:`\nabla_x \log p_\sigma(x\,[\mid y])` of each example.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` points in the user's data units. Integer tensors are promoted to
            floats; ``float16``/``bfloat16`` ones are evaluated in ``float32``.
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
            ``(N, *shape)`` on the inputs' device, in the inputs' floating dtype (the default
            float dtype for integer inputs).
        """
        sigma, t = self.check_call(inputs, sigma, target)
        if batch_size is not None:
            check_int("batch_size", batch_size, minimum=1)
        x = promote_inputs(inputs)
        out_dtype = x.dtype
        if out_dtype in LOW_PRECISION:
            x = x.float()
        if t is None:
            out = chunked_map(lambda xc: self._score(xc, sigma, None), x, chunk_size=batch_size)
        else:
            out = chunked_map(lambda xc, yc: self._score(xc, sigma, yc), x, t, chunk_size=batch_size)
        return cast_result(out, out_dtype)

    def bayes_score(self, inputs: Tensor, sigma: float, target: TargetLike, *, batch_size: int | None = None) -> Tensor:
        r"""The Bayes score difference :math:`\nabla_x \log p_\sigma(x \mid y) - \nabla_x \log p_\sigma(x)`.

        Equal to :math:`\nabla_x \log p_\sigma(y \mid x)`, the input gradient of the Bayes-optimal
        classifier of the smoothed data (Srinivas, Bordt & Lakkaraju, NeurIPS 2023). Both terms are
        evaluated at the same noise level, :meth:`resolve_sigma`. Same parameters and return shape
        as :meth:`score`; ``target`` is required. Models with a null label evaluate both terms in
        one network call, so a chunk of ``batch_size`` examples runs ``2 * batch_size`` at once.

        Examples
        --------
        >>> from captum_pags.scores import GaussianMixtureScore
        >>> mixture = GaussianMixtureScore(torch.tensor([[-1.0], [1.0]]), torch.eye(1))
        >>> mixture.bayes_score(torch.tensor([[0.0]]), sigma=1.0, target=1)
        tensor([[0.5000]])
        """
        self.check_supports("bayes")
        if target is None:
            raise ValueError("Expected `target` (class labels) for the Bayes score difference but got None")
        sigma_f, labels = self.check_call(inputs, sigma, target)
        if batch_size is not None:
            check_int("batch_size", batch_size, minimum=1)
        x = promote_inputs(inputs)
        out_dtype = x.dtype
        if out_dtype in LOW_PRECISION:
            x = x.float()
        out = chunked_map(lambda xc, yc: self._bayes(xc, sigma_f, yc), x, labels, chunk_size=batch_size)
        return cast_result(out, out_dtype)

    def _bayes(self, inputs: Tensor, sigma: float, target: Tensor) -> Tensor:
        """Hook: the Bayes difference of a validated batch (models that can, do it in one network call)."""
        return self._score(inputs, sigma, target) - self._score(inputs, sigma, None)

    def denoise(
        self, inputs: Tensor, sigma: float, target: TargetLike = None, *, batch_size: int | None = None
    ) -> Tensor:
        r"""Tweedie denoiser :math:`D(x, \sigma) = x + \sigma^2 \nabla_x \log p_\sigma(x)`.

        Same parameters and return shape as :meth:`score`. :math:`\sigma` is the level actually
        evaluated (:meth:`resolve_sigma`).
        """
        sigma_f = self.check_sigma(sigma)
        score = self.score(inputs, sigma_f, target, batch_size=batch_size)
        return promote_inputs(inputs).to(score.dtype) + self.resolve_sigma(sigma_f) ** 2 * score
