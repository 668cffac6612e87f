"""Many models measured on the same few examples: score maps and estimated bases computed once (the sweep)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._kernel._model_state import preserved_state
from ..manifold.base import TangentSpace
from ..manifold.cached import CachedTangent
from ..scores.base import ScoreModel
from .measure import MeasureSums, _add_batch, _result

__all__ = ["EvaluationData", "measure_model", "prepare_evaluation"]


@dataclass
class EvaluationData:
    r"""Everything shared by all models measured on the same examples (scores are computed once).

    Attributes
    ----------
    images, labels : Tensor
        ``(n, *shape)`` inputs and ``(n,)`` labels.
    tangent_space : TangentSpace
        Tangent space for tangent alignment and on-/off-manifold robustness.
    conditional_scores, bayes_scores : Tensor or None
        :math:`\nabla \log p_\sigma(x\mid y)` and
        :math:`\nabla \log p_\sigma(x\mid y) - \nabla \log p_\sigma(x)`; ``None`` when no
        score model fits the data.
    sigma : float
        Noise level of the scores.
    epsilons : tuple of float
        Perturbation sizes.
    n_samples : int
        Random directions per example and size.
    seed : int
        Seed of the random directions.
    batch_size : int
        Examples per forward/backward pass.
    extra_tangent_spaces : dict of str to TangentSpace
        Further (estimated) tangent spaces; each adds ``tangent_alignment_<name>``,
        ``robustness_on_<name>``, ``robustness_off_<name>`` and ``relative_robustness_<name>``.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> ev = EvaluationData(torch.zeros(2, 3), torch.tensor([0, 1]), LinearSubspace(torch.eye(3)[:1]),
    ...                     None, None, 0.3, (0.5,), 4, 0)
    >>> ev.batch_size
    256
    """

    images: Tensor
    labels: Tensor
    tangent_space: TangentSpace
    conditional_scores: Tensor | None
    bayes_scores: Tensor | None
    sigma: float
    epsilons: tuple[float, ...]
    n_samples: int
    seed: int
    batch_size: int = 256
    extra_tangent_spaces: dict[str, TangentSpace] = field(default_factory=dict)


def prepare_evaluation(
    images: Tensor,
    labels: Tensor,
    tangent_space: TangentSpace,
    score_model: ScoreModel | None,
    sigma: float,
    epsilons: Sequence[float],
    n_samples: int,
    seed: int = 0,
    batch_size: int = 256,
    extra_tangent_spaces: Mapping[str, TangentSpace] | None = None,
) -> EvaluationData:
    """Compute the score maps once and bundle the evaluation settings (for many models on few examples).

    Examples
    --------
    >>> from captum_pags import GaussianSubspaceMixture
    >>> data = GaussianSubspaceMixture(shape=(1, 4, 4), seed=0)
    >>> x, y = data.sample(6, seed=0)
    >>> ev = prepare_evaluation(x, y, data.tangent_space, data.score_model, 0.3, (0.5,), 2)
    >>> ev.bayes_scores.shape
    torch.Size([6, 1, 4, 4])
    """
    cond = bayes = None
    if score_model is not None:
        with torch.no_grad():
            cond = score_model.score(images, sigma, labels, batch_size=batch_size)
            bayes = cond - score_model.score(images, sigma, batch_size=batch_size)
    return EvaluationData(
        images,
        labels,
        tangent_space,
        cond,
        bayes,
        float(sigma),
        tuple(epsilons),
        n_samples,
        seed,
        batch_size,
        # estimated bases depend only on the (fixed) images: compute them once for all models
        {name: CachedTangent(space, images) for name, space in (extra_tangent_spaces or {}).items()},
    )


def measure_model(model: nn.Module, data: EvaluationData) -> dict[str, Any]:
    r"""Measure one classifier on prepared evaluation data (held in memory).

    - ``accuracy``: top-1 accuracy;
    - ``alignment_bayes``: mean cosine between :math:`\nabla_x \log \operatorname{softmax}_y f(x)` and
      the Bayes score difference (Srinivas et al., NeurIPS 2023);
    - ``alignment_conditional``: mean cosine between the logit gradient and the conditional score;
    - ``tangent_alignment``: mean :math:`\lVert P_T g\rVert / \lVert g\rVert` of the log-softmax gradient;
    - ``robustness_on`` / ``robustness_off``: mean softmax-L1 change under random unit on-/off-manifold
      perturbations of size ``epsilons[0]`` (lists over all sizes in ``robustness_on_curve`` /
      ``robustness_off_curve``) and ``relative_robustness = on / off``.

    The model is evaluated in eval mode and returned as it was. All examples form one batch of
    the robustness measurement (one draw of directions, seeded by ``data.seed``); forward and
    backward passes are chunked by ``data.batch_size``.

    Examples
    --------
    >>> from captum_pags import GaussianSubspaceMixture
    >>> data = GaussianSubspaceMixture(shape=(1, 4, 4), seed=0)
    >>> x, y = data.sample(30, seed=0, dtype=torch.float64)
    >>> ev = prepare_evaluation(x, y, data.tangent_space, data.score_model, 0.0, (0.1,), 2)
    >>> m = measure_model(data.bayes_classifier(), ev)
    >>> round(m["alignment_bayes"], 4), m["tangent_alignment"] > 0.99
    (1.0, True)
    """
    spaces = {"": data.tangent_space, **data.extra_tangent_spaces}
    sums = MeasureSums()
    with preserved_state(model, train=False):
        _add_batch(
            sums,
            model,
            data.images,
            data.labels,
            data.conditional_scores if data.bayes_scores is not None else None,
            data.bayes_scores if data.conditional_scores is not None else None,
            spaces,
            data.epsilons,
            data.n_samples,
            data.seed,
            data.batch_size,
        )
    return _result(sums, spaces, ("cosine",))
