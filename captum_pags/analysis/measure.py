"""Measure one classifier: accuracy, perceptual and tangent alignment, on-/off-manifold robustness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._kernel._autodiff import input_gradients
from .._kernel._model_state import preserved_state
from .._kernel._tensors import chunks
from ..manifold.base import TangentSpace
from ..manifold.cached import CachedTangent
from ..metrics import manifold_robustness, score_alignment, tangent_alignment
from ..scores.base import ScoreModel
from .errors import AnalysisInputError

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
    """Compute the score maps once and bundle the evaluation settings.

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


def _nanmean(t: Tensor) -> float:
    v = t[~torch.isnan(t)]
    return float(v.mean()) if v.numel() else math.nan


def _logits(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    try:
        with torch.no_grad():
            out = torch.cat([model(images[s]) for s in chunks(images.shape[0], batch_size)])
    except (RuntimeError, AssertionError) as err:
        raise AnalysisInputError(
            f"the model does not take inputs of shape {tuple(images.shape[1:])}: {str(err).splitlines()[0]}"
        ) from None
    try:  # the measurements evaluate batches of other sizes too
        with torch.no_grad():
            model(images[:1])
    except (RuntimeError, AssertionError) as err:
        raise AnalysisInputError(
            "the model takes only a fixed batch size (export it with a dynamic batch dimension): "
            f"{str(err).splitlines()[0]}"
        ) from None
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise AnalysisInputError(f"Expected the model to return logits of shape (N, classes) but got {shape}")
    return out


def measure_model(model: nn.Module, data: EvaluationData) -> dict[str, Any]:
    r"""Measure one classifier on prepared evaluation data.

    - ``accuracy``: top-1 accuracy;
    - ``alignment_bayes``: mean cosine between :math:`\nabla_x \log \operatorname{softmax}_y f(x)` and
      the Bayes score difference (Srinivas et al., NeurIPS 2023);
    - ``alignment_conditional``: mean cosine between the logit gradient and the conditional score;
    - ``tangent_alignment``: mean :math:`\lVert P_T g\rVert / \lVert g\rVert` of the log-softmax gradient;
    - ``robustness_on`` / ``robustness_off``: mean softmax-L1 change under random unit on-/off-manifold
      perturbations of size ``epsilons[0]`` (lists over all sizes in ``robustness_on_curve`` /
      ``robustness_off_curve``) and ``relative_robustness = on / off``.

    The model is evaluated in eval mode and returned as it was.

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
    x, y = data.images, data.labels
    with preserved_state(model, train=False):
        logits = _logits(model, x, data.batch_size)
        if logits.shape[0] != x.shape[0]:
            raise AnalysisInputError(
                f"Expected the model to return {x.shape[0]} rows of logits but got {logits.shape[0]}"
            )
        if int(y.max()) >= logits.shape[1]:
            raise AnalysisInputError(
                f"the model returns {logits.shape[1]} classes but the labels go up to {int(y.max())}"
            )
        accuracy = float((logits.argmax(1) == y).double().mean())

        def log_softmax(inputs: Tensor) -> Tensor:
            return torch.log_softmax(model(inputs), dim=1)

        g_ls = torch.cat([input_gradients(log_softmax, (x[s],), y[s])[0] for s in chunks(x.shape[0], data.batch_size)])
        g_logit = torch.cat([input_gradients(model, (x[s],), y[s])[0] for s in chunks(x.shape[0], data.batch_size)])
        result: dict[str, Any] = {"accuracy": accuracy}
        if data.bayes_scores is not None and data.conditional_scores is not None:
            result["alignment_bayes"] = _nanmean(score_alignment(g_ls, data.bayes_scores))
            result["alignment_conditional"] = _nanmean(score_alignment(g_logit, data.conditional_scores))
        else:
            result["alignment_bayes"] = result["alignment_conditional"] = math.nan
        for name, space in {"": data.tangent_space, **data.extra_tangent_spaces}.items():
            suffix = f"_{name}" if name else ""
            result[f"tangent_alignment{suffix}"] = _nanmean(tangent_alignment(g_ls, x, space))
            rob = manifold_robustness(
                model,
                x,
                space,
                data.epsilons,
                n_samples=data.n_samples,
                seed=data.seed,
                max_examples_per_batch=data.batch_size,
            ).mean()
            result[f"robustness_on{suffix}"] = float(rob.on[0, 0])
            result[f"robustness_off{suffix}"] = float(rob.off[0, 0])
            result[f"relative_robustness{suffix}"] = float(rob.relative[0, 0])
            result[f"robustness_on_curve{suffix}"] = [float(v) for v in rob.on[0]]
            result[f"robustness_off_curve{suffix}"] = [float(v) for v in rob.off[0]]
        result["gradient_norm"] = float(g_ls.flatten(1).norm(dim=1).mean())
    return result
