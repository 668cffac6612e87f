r"""The paper's regularisation strengths in this package's units, and back.

The derivation is in the Notes of :func:`from_paper_strength`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from .._kernel._validation import check_choice, check_int, check_positive

__all__ = ["PAPER_BATCH_SIZE", "PAPER_GRIDS", "from_paper_strength", "to_paper_strength"]

PaperMethod = Literal["gradient_norm", "pgd", "noise"]
_METHODS: tuple[str, ...] = ("gradient_norm", "pgd", "noise")

#: The scale the released code applies to its gradient-norm penalty (``1e5 * grad.pow(2).sum() / B``).
GRADIENT_NORM_CODE_SCALE = 1e5

#: The released training script's default batch size (``train_models.py --batch-size``).
PAPER_BATCH_SIZE = 128

#: The strengths of the paper's CIFAR-10 sweeps (``run_experiments.py``), in the paper's units:
#: 30 log-spaced values each; ``"noise"`` is the randomized-smoothing noise level.
PAPER_GRIDS: dict[str, tuple[float, ...]] = {
    "gradient_norm": tuple(float(v) for v in np.logspace(-5, 2, 30)),
    "pgd": tuple(float(v) for v in np.logspace(-5, 4, 30)),
    "noise": tuple(float(v) for v in np.logspace(-3, 2, 30)),
}


def _check(method: str, strength: float, batch_size: int, code_scale: float) -> tuple[str, float, int, float]:
    method = check_choice("method", method, _METHODS)
    strength = check_positive("strength", strength, allow_zero=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    code_scale = check_positive("code_scale", code_scale)
    return method, strength, batch_size, code_scale


def from_paper_strength(
    method: PaperMethod, strength: float, *, batch_size: int, code_scale: float = GRADIENT_NORM_CODE_SCALE
) -> float:
    r"""Our strength equal to the paper's ``strength`` of ``method`` at batch size ``batch_size``.

    .. math::

        \lambda = \frac{c\, s}{B^2} \;\; (\text{gradient_norm}), \qquad
        \varepsilon = \frac{\varepsilon_{\text{paper}}}{\sqrt B} \;\; (\text{pgd}), \qquad
        \sigma = \sigma_{\text{paper}} \;\; (\text{noise}).

    Parameters
    ----------
    method : {"gradient_norm", "pgd", "noise"}
        The sweep method: :class:`~captum_pags.training.GradientNormLoss` ``lam``,
        :class:`~captum_pags.training.AdversarialLoss` (L2) ``epsilon``, or the
        randomized-smoothing ``sigma``.
    strength : float
        The paper's value (``--reg-constant``, ``--epsilon`` or ``--noise-std`` of its training
        script), ``>= 0``.
    batch_size : int
        The batch size :math:`B` the paper's strength was used with (its default is
        ``PAPER_BATCH_SIZE``).
    code_scale : float
        The factor :math:`s` of the released gradient-norm penalty (``1e5``); ``1.0`` for the
        formula without it.

    Returns
    -------
    float
        The strength to give this package.

    Notes
    -----
    Srinivas, Bordt & Lakkaraju (NeurIPS 2023) and their released code (``utils/regularized_loss.py``
    of tml-tuebingen/pags) define two of their strengths per *batch*, this package per *example*:

    **Gradient norm.** The released code penalises the squared norm of the input gradient of the
    batch-mean cross-entropy, times :math:`10^5`, divided by the batch size :math:`B`. With
    :math:`g_i = \nabla_{x_i} \operatorname{CE}_i` the gradient of example :math:`i`'s own loss,
    :math:`\nabla_{x_i} \frac1B \sum_j \operatorname{CE}_j = g_i / B`, so

    .. math::

        c\, \frac{s}{B} \Big\| \nabla_x \frac1B \sum_j \operatorname{CE}_j \Big\|_2^2
        = \frac{c\, s}{B^3} \sum_i \|g_i\|_2^2 = \frac{c\, s}{B^2}\, \frac1B \sum_i \|g_i\|_2^2,

    with the code's scale :math:`s = 10^5`. :class:`~captum_pags.training.GradientNormLoss` adds
    :math:`\lambda \frac1B \sum_i \|g_i\|_2^2`, hence :math:`\lambda = c\, s / B^2`: the paper's
    penalty weakens with the square of the batch size, ours does not depend on it.

    **L2 PGD.** The released attack normalises its steps and projects onto the ball
    :math:`\|\delta\|_2 \le \varepsilon_{\text{paper}}` of the *whole batch* (all examples' features
    together); :class:`~captum_pags.training.PGD` gives every example its own ball of radius
    :math:`\varepsilon`. The per-example balls of radius :math:`\varepsilon = \varepsilon_{\text{paper}} / \sqrt B`
    lie inside the paper's batch ball and fill it where every example uses its budget:
    :math:`\sqrt{\sum_i \|\delta_i\|^2} \le \sqrt B\, \varepsilon = \varepsilon_{\text{paper}}`, and
    the paper's attack, which reaches its boundary, has a root-mean-square per-example norm of exactly
    :math:`\varepsilon`. The paper's attack may spend the budget unevenly (more on examples with large
    gradients); no per-example budget reproduces that, so this conversion matches the total budget,
    not each example's.

    **Noise.** The randomized-smoothing noise level :math:`\sigma` (and the noise-consistency
    strength and noise level of ``NoiseConsistencyLoss``) are per-example in both: no conversion.

    The strengths stay in the inputs' units (the paper's CIFAR-10 images lie in ``[0, 1]``).

    Examples
    --------
    >>> from_paper_strength("gradient_norm", 1e-3, batch_size=100)
    0.01
    >>> from_paper_strength("pgd", 1.0, batch_size=4)
    0.5
    >>> from_paper_strength("noise", 0.25, batch_size=128)
    0.25
    """
    method, strength, batch_size, code_scale = _check(method, strength, batch_size, code_scale)
    if method == "gradient_norm":
        return strength * code_scale / batch_size**2
    if method == "pgd":
        return strength / math.sqrt(batch_size)
    return strength


def to_paper_strength(
    method: PaperMethod, strength: float, *, batch_size: int, code_scale: float = GRADIENT_NORM_CODE_SCALE
) -> float:
    r"""The paper's strength of ``method`` at batch size ``batch_size`` for this package's ``strength``.

    The inverse of :func:`from_paper_strength`:

    .. math::

        c = \frac{\lambda B^2}{s} \;\; (\text{gradient_norm}), \qquad
        \varepsilon_{\text{paper}} = \sqrt B\, \varepsilon \;\; (\text{pgd}), \qquad
        \sigma_{\text{paper}} = \sigma \;\; (\text{noise}).

    Parameters
    ----------
    method : {"gradient_norm", "pgd", "noise"}
        The sweep method.
    strength : float
        This package's ``lam``, ``epsilon`` or ``sigma``, ``>= 0``.
    batch_size : int
        The batch size :math:`B` of the paper's run to compare with.
    code_scale : float
        The factor :math:`s` of the released gradient-norm penalty (``1e5``).

    Returns
    -------
    float
        The paper's strength.

    Examples
    --------
    >>> to_paper_strength("gradient_norm", 0.01, batch_size=100)
    0.001
    >>> to_paper_strength("pgd", 0.5, batch_size=4)
    1.0
    """
    method, strength, batch_size, code_scale = _check(method, strength, batch_size, code_scale)
    if method == "gradient_norm":
        return strength * batch_size**2 / code_scale
    if method == "pgd":
        return strength * math.sqrt(batch_size)
    return strength
