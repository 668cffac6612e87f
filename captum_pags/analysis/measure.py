"""Measure one classifier: accuracy, perceptual and tangent alignment, on-/off-manifold robustness.

The measurements are sums over batches (:class:`MeasureSums`), so an analysis streams over its
data: each batch is scored, its tangent bases, gradients and perturbations are computed, added
and dropped. Memory depends on the batch size, not on the number of examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from .errors import AnalysisInputError

__all__ = ["ALIGNMENT_METRICS", "MeasureSums", "measure_batches"]


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
    alignment_metrics: Sequence[str] = ("cosine",),
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
        the regime rule read). Srinivas et al. measured LPIPS; :func:`~captum_pags.analysis.analyze_model`
        adds SSIM beside cosine by default because it needs no network weights.
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


# the in-memory path of the sweep (many models on the same examples) lives beside it
from .evaluation import EvaluationData, measure_model, prepare_evaluation  # noqa: E402

__all__ += ["EvaluationData", "measure_model", "prepare_evaluation"]
