r"""A class-conditional and an unconditional score model as one Bayes-capable :class:`ScoreModel`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .._kernel._validation import check_batch, check_tensor
from .base import ScoreModel, TargetLike, check_has_data

__all__ = ["ScorePair"]


class ScorePair(ScoreModel):
    r"""Conditional scores from one model, unconditional scores from another, at one common noise level.

    Many class-conditional diffusion models were trained without a null label (e.g. EDM's
    CIFAR-10 model), so they have no unconditional score; an unconditional model of the same
    data supplies it. The pair gives

    .. math::

        s_\sigma(x, y) = \nabla_x \log p^{\text{cond}}_\sigma(x \mid y), \qquad
        s_\sigma(x) = \nabla_x \log p^{\text{uncond}}_\sigma(x),

    and so the Bayes score difference :math:`s_\sigma(x, y) - s_\sigma(x)`
    (:meth:`~ScoreModel.bayes_score`), which is meaningful only if both terms are evaluated at
    *the same* :math:`\sigma`.

    **Common noise level.** A requested :math:`\sigma` resolves (:meth:`resolve_sigma`) to one
    level both models evaluate exactly: the conditional model's own level for :math:`\sigma`
    (e.g. its nearest timestep), or else the unconditional model's, taking the first that the
    other model evaluates exactly as it is. If neither does (two different timestep grids), the
    model that is off its grid is evaluated through its
    :meth:`~ScoreModel.at_exact_sigma` view, e.g. a
    :class:`~captum_pags.scores.DiffusersScore` interpolating its timestep; if none can, the
    pair refuses the noise level.

    Parameters
    ----------
    conditional : ScoreModel
        A class-conditional model (``supports_conditional``); it need not have a null label.
    unconditional : ScoreModel
        A model with unconditional scores (``supports_unconditional``) of the same data, in the
        same units and shape.

    Examples
    --------
    >>> from captum_pags.scores import DenoiserScore, GaussianMixtureScore
    >>> mixture = GaussianMixtureScore(torch.tensor([[-1.0], [1.0]]), torch.eye(1))
    >>> conditional = DenoiserScore(lambda x, s, class_labels: mixture.denoise(x, float(s[0]), class_labels), 2)
    >>> pair = ScorePair(conditional, mixture)
    >>> pair.supports_bayes, pair.num_classes
    (True, 2)
    >>> pair.bayes_score(torch.tensor([[0.0]]), sigma=1.0, target=1)
    tensor([[0.5000]])
    """

    def __init__(self, conditional: ScoreModel, unconditional: ScoreModel) -> None:
        for name, model in (("conditional", conditional), ("unconditional", unconditional)):
            if not isinstance(model, ScoreModel):
                raise TypeError(f"Expected `{name}` to be a captum_pags ScoreModel but got {type(model).__name__}")
        if not conditional.supports_conditional:
            raise ValueError(
                f"Expected `conditional` to be a class-conditional score model but {type(conditional).__name__} "
                "has no classes (num_classes is None)"
            )
        if not unconditional.supports_unconditional:
            raise ValueError(
                f"Expected `unconditional` to have unconditional scores but {type(unconditional).__name__} is "
                "class-conditional without a null label"
            )
        self.conditional = conditional
        self.unconditional = unconditional
        self.num_classes = conditional.num_classes
        self.supports_unconditional = True
        self.allows_zero_sigma = conditional.allows_zero_sigma and unconditional.allows_zero_sigma
        self.input_shape = _agree("input_shape", conditional.input_shape, unconditional.input_shape)
        self.data_range = _agree("data_range", conditional.data_range, unconditional.data_range)
        low = max(conditional.sigma_range[0], unconditional.sigma_range[0])
        high = min(conditional.sigma_range[1], unconditional.sigma_range[1])
        if not low <= high:
            raise ValueError(
                f"Expected `conditional` and `unconditional` to share noise levels but their ranges "
                f"{conditional.sigma_range} and {unconditional.sigma_range} do not overlap"
            )
        self._sigma_range = (low, high)
        self._plans: dict[float, tuple[float, ScoreModel, ScoreModel]] = {}

    @property
    def sigma_range(self) -> tuple[float, float]:
        """Noise levels both models can evaluate (the intersection of their ranges)."""
        return self._sigma_range

    def networks(self) -> list[nn.Module]:
        """The torch modules of both models."""
        found: list[nn.Module] = []
        for m in (*self.conditional.networks(), *self.unconditional.networks()):
            if all(m is not f for f in found):
                found.append(m)
        return found

    # ------------------------------------------------------------------ the common noise level
    def _plan(self, sigma: float) -> tuple[float, ScoreModel, ScoreModel]:
        """The common level and the two models (or their exact views) that evaluate it."""
        if sigma in self._plans:
            return self._plans[sigma]
        candidates = []
        for model in (self.conditional, self.unconditional):
            level = model.resolve_sigma(sigma)
            if self._sigma_range[0] <= level <= self._sigma_range[1]:
                candidates.append(level)
        plan = None
        for level in candidates:  # first: a level both evaluate as they are
            if all(_exact(m, level) for m in (self.conditional, self.unconditional)):
                plan = (level, self.conditional, self.unconditional)
                break
        if plan is None:
            for level in candidates:
                views = (self.conditional.at_exact_sigma(level), self.unconditional.at_exact_sigma(level))
                if views[0] is not None and views[1] is not None:
                    plan = (level, views[0], views[1])
                    break
        if plan is None:
            raise ValueError(
                f"Expected `sigma` to be a noise level both models evaluate exactly but got {sigma}: the "
                f"conditional model evaluates {self.conditional.resolve_sigma(sigma):.6g} and the unconditional "
                f"{self.unconditional.resolve_sigma(sigma):.6g}, and neither can interpolate the other's level; "
                "use models on one timestep grid or with continuous time embeddings"
            )
        self._plans[sigma] = plan
        return plan

    def resolve_sigma(self, sigma: Any) -> float:
        """The one noise level (user units) at which both models are evaluated for ``sigma``."""
        return self._plan(self.check_sigma(sigma))[0]

    # ------------------------------------------------------------------ evaluation
    def check_call(self, inputs: Any, sigma: Any, target: TargetLike) -> tuple[float, Tensor | None]:
        """Validate as :meth:`ScoreModel.check_call`, then with each model's own checks (e.g. a UNet's size)."""
        check_tensor("inputs", inputs)
        check_has_data("inputs", inputs)
        n = check_batch("inputs", [inputs])
        level, conditional, unconditional = self._plan(self.check_sigma(sigma))
        # each model's own checks first, in its own words (e.g. a UNet's sample_size); labels come next
        conditional.check_call(inputs, level, torch.zeros(n, dtype=torch.long, device=inputs.device))
        unconditional.check_call(inputs, level, None)
        return super().check_call(inputs, sigma, target)

    def _score(self, inputs: Tensor, sigma: float, target: Tensor | None) -> Tensor:
        level, conditional, unconditional = self._plan(sigma)
        if target is None:
            return unconditional.raw_score(inputs, level, None)
        return conditional.raw_score(inputs, level, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conditional={self.conditional!r}, unconditional={self.unconditional!r})"


def _exact(model: ScoreModel, sigma: float) -> bool:
    try:
        return math.isclose(model.resolve_sigma(sigma), sigma, rel_tol=1e-12, abs_tol=0.0)
    except ValueError:
        return False


def _agree(name: str, a: Any, b: Any) -> Any:
    if a is not None and b is not None and tuple(a) != tuple(b):
        raise ValueError(
            f"Expected `conditional` and `unconditional` to have the same {name} but got {tuple(a)} and {tuple(b)}"
        )
    return a if a is not None else b
