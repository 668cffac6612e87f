"""How perceptually aligned gradients are, and how close they lie to the data manifold.

The metrics of Srinivas, Bordt & Lakkaraju (NeurIPS 2023), "Which Models have
Perceptually-Aligned Gradients? An Explanation via Off-Manifold Robustness": the similarity of an
input-gradient map to the score of the data density (perceptual alignment), and the fraction of a
gradient that lies in the tangent space of the data manifold (tangent alignment).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from captum.attr import Attribution
from torch import Tensor

from .._kernel._autodiff import ClassScore, class_gradients
from .._kernel._model_state import preserved_state
from .._kernel._tensors import chunks, feature_shapes, flatten_features, index_examples, unflatten_features
from .._kernel._validation import (
    check_batch,
    check_choice,
    check_int,
    check_same_shape,
    check_tensor,
    check_tensor_or_tuple,
)
from ..manifold.base import TangentSpace
from ..scores.base import ScoreModel, TargetLike, format_target
from ._accumulate import RunningSums

__all__ = [
    "AlignmentAccumulator",
    "AlignmentSummary",
    "TangentAlignmentAccumulator",
    "perceptual_alignment",
    "random_tangent_alignment",
    "score_alignment",
    "tangent_alignment",
]

TensorOrTuple = Tensor | tuple[Tensor, ...]
Method = Literal["cosine", "pearson", "lpips"]
METHODS: tuple[str, ...] = ("cosine", "pearson", "lpips")
Gradient = Literal["log_softmax", "logit"]
GRADIENTS: tuple[str, ...] = ("log_softmax", "logit")
ScoreKind = Literal["bayes", "conditional", "unconditional"]
SCORE_KINDS: tuple[str, ...] = ("bayes", "conditional", "unconditional")


# ---------------------------------------------------------------------------------------- helpers
def _check_chunk(max_examples_per_batch: int | None) -> int | None:
    if max_examples_per_batch is not None:
        check_int("max_examples_per_batch", max_examples_per_batch, minimum=1)
    return max_examples_per_batch


def _warn_undefined(values: Tensor, what: str) -> None:
    bad = int(torch.isnan(values).sum())
    if bad:
        warnings.warn(
            f"{bad} of {values.shape[0]} example(s) have {what}; their alignment is NaN", RuntimeWarning, stacklevel=3
        )


def _scale_rows(flat: Tensor) -> Tensor:
    """Divide each row by its largest absolute value (zero rows stay zero): guards norms against under/overflow."""
    peak = flat.abs().amax(dim=1, keepdim=True)
    return flat / torch.where(peak > 0, peak, torch.ones_like(peak))


def _cosine_rows(a: Tensor, b: Tensor, center: bool) -> Tensor:
    """Row-wise cosine (Pearson if ``center``) of ``(N, D)`` matrices; NaN where either row is zero."""
    out_dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    b = b.to(device=a.device)
    if not center:
        # fast path in the maps' own precision; rows whose norms under- or overflow are redone below
        a_, b_ = a.to(out_dtype), b.to(out_dtype)
        norms = torch.linalg.vector_norm(a_, dim=1) * torch.linalg.vector_norm(b_, dim=1)
        cos = (a_ * b_).sum(1) / norms
        redo = ~torch.isfinite(cos) | ~(norms > torch.finfo(out_dtype).tiny ** 0.5)
        if bool(redo.any()):
            cos[redo] = _cosine_rows_safe(a[redo], b[redo], False).to(out_dtype)
        return cos.clamp(-1.0, 1.0)  # rounding can step past +-1; NaN stays NaN
    return _cosine_rows_safe(a, b, center).to(out_dtype)


def _cosine_rows_safe(a: Tensor, b: Tensor, center: bool) -> Tensor:
    """Float64 cosine without under- or overflow (float64 rows are scaled first); NaN for zero rows."""
    if torch.float64 in (a.dtype, b.dtype):
        a, b = _scale_rows(a.double()), _scale_rows(b.double())
    else:
        # float64 holds the square of any lower-precision value
        a, b = a.double(), b.double()
    if center:
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    cos = (a * b).sum(1) / (torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1))
    return cos.clamp(-1.0, 1.0)


def _paired(attributions: TensorOrTuple, scores: TensorOrTuple) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    attr_t = check_tensor_or_tuple("attributions", attributions)
    score_t = check_tensor_or_tuple("scores", scores)
    if len(attr_t) != len(score_t):
        raise ValueError(
            f"Expected `attributions` and `scores` to hold the same number of tensors but got "
            f"{len(attr_t)} and {len(score_t)}"
        )
    for a, s in zip(attr_t, score_t):
        check_same_shape("attributions", a, "scores", s)
    check_batch("attributions", attr_t)
    check_batch("scores", score_t)
    return attr_t, score_t


def _lpips_rows(a: Tensor, s: Tensor, net: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """LPIPS distance between maps scaled to [-1, 1]; single-channel maps are repeated to RGB."""
    n = a.shape[0]
    peak_a = a.flatten(1).abs().amax(1)
    peak_s = s.flatten(1).abs().amax(1)
    view = (n,) + (1,) * (a.dim() - 1)
    a = a / torch.where(peak_a > 0, peak_a, torch.ones_like(peak_a)).reshape(view)
    s = s / torch.where(peak_s > 0, peak_s, torch.ones_like(peak_s)).reshape(view)
    if a.shape[1] == 1:
        a, s = a.expand(-1, 3, -1, -1), s.expand(-1, 3, -1, -1)
    out = net(a, s)
    if not isinstance(out, Tensor) or out.numel() != n:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"Expected `lpips_net` to return one distance per example ({n} values) but got {got}")
    out = out.reshape(n).to(a.dtype)
    return torch.where((peak_a > 0) & (peak_s > 0), out, torch.full_like(out, math.nan))


def _alignment_values(
    attr_t: tuple[Tensor, ...],
    score_t: tuple[Tensor, ...],
    method: str,
    lpips_net: Callable[[Tensor, Tensor], Tensor] | None,
    chunk: int | None,
) -> Tensor:
    """Per-example alignment of validated maps; shared by :func:`score_alignment` and the accumulator."""
    if method == "lpips":
        if len(attr_t) != 1 or attr_t[0].dim() != 4:
            shapes = [tuple(t.shape) for t in attr_t]
            raise ValueError(
                f"Expected `attributions` to be one (N, C, H, W) tensor for method='lpips' but got shapes {shapes}"
            )
        a, s = attr_t[0], score_t[0]
        with torch.no_grad(), preserved_state(lpips_net, train=False):
            parts = [_lpips_rows(a[sl], s[sl].to(a), lpips_net) for sl in chunks(a.shape[0], chunk)]
        values = torch.cat(parts)
        _warn_undefined(values, "an all-zero map (LPIPS needs maps it can scale to [-1, 1])")
        return values
    with torch.no_grad():
        a = flatten_features([t.detach() for t in attr_t])
        s = flatten_features([t.detach() for t in score_t])
        center = method == "pearson"
        values = torch.cat([_cosine_rows(a[sl], s[sl], center) for sl in chunks(a.shape[0], chunk)])
    _warn_undefined(values, "an all-zero map" if method == "cosine" else "a constant map (zero variance)")
    return values


def _check_lpips(method: str, lpips_net: Any) -> None:
    check_choice("method", method, METHODS)
    if method == "lpips":
        if lpips_net is None:
            raise ValueError(
                "Expected `lpips_net` (an LPIPS network built from weights you have locally, e.g. "
                "`lpips.LPIPS(net='alex', pretrained=True, pnet_rand=False)` with cached weights) for "
                "method='lpips' but got None; captum_pags never downloads weights"
            )
        if not callable(lpips_net):
            raise TypeError(f"Expected `lpips_net` to be callable as net(x0, x1) but got {type(lpips_net).__name__}")
    elif lpips_net is not None:
        raise ValueError(f"Expected `lpips_net` only with method='lpips' but got method={method!r}")


# ---------------------------------------------------------------------------------------- functions
def score_alignment(
    attributions: TensorOrTuple,
    scores: TensorOrTuple,
    method: Method = "cosine",
    *,
    lpips_net: Callable[[Tensor, Tensor], Tensor] | None = None,
    max_examples_per_batch: int | None = None,
) -> Tensor:
    r"""Per-example similarity of attribution maps and score maps (perceptual alignment).

    With the flattened maps :math:`a, s \in \mathbb{R}^D` of one example (all tensors of a tuple
    concatenated),

    .. math::

        \text{cosine}(a, s) = \frac{\langle a, s\rangle}{\lVert a\rVert\,\lVert s\rVert}, \qquad
        \text{pearson}(a, s) = \text{cosine}(a - \bar a\mathbf{1},\; s - \bar s\mathbf{1}), \qquad
        \text{lpips}(a, s) = d_{\text{LPIPS}}\!\left(\frac{a}{\lVert a\rVert_\infty},
        \frac{s}{\lVert s\rVert_\infty}\right).

    Srinivas, Bordt & Lakkaraju (NeurIPS 2023) measure perceptual alignment as the similarity of
    a model's input gradient to the score :math:`\nabla_x \log p(x \mid y)` (or the Bayes score
    difference) of the data density. ``cosine`` and ``pearson`` lie in :math:`[-1, 1]`, higher is
    more aligned. ``lpips`` is a *distance* (lower is more aligned); the maps are scaled to
    :math:`[-1, 1]` by their largest absolute value and single-channel maps are repeated to three
    channels, as LPIPS networks expect.

    Maps for which the measure is undefined (an all-zero map for ``cosine`` and ``lpips``, a
    constant map for ``pearson``) give ``NaN`` and a :class:`RuntimeWarning` naming how many.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        ``(N, *shape)`` maps, e.g. the output of any Captum attribution.
    scores : Tensor or tuple of Tensor
        Same form and shapes as ``attributions``, e.g. score maps of a
        :class:`~captum_pags.scores.ScoreModel`.
    method : {"cosine", "pearson", "lpips"}
        Similarity measure.
    lpips_net : Callable, optional
        Required for ``method="lpips"`` and only then: an LPIPS network called as
        ``lpips_net(x0, x1)`` on ``(n, 3, H, W)`` tensors in :math:`[-1, 1]`, returning ``n``
        distances (``lpips.LPIPS`` does). It is evaluated in eval mode under ``no_grad`` and
        restored after. Nothing is ever downloaded.
    max_examples_per_batch : int, optional
        Compare at most this many examples at a time (bounds memory, mostly for LPIPS).

    Returns
    -------
    Tensor
        ``(N,)`` on the device of ``attributions``.

    Examples
    --------
    >>> a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    >>> s = torch.tensor([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0]])
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     score_alignment(a, s)
    tensor([ 1., -1., nan])
    >>> score_alignment(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 31.0]]), method="pearson")
    tensor([0.9996])
    """
    _check_lpips(method, lpips_net)
    chunk = _check_chunk(max_examples_per_batch)
    attr_t, score_t = _paired(attributions, scores)
    return _alignment_values(attr_t, score_t, method, lpips_net, chunk)


def tangent_alignment(
    attributions: TensorOrTuple,
    inputs: TensorOrTuple,
    tangent_space: TangentSpace,
    *,
    max_examples_per_batch: int | None = None,
) -> Tensor:
    r"""Per-example fraction of an attribution's norm that lies in the data manifold's tangent space.

    .. math::

        \text{TA}(g; x) = \frac{\lVert P_T(x)\, g\rVert}{\lVert g\rVert} \in [0, 1],

    with the tangent projector :math:`P_T(x)` of ``tangent_space``. Srinivas, Bordt & Lakkaraju
    (NeurIPS 2023) show that gradients of off-manifold robust models lie near the tangent space;
    the Bayes-optimal classifier of data on a linear subspace scores exactly 1. A gradient
    pointing in a random direction scores about :math:`\sqrt{k/D}`
    (:func:`random_tangent_alignment`). An all-zero attribution gives ``NaN`` and a
    :class:`RuntimeWarning`.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        ``(N, *shape)`` maps, same form and shapes as ``inputs`` (any Captum attribution).
    inputs : Tensor or tuple of Tensor
        ``(N, *shape)`` points at which the tangent space is taken.
    tangent_space : TangentSpace
        Any tangent-space estimator of :mod:`captum_pags.manifold`.
    max_examples_per_batch : int, optional
        Project at most this many examples at a time (bounds the memory of per-example bases).

    Returns
    -------
    Tensor
        ``(N,)`` values in :math:`[0, 1]` (or NaN) on the device of ``attributions``.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> space = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
    >>> tangent_alignment(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]), torch.zeros(2, 3), space)
    tensor([0.6000, 0.0000])
    """
    inputs_t, attr_t = _check_tangent_args(attributions, inputs, tangent_space)
    chunk = _check_chunk(max_examples_per_batch)
    return _tangent_values(attr_t, inputs_t, tangent_space, chunk)


def _check_tangent_args(
    attributions: TensorOrTuple, inputs: TensorOrTuple, tangent_space: TangentSpace
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    if not isinstance(tangent_space, TangentSpace):
        raise TypeError(
            f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
        )
    inputs_t = tangent_space.check_inputs(inputs)
    attr_t = check_tensor_or_tuple("attributions", attributions)
    if len(attr_t) != len(inputs_t):
        raise ValueError(
            f"Expected `attributions` to hold {len(inputs_t)} tensor(s) like `inputs` but got {len(attr_t)}"
        )
    for a, x in zip(attr_t, inputs_t):
        check_same_shape("attributions", a, "inputs", x)
    check_batch("attributions", attr_t)
    return inputs_t, attr_t


def _tangent_values(
    attr_t: tuple[Tensor, ...], inputs_t: tuple[Tensor, ...], tangent_space: TangentSpace, chunk: int | None
) -> Tensor:
    """Per-example tangent alignment of validated arguments; shared by the function and the accumulator."""
    parts = []
    for sl in chunks(inputs_t[0].shape[0], chunk):
        xs = tuple(x[sl].detach() for x in inputs_t)
        flat = _scale_rows(flatten_features([a[sl].detach() for a in attr_t]))
        flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
        on, _ = tangent_space.components(xs, unflatten_features(flat, feature_shapes(attr_t), [flat.shape[0]]))
        with torch.no_grad():
            on_norm = torch.linalg.vector_norm(flatten_features([o.detach() for o in on]), dim=1)
            parts.append((on_norm / torch.linalg.vector_norm(flat, dim=1)).clamp(max=1.0))
    values = torch.cat(parts).to(attr_t[0].device)
    _warn_undefined(values, "an all-zero attribution")
    return values


def random_tangent_alignment(tangent_space: TangentSpace, inputs: TensorOrTuple | None = None) -> float | Tensor:
    r"""Tangent alignment of a random direction: the reference level :math:`\sqrt{k/D}`.

    For an isotropic Gaussian direction :math:`g \in \mathbb{R}^D` and a :math:`k`-dimensional
    tangent space,

    .. math::

        \sqrt{\mathbb{E}\!\left[\frac{\lVert P_T g\rVert^2}{\lVert g\rVert^2}\right]}
        = \sqrt{\frac{k}{D}},

    the root-mean-square of :func:`tangent_alignment` for gradients that ignore the manifold.

    Parameters
    ----------
    tangent_space : TangentSpace
        The tangent space used with :func:`tangent_alignment`.
    inputs : Tensor or tuple of Tensor, optional
        ``(N, *shape)`` points. If given, :math:`k` is counted per example as the number of
        non-zero basis rows (estimators may drop directions) and :math:`D` comes from the inputs;
        otherwise :math:`k` = ``tangent_space.dim`` and :math:`D` = ``tangent_space.num_features``.

    Returns
    -------
    float or Tensor
        A float, or ``(N,)`` on the inputs' device when ``inputs`` is given.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> random_tangent_alignment(LinearSubspace(torch.eye(4)[:1]))
    0.5
    """
    if not isinstance(tangent_space, TangentSpace):
        raise TypeError(
            f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
        )
    if inputs is None:
        d = tangent_space.num_features
        if d is None:
            raise ValueError(
                "Expected `inputs` for a tangent space without a fixed `input_shape` (D is unknown) but got None"
            )
        return math.sqrt(tangent_space.dim / d)
    basis = tangent_space.basis(inputs)
    k = (torch.linalg.vector_norm(basis, dim=2) > 0).sum(1).to(torch.promote_types(basis.dtype, torch.float32))
    return (k / basis.shape[2]).sqrt()


def perceptual_alignment(
    model: Callable[..., Tensor],
    inputs: Tensor,
    score_model: ScoreModel,
    sigma: float,
    target: TargetLike,
    *,
    gradient: Gradient = "log_softmax",
    score: ScoreKind = "bayes",
    attribution: Attribution | type[Attribution] | None = None,
    attribute_kwargs: dict[str, Any] | None = None,
    method: Method = "cosine",
    lpips_net: Callable[[Tensor, Tensor], Tensor] | None = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: int | None = None,
) -> Tensor:
    r"""Per-example perceptual alignment of a classifier's input gradients with the data score.

    The model's map :math:`g` (the input gradient of the ``gradient`` output, or any Captum
    attribution) is compared by :func:`score_alignment` with the score map :math:`s` of
    ``score_model`` at noise level :math:`\sigma`:

    .. math::

        g = \nabla_x \log \operatorname{softmax}(f(x))_y \;\text{or}\; \nabla_x f_y(x), \qquad
        s = \begin{cases}
            \nabla \log p_\sigma(x \mid y) - \nabla \log p_\sigma(x) & \text{bayes} \\
            \nabla \log p_\sigma(x \mid y) & \text{conditional} \\
            \nabla \log p_\sigma(x) & \text{unconditional.}
        \end{cases}

    Srinivas, Bordt & Lakkaraju (NeurIPS 2023): the Bayes-optimal classifier's log-softmax
    gradient *is* the Bayes score difference, and models aligned with it have perceptually
    aligned gradients. On ``digits16`` the log-softmax gradient against the ``"bayes"`` score at
    :math:`\sigma \approx 0.25`--:math:`0.5` (pixel units in [0, 1]) shows the paper's inverted U
    over regularization most clearly; ``"logit"`` against ``"conditional"`` also works, while
    the unconditional score is nearly unrelated to class evidence (alignment near 0).

    Parameters
    ----------
    model : Callable
        Classifier returning ``(N, C)`` logits (an :class:`torch.nn.Module` is evaluated in eval
        mode with frozen parameters; mode, ``requires_grad`` and ``.grad`` are restored).
    inputs : Tensor
        ``(N, *shape)`` inputs in the score model's data units.
    score_model : ScoreModel
        Any score model of :mod:`captum_pags.scores` (exact, diffusion-based, ...).
    sigma : float
        Noise level of the score, in data units.
    target : int, list of int or Tensor
        Class of each example ``(N,)`` (or one int for all): the gradient's output and the
        score's condition.
    gradient : {"log_softmax", "logit"}
        Which output is differentiated (also the forward function given to an attribution class).
    score : {"bayes", "conditional", "unconditional"}
        Which score map the gradients are compared with.
    attribution : captum.attr.Attribution class or instance, optional
        Use this attribution instead of the plain input gradient. A class (e.g.
        ``IntegratedGradients``) is built on the forward function chosen by ``gradient``; an
        instance (e.g. ``NoiseTunnel(Saliency(model))``) is used as given.
    attribute_kwargs : dict, optional
        Extra keyword arguments of ``attribution.attribute`` (e.g. ``nt_samples``, ``abs=False``).
    method, lpips_net :
        Passed to :func:`score_alignment`.
    additional_forward_args : Any, optional
        Extra arguments of ``model`` (tensors with a batch dimension are per-example).
    max_examples_per_batch : int, optional
        Differentiate and score at most this many examples at a time.

    Returns
    -------
    Tensor
        ``(N,)`` alignment values on the inputs' device.

    Examples
    --------
    >>> from captum_pags.scores import BayesOptimalClassifier, GaussianMixtureScore
    >>> mixture = GaussianMixtureScore(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.eye(2))
    >>> x = torch.tensor([[0.5, 1.0], [-2.0, 0.3]])
    >>> perceptual_alignment(BayesOptimalClassifier(mixture, 0.5), x, mixture, 0.5, target=[1, 0])
    tensor([1., 1.])
    """
    check_tensor("inputs", inputs)
    n = check_batch("inputs", [inputs])
    if not isinstance(score_model, ScoreModel):
        raise TypeError(f"Expected `score_model` to be a captum_pags ScoreModel but got {type(score_model).__name__}")
    check_choice("gradient", gradient, GRADIENTS)
    check_choice("score", score, SCORE_KINDS)
    _check_lpips(method, lpips_net)
    chunk = _check_chunk(max_examples_per_batch)
    if target is None:
        raise ValueError("Expected `target` (the class of each example) but got None")
    sigma = score_model.check_sigma(sigma)
    labels = format_target(target, n, inputs.device, score_model.num_classes)
    forward = ClassScore(model, gradient) if gradient == "log_softmax" else model
    if attribution is None:
        explainer = None
    elif isinstance(attribution, type) and issubclass(attribution, Attribution):
        explainer = attribution(forward)
    elif isinstance(attribution, Attribution):
        explainer = attribution
    else:
        raise TypeError(
            f"Expected `attribution` to be a Captum Attribution class or instance but got {type(attribution).__name__}"
        )
    kwargs = dict(attribute_kwargs or {})

    grads = []
    with preserved_state(model, train=False, requires_grad=False):
        for sl in chunks(n, chunk):
            idx = torch.arange(sl.start, sl.stop, device=inputs.device)
            args = index_examples(additional_forward_args, idx, n)
            if explainer is None:
                g = class_gradients(model, inputs[sl], labels[sl], kind=gradient, additional_forward_args=args)
            else:
                g = explainer.attribute(inputs[sl], target=labels[sl], additional_forward_args=args, **kwargs)
                g = check_tensor("attribution output", g)
            grads.append(g.detach())
    maps = torch.cat(grads)

    with torch.no_grad():
        if score == "unconditional":
            s = score_model.score(inputs.detach(), sigma, None, batch_size=chunk)
        else:
            s = score_model.score(inputs.detach(), sigma, labels, batch_size=chunk)
            if score == "bayes":
                s = s - score_model.score(inputs.detach(), sigma, None, batch_size=chunk)
    return score_alignment(
        maps, s.to(device=maps.device), method, lpips_net=lpips_net, max_examples_per_batch=max_examples_per_batch
    )


# ---------------------------------------------------------------------------------------- accumulators
@dataclass(frozen=True)
class AlignmentSummary:
    """Dataset-level summary of a per-example alignment metric.

    Attributes
    ----------
    mean : Tensor
        0-d mean over the examples with a defined value (NaN values are left out).
    std : Tensor
        0-d population standard deviation over the same examples.
    count : int
        Number of examples with a defined value.
    num_undefined : int
        Number of examples whose value was NaN (e.g. all-zero maps).

    Examples
    --------
    >>> acc = AlignmentAccumulator()
    >>> acc.update(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    >>> summary = acc.compute()
    >>> float(summary.mean), summary.count, summary.num_undefined
    (1.0, 1, 1)
    """

    mean: Tensor
    std: Tensor
    count: int
    num_undefined: int


def _summary(sums: RunningSums) -> AlignmentSummary:
    mean, std, defined, undefined, _ = sums.mean_std()
    return AlignmentSummary(mean, std, int(defined.item()), int(undefined.item()))


class AlignmentAccumulator:
    r"""Accumulate :func:`score_alignment` over a data loader (and over ranks).

    ``update`` computes the per-example alignment of one batch with the same code as
    :func:`score_alignment` and adds it to running sums; ``compute`` returns the mean and standard
    deviation over every example seen on every rank (summed with :func:`torch.distributed.all_reduce`
    when a process group is initialised), leaving NaN values out and counting them:

    .. math::

        \bar m = \frac{1}{|\mathcal{D}|}\sum_{i \in \mathcal{D}} m_i, \qquad
        \mathcal{D} = \{ i : m_i \text{ defined} \}.

    Parameters
    ----------
    method : {"cosine", "pearson", "lpips"}
        As in :func:`score_alignment`.
    lpips_net : Callable, optional
        As in :func:`score_alignment`.
    max_examples_per_batch : int, optional
        As in :func:`score_alignment`.

    Examples
    --------
    >>> acc = AlignmentAccumulator()
    >>> acc.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    >>> acc.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    >>> acc.compute().mean
    tensor(0.5000, dtype=torch.float64)
    """

    def __init__(
        self,
        method: Method = "cosine",
        *,
        lpips_net: Callable[[Tensor, Tensor], Tensor] | None = None,
        max_examples_per_batch: int | None = None,
    ) -> None:
        _check_lpips(method, lpips_net)
        self.method = method
        self.lpips_net = lpips_net
        self.max_examples_per_batch = _check_chunk(max_examples_per_batch)
        self._sums = RunningSums()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sums.reset()

    def update(self, attributions: TensorOrTuple, scores: TensorOrTuple) -> None:
        """Add one batch of maps (same arguments as :func:`score_alignment`)."""
        attr_t, score_t = _paired(attributions, scores)
        self._sums.update(_alignment_values(attr_t, score_t, self.method, self.lpips_net, self.max_examples_per_batch))

    def compute(self) -> AlignmentSummary:
        """Mean, standard deviation and counts over everything seen (all ranks)."""
        return _summary(self._sums)


class TangentAlignmentAccumulator:
    r"""Accumulate :func:`tangent_alignment` over a data loader (and over ranks).

    Same running sums as :class:`AlignmentAccumulator`; ``compute`` also carries the random
    reference level :math:`\sqrt{k/D}` of :func:`random_tangent_alignment` in ``baseline``
    when the tangent space has a fixed input shape.

    Parameters
    ----------
    tangent_space : TangentSpace
        As in :func:`tangent_alignment`.
    max_examples_per_batch : int, optional
        As in :func:`tangent_alignment`.

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> acc = TangentAlignmentAccumulator(LinearSubspace(torch.tensor([[1.0, 0.0]])))
    >>> acc.update(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), torch.zeros(2, 2))
    >>> round(float(acc.compute().mean), 4), acc.baseline
    (0.3536, 0.7071067811865476)
    """

    def __init__(self, tangent_space: TangentSpace, *, max_examples_per_batch: int | None = None) -> None:
        if not isinstance(tangent_space, TangentSpace):
            raise TypeError(
                f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
            )
        self.tangent_space = tangent_space
        self.max_examples_per_batch = _check_chunk(max_examples_per_batch)
        self._sums = RunningSums()

    @property
    def baseline(self) -> float | None:
        r"""The random reference :math:`\sqrt{k/D}`, or None when :math:`D` is not fixed."""
        if self.tangent_space.num_features is None:
            return None
        return float(random_tangent_alignment(self.tangent_space))

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sums.reset()

    def update(self, attributions: TensorOrTuple, inputs: TensorOrTuple) -> None:
        """Add one batch (same arguments as :func:`tangent_alignment`)."""
        inputs_t, attr_t = _check_tangent_args(attributions, inputs, self.tangent_space)
        self._sums.update(_tangent_values(attr_t, inputs_t, self.tangent_space, self.max_examples_per_batch))

    def compute(self) -> AlignmentSummary:
        """Mean, standard deviation and counts over everything seen (all ranks)."""
        return _summary(self._sums)
