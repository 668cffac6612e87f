"""How perceptually aligned gradients are: the similarity of gradient maps and score maps.

The perceptual-alignment metric of Srinivas, Bordt & Lakkaraju (NeurIPS 2023), "Which Models have
Perceptually-Aligned Gradients? An Explanation via Off-Manifold Robustness": the similarity of an
input-gradient map to the score of the data density.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from captum.attr import Attribution
from torch import Tensor

from .._kernel._autodiff import ClassScore, class_gradients
from .._kernel._model_state import preserved_state
from .._kernel._tensors import chunks, flatten_features, index_examples
from .._kernel._validation import (
    check_batch,
    check_choice,
    check_same_shape,
    check_tensor,
    check_tensor_or_tuple,
)
from ..scores.base import ScoreModel, TargetLike, format_target
from ._common import TensorOrTuple, _check_chunk, _scale_rows, _warn_undefined

__all__ = ["perceptual_alignment", "score_alignment"]

Method = Literal["cosine", "pearson", "lpips"]
METHODS: tuple[str, ...] = ("cosine", "pearson", "lpips")
Gradient = Literal["log_softmax", "logit"]
GRADIENTS: tuple[str, ...] = ("log_softmax", "logit")
ScoreKind = Literal["bayes", "conditional", "unconditional"]
SCORE_KINDS: tuple[str, ...] = ("bayes", "conditional", "unconditional")


# ---------------------------------------------------------------------------------------- helpers
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
