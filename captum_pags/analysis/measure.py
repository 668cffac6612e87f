"""Measure one classifier: accuracy, perceptual and tangent alignment, on-/off-manifold robustness.

The measurements are sums over batches (:class:`MeasureSums`), so an analysis streams over its
data: each batch is scored, its tangent bases, gradients and perturbations are computed, added
and dropped. Memory depends on the batch size, not on the number of examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._kernel._autodiff import class_gradients
from .._kernel._model_state import preserved_state
from .._kernel._tensors import chunks
from ..manifold.base import TangentSpace
from ..manifold.cached import CachedTangent
from ..manifold.subspace import LinearSubspace
from ..metrics import manifold_robustness, score_alignment, tangent_alignment
from ..scores.base import ScoreModel
from .errors import AnalysisInputError

__all__ = ["EvaluationData", "MeasureSums", "measure_batches", "measure_model", "prepare_evaluation"]


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
    if out.shape[0] != images.shape[0]:
        raise AnalysisInputError(
            f"Expected the model to return {images.shape[0]} rows of logits but got {out.shape[0]}"
        )
    return out


#: Alignment metrics of :func:`~captum_pags.metrics.score_alignment` the analysis can report.
ALIGNMENT_METRICS = ("cosine", "pearson", "ssim", "lpips")


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    out = tuple(metrics)
    if not out or any(m not in ALIGNMENT_METRICS for m in out):
        raise AnalysisInputError(f"Expected alignment metrics among {ALIGNMENT_METRICS} but got {list(out)}")
    return out


class MeasureSums:
    """Running sums of every measurement over the batches seen; :meth:`result` gives the means.

    Means leave NaN values out (an example whose alignment is undefined), as
    :meth:`~captum_pags.metrics.ManifoldRobustness.mean` does; ``relative_robustness`` is the ratio
    of the mean on- and off-manifold changes.

    Examples
    --------
    >>> sums = MeasureSums()
    >>> sums.add("accuracy", torch.tensor([1.0, 0.0, float("nan")]))
    >>> sums.mean("accuracy")
    0.5
    """

    def __init__(self) -> None:
        self._sum: dict[str, Tensor] = {}
        self._count: dict[str, Tensor] = {}

    def add(self, key: str, values: Tensor) -> None:
        """Add per-example values ``(n,)`` or ``(n, E)`` of ``key``."""
        v = values.detach().double().cpu()
        ok = ~torch.isnan(v)
        s, c = torch.where(ok, v, torch.zeros_like(v)).sum(0), ok.sum(0)
        if key in self._sum:
            self._sum[key] += s
            self._count[key] += c
        else:
            self._sum[key], self._count[key] = s, c

    def mean(self, key: str) -> Any:
        """The NaN-free mean of ``key`` (a float, or a list over epsilons); NaN when nothing was defined."""
        if key not in self._sum:
            return math.nan
        m = self._sum[key] / self._count[key].clamp_min(1)
        m = torch.where(self._count[key] > 0, m, torch.full_like(m, math.nan))
        return float(m) if m.dim() == 0 else [float(v) for v in m]


def _gradients(model: nn.Module, x: Tensor, y: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Log-softmax and logit gradients of the label class, in chunks."""
    g_ls = class_gradients(model, x, y, kind="log_softmax", batch_size=chunk)
    g_logit = class_gradients(model, x, y, kind="logit", batch_size=chunk)
    return g_ls, g_logit


def _cached_bases(space: TangentSpace, x: Tensor) -> CachedTangent:
    """Bases of one batch, computed once; attention runs in its plain (math) form, which forward mode supports."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        return CachedTangent(space, x)


def _add_batch(
    sums: MeasureSums,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    conditional: Tensor | None,
    bayes: Tensor | None,
    spaces: Mapping[str, TangentSpace],
    epsilons: Sequence[float],
    n_samples: int,
    seed: int,
    chunk: int,
    metrics: Sequence[str] = ("cosine",),
) -> None:
    logits = _logits(model, x, chunk)
    if int(y.max()) >= logits.shape[1] or int(y.min()) < 0:
        raise AnalysisInputError(
            f"the model returns {logits.shape[1]} classes but the labels go from {int(y.min())} to {int(y.max())}"
        )
    sums.add("accuracy", (logits.argmax(1) == y).double())
    g_ls, g_logit = _gradients(model, x, y, chunk)
    for metric in metrics:
        for kind, grad, score in (("bayes", g_ls, bayes), ("conditional", g_logit, conditional)):
            if score is not None:
                sums.add(f"alignment_{metric}_{kind}", _alignment(grad, score, metric, chunk))
    for name, space in spaces.items():
        suffix = f"_{name}" if name else ""
        # bases that depend on the point are computed once per batch, for alignment and robustness alike
        local = space if isinstance(space, (LinearSubspace, CachedTangent)) else _cached_bases(space, x)
        sums.add(f"tangent_alignment{suffix}", tangent_alignment(g_ls, x, local))
        rob = manifold_robustness(
            model, x, local, epsilons, n_samples=n_samples, seed=seed, max_examples_per_batch=chunk
        )
        sums.add(f"robustness_on{suffix}", rob.on)
        sums.add(f"robustness_off{suffix}", rob.off)
    sums.add("gradient_norm", g_ls.flatten(1).norm(dim=1))


def _alignment(grad: Tensor, score: Tensor, metric: str, chunk: int) -> Tensor:
    lpips_net = None
    if metric == "lpips":
        from ..metrics.similarity import default_lpips_net

        lpips_net = default_lpips_net(grad.device)
    return score_alignment(grad, score, metric, lpips_net=lpips_net, max_examples_per_batch=chunk)  # type: ignore[arg-type]


def _result(sums: MeasureSums, spaces: Iterable[str], metrics: Sequence[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"accuracy": sums.mean("accuracy")}
    for kind in ("bayes", "conditional"):  # the first metric, under the names the sweep and the regimes read
        result[f"alignment_{kind}"] = sums.mean(f"alignment_{metrics[0]}_{kind}")
    for metric in metrics:
        for kind in ("bayes", "conditional"):
            result[f"alignment_{metric}_{kind}"] = sums.mean(f"alignment_{metric}_{kind}")
    for name in spaces:
        suffix = f"_{name}" if name else ""
        on, off = sums.mean(f"robustness_on{suffix}"), sums.mean(f"robustness_off{suffix}")
        result[f"tangent_alignment{suffix}"] = sums.mean(f"tangent_alignment{suffix}")
        result[f"robustness_on{suffix}"] = on[0]
        result[f"robustness_off{suffix}"] = off[0]
        result[f"relative_robustness{suffix}"] = _ratio(on[0], off[0])
        result[f"robustness_on_curve{suffix}"] = on
        result[f"robustness_off_curve{suffix}"] = off
    result["gradient_norm"] = sums.mean("gradient_norm")
    return result


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if b == 0:
        return math.nan if a == 0 else math.inf
    return a / b


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


def measure_batches(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    tangent_spaces: Mapping[str, TangentSpace],
    *,
    scores: Any = None,
    sigma: float = 0.3,
    epsilons: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    n_samples: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
    alignment_metrics: Sequence[str] = ("cosine", "ssim"),
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    r"""Measure one classifier streaming over batches: same measurements as :func:`measure_model`.

    Each batch is moved to ``device``, scored (conditional score and Bayes score difference from
    ``scores``, a :class:`~captum_pags.analysis.ScoreModels`), and measured on every tangent space;
    its sums are kept and the batch dropped. Batch ``b`` draws its random directions with seed
    ``seed + b``; means over examples leave undefined (NaN) values out.

    Parameters
    ----------
    model : nn.Module
        Classifier returning ``(n, classes)`` logits of data-unit images.
    batches : iterable of (Tensor, Tensor)
        ``(n, *shape)`` images and ``(n,)`` labels.
    tangent_spaces : mapping of str to TangentSpace
        ``""`` for the main tangent space (columns without suffix); other names add ``*_<name>`` columns.
    scores : ScoreModels, optional
        None: the alignments are NaN.
    sigma : float
        Noise level of the scores.
    epsilons, n_samples, seed :
        As in :func:`~captum_pags.metrics.manifold_robustness`.
    device : str or torch.device
        Where the batches are measured.
    alignment_metrics : sequence of str
        Metrics of :func:`~captum_pags.metrics.score_alignment` (``cosine``, ``pearson``, ``ssim``,
        ``lpips``); each gives ``alignment_<metric>_bayes`` and ``alignment_<metric>_conditional``.
        ``alignment_bayes`` / ``alignment_conditional`` repeat the first (the columns the sweep and
        the regime rule read). Srinivas et al. measured LPIPS; the default adds SSIM beside cosine
        because it needs no network weights.
    on_batch : Callable, optional
        Called with ``(batch index, examples so far)`` after each batch (progress display).

    Returns
    -------
    dict
        The columns of :func:`measure_model` plus ``n`` (examples measured) and the
        metric-named alignment columns.

    Examples
    --------
    >>> from captum_pags import GaussianSubspaceMixture
    >>> data = GaussianSubspaceMixture(shape=(1, 4, 4), seed=0)
    >>> x, y = data.sample(30, seed=0, dtype=torch.float64)
    >>> batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    >>> m = measure_batches(data.bayes_classifier(), batches, {"": data.tangent_space}, epsilons=(0.1,), n_samples=2)
    >>> m["n"], m["tangent_alignment"] > 0.99
    (30, True)
    """
    dev = torch.device(device)
    metrics = _check_metrics(alignment_metrics)
    sums = MeasureSums()
    n = 0
    with preserved_state(model, train=False):
        for b, (x, y) in enumerate(batches):
            x, y = x.to(dev), y.to(dev)
            cond = bayes = None
            if scores is not None and scores.has_conditional:
                cond = scores.conditional(x, sigma, y)
                if scores.has_unconditional:
                    bayes = scores.bayes(x, sigma, y, conditional=cond)
            _add_batch(
                sums, model, x, y, cond, bayes, tangent_spaces, epsilons, n_samples, seed + b, x.shape[0], metrics
            )
            n += x.shape[0]
            if on_batch is not None:
                on_batch(b, n)
    if n == 0:
        raise AnalysisInputError("Expected at least one example to analyse but the data yielded none")
    return {"n": n, **_result(sums, tangent_spaces, metrics)}
