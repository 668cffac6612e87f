"""A score model's map as a Captum attribution (the reference that aligned gradients resemble)."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from captum.attr import Attribution
from captum.log import log_usage

from .._kernel._captum_compat import TargetType, TensorOrTupleOfTensorsGeneric, format_output
from .._kernel._validation import check_batch, check_choice, check_int, check_tensor_or_tuple
from ..scores.base import ScoreModel, check_has_data

__all__ = ["ScoreAttribution"]

ScoreMode = Literal["conditional", "unconditional", "bayes"]
MODES: tuple[str, ...] = ("conditional", "unconditional", "bayes")


class ScoreAttribution(Attribution):
    r"""The score of a (smoothed) data density as an attribution map.

    .. math::

        \text{conditional:}\ \nabla_x \log p_\sigma(x \mid y), \qquad
        \text{unconditional:}\ \nabla_x \log p_\sigma(x), \qquad
        \text{bayes:}\ \nabla_x \log p_\sigma(x \mid y) - \nabla_x \log p_\sigma(x)
        = \nabla_x \log p_\sigma(y \mid x).

    The ``"bayes"`` map is the input gradient of the Bayes-optimal classifier of the smoothed
    data; Srinivas, Bordt & Lakkaraju (NeurIPS 2023) show that perceptually aligned gradients are
    those that resemble it, so this is the reference a model's gradients are compared with.

    Parameters
    ----------
    score_model : ScoreModel
        Any :class:`~captum_pags.scores.ScoreModel` (exact, diffusers, denoiser).
    sigma : float
        Noise level (user units), checked against the model's range.
    mode : {"conditional", "unconditional", "bayes"}
        Which map to return. ``"unconditional"`` and ``"bayes"`` need a model with unconditional
        scores, ``"conditional"`` and ``"bayes"`` a class-conditional one (see the model's
        ``supports_*`` properties; a :class:`~captum_pags.scores.ScorePair` joins a conditional
        model without a null label and an unconditional one). ``"bayes"`` evaluates both terms
        at the same noise level (:meth:`~captum_pags.scores.ScoreModel.bayes_score`).
    batch_size : int, optional
        Evaluate the score model on at most this many examples at a time.

    Examples
    --------
    >>> from captum_pags.scores import GaussianMixtureScore
    >>> mixture = GaussianMixtureScore(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.eye(2))
    >>> ScoreAttribution(mixture, sigma=1.0).attribute(torch.tensor([[0.0, 1.0]]), target=1)
    tensor([[ 0.5000, -0.5000]])
    >>> ScoreAttribution(mixture, sigma=1.0, mode="bayes").attribute(torch.tensor([[0.0, 1.0]]), target=1)
    tensor([[0.5000, 0.0000]])
    """

    def __init__(
        self, score_model: ScoreModel, sigma: float, mode: ScoreMode = "conditional", batch_size: int | None = None
    ) -> None:
        if not isinstance(score_model, ScoreModel):
            raise TypeError(
                f"Expected `score_model` to be a captum_pags ScoreModel but got {type(score_model).__name__}"
            )
        self.mode: str = check_choice("mode", mode, MODES)
        score_model.check_supports(self.mode, name="mode")  # says what to supply for a mode it cannot give
        self.score_model = score_model
        self.sigma = score_model.check_sigma(sigma)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        # Captum's forward function: the score itself, forward_func(inputs, target=None)
        super().__init__(partial(score_model.score, sigma=self.sigma, batch_size=self.batch_size))

    @log_usage()
    def attribute(
        self, inputs: TensorOrTupleOfTensorsGeneric, target: TargetType = None
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""Return the score map of each input.

        Parameters
        ----------
        inputs : Tensor or tuple of one Tensor
            ``(N, *shape)`` points in the score model's data units.
        target : int, list of int or Tensor, optional
            Class of each example (or one for all). Required for ``"conditional"`` and
            ``"bayes"``; ignored by ``"unconditional"``, so one call works for every mode (e.g.
            in :func:`captum.metrics.sensitivity_max`).

        Returns
        -------
        Tensor or tuple of one Tensor
            Same form and shape as ``inputs``, detached, on the inputs' device.
        """
        is_tuple = isinstance(inputs, tuple)
        inputs_t = check_tensor_or_tuple("inputs", inputs)
        if len(inputs_t) != 1:
            raise ValueError(
                f"Expected `inputs` to be one tensor (or a 1-tuple) for a score model but got {len(inputs_t)} tensors"
            )
        check_has_data("inputs", inputs_t[0])
        check_batch("inputs", inputs_t)
        x = inputs_t[0].detach()
        if self.mode != "unconditional" and target is None:
            raise ValueError(f"Expected `target` (class labels) for mode={self.mode!r} but got None")
        score = partial(self.score_model.score, x, self.sigma, batch_size=self.batch_size)
        with torch.no_grad():
            if self.mode == "conditional":
                out = score(target)
            elif self.mode == "unconditional":
                out = score(None)
            else:
                out = self.score_model.bayes_score(x, self.sigma, target, batch_size=self.batch_size)
        return format_output(is_tuple, (out,))

    def attribute_future(self) -> Any:
        """Not implemented: ScoreAttribution has no asynchronous variant."""
        raise NotImplementedError("attribute_future is not implemented for ScoreAttribution")
