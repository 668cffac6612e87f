r"""How perceptually aligned gradients are: the similarity of gradient maps and score maps.

The perceptual-alignment metric of Srinivas, Bordt & Lakkaraju (NeurIPS 2023), "Which Models have
Perceptually-Aligned Gradients? An Explanation via Off-Manifold Robustness": the similarity of an
input-gradient map to the score of the data density. The paper measures it with LPIPS (AlexNet)
and plots :math:`1 - \text{LPIPS}`; cosine, Pearson and SSIM need no network weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from captum.attr import Attribution
from torch import Tensor

from .._kernel._autodiff import GRADIENT_KINDS, ClassScore, GradientKind, check_model_dtype, class_gradients
from .._kernel._model_state import preserved_state
from .._kernel._targets import predicted_classes, read_target
from .._kernel._tensors import chunks, flatten_features, index_examples
from .._kernel._validation import (
    check_batch,
    check_choice,
    check_same_shape,
    check_tensor,
    check_tensor_or_tuple,
)
from ..scores.base import ScoreModel
from ._common import TensorOrTuple, _check_chunk, _warn_undefined
from .similarity import (
    METHODS,
    SSIM_WINDOW,
    Method,
    _cosine_rows,
    _lpips_rows,
    _ssim_rows,
    default_lpips_net,
)

__all__ = ["perceptual_alignment", "score_alignment"]

Gradient = GradientKind
GRADIENTS: tuple[str, ...] = GRADIENT_KINDS
ScoreKind = Literal["bayes", "conditional", "unconditional"]
SCORE_KINDS: tuple[str, ...] = ("bayes", "conditional", "unconditional")
GradientTarget = Literal["true", "predicted"]
GRADIENT_TARGETS: tuple[str, ...] = ("true", "predicted")
_UNDEFINED = {
    "cosine": "an all-zero map",
    "pearson": "a constant map (zero variance)",
    "lpips": "an all-zero map (LPIPS needs maps it can scale to [-1, 1])",
    "ssim": "an all-zero map (SSIM needs maps it can scale to [-1, 1])",
}


# ---------------------------------------------------------------------------------------- helpers
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
        for name, t in (("attributions", a), ("scores", s)):
            if not (
                t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
            ):
                raise TypeError(f"Expected `{name}` to hold real numbers but got dtype {t.dtype}")
    check_batch("attributions", attr_t)
    check_batch("scores", score_t)
    return attr_t, score_t


def _check_image_maps(method: str, attr_t: tuple[Tensor, ...]) -> None:
    shapes = [tuple(t.shape) for t in attr_t]
    if len(attr_t) != 1 or attr_t[0].dim() != 4 or attr_t[0].shape[1] not in (1, 3):
        raise ValueError(
            f"Expected `attributions` to be one (N, C, H, W) tensor with C in {{1, 3}} for method={method!r} "
            f"but got shapes {shapes}"
        )
    if method == "ssim" and min(attr_t[0].shape[2:]) < SSIM_WINDOW:
        raise ValueError(
            f"Expected maps of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels for method='ssim' (its Gaussian window) "
            f"but got {tuple(attr_t[0].shape[2:])}"
        )


def _real(t: Tensor) -> Tensor:
    """Integer maps are promoted (never truncated); low-precision floats are compared in float32."""
    return t.detach().to(torch.promote_types(t.dtype, torch.float32))


def _alignment_values(
    attr_t: tuple[Tensor, ...],
    score_t: tuple[Tensor, ...],
    method: str,
    lpips_net: Callable[[Tensor, Tensor], Tensor] | None,
    chunk: int | None,
) -> Tensor:
    """Per-example alignment of validated maps; shared by :func:`score_alignment` and the accumulator."""
    if method in ("lpips", "ssim"):
        _check_image_maps(method, attr_t)
        a, s = _real(attr_t[0]), _real(score_t[0]).to(attr_t[0].device)
        if method == "ssim":
            with torch.no_grad():
                values = torch.cat([_ssim_rows(a[sl], s[sl]) for sl in chunks(a.shape[0], chunk)])
        else:
            net = lpips_net if lpips_net is not None else default_lpips_net(a.device)
            with torch.no_grad(), preserved_state(net, train=False):
                values = torch.cat([_lpips_rows(a[sl], s[sl], net) for sl in chunks(a.shape[0], chunk)])
    else:
        with torch.no_grad():
            a = flatten_features([_real(t) for t in attr_t])
            s = flatten_features([_real(t) for t in score_t])
            center = method == "pearson"
            values = torch.cat([_cosine_rows(a[sl], s[sl], center) for sl in chunks(a.shape[0], chunk)])
    _warn_undefined(values, _UNDEFINED[method])
    return values


def _check_lpips(method: str, lpips_net: Any) -> None:
    """Validate the method; for LPIPS without a network, check (cheaply) that the paper's one can be built."""
    check_choice("method", method, METHODS)
    if method == "lpips":
        if lpips_net is None:
            default_lpips_net()  # one clear error now, before any costly work, if the weights are missing
        elif not callable(lpips_net):
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
    concatenated) and :math:`\hat a = a / \lVert a\rVert_\infty`, :math:`\hat s = s / \lVert s\rVert_\infty`,

    .. math::

        \text{cosine}(a, s) = \frac{\langle a, s\rangle}{\lVert a\rVert\,\lVert s\rVert}, \qquad
        \text{pearson}(a, s) = \text{cosine}(a - \bar a\mathbf{1},\; s - \bar s\mathbf{1}),

    .. math::

        \text{lpips}(a, s) = 1 - d_{\text{LPIPS}}(\hat a, \hat s), \qquad
        \text{ssim}(a, s) = \operatorname{SSIM}(\hat a, \hat s).

    Srinivas, Bordt & Lakkaraju (NeurIPS 2023) measure perceptual alignment with **LPIPS**
    (AlexNet backbone) between the gradient and the score map, each scaled by its largest
    absolute value, and plot :math:`1 - \text{LPIPS}`; ``method="lpips"`` reproduces that
    (higher is more aligned, like every method here). Grey maps are repeated to three channels,
    and maps whose shorter side is below 32 pixels (AlexNet needs about 31; digits16 is 16x16)
    are upsampled bilinearly by the smallest integer factor that reaches 32. ``"ssim"`` is the
    structural similarity of ``pytorch-msssim`` (11-pixel Gaussian window, data range 2 of the
    scaled maps): a perceptual measure that needs no network weights. ``cosine`` and ``pearson``
    lie in :math:`[-1, 1]` and need no image structure.

    Maps for which the measure is undefined (an all-zero map for ``cosine``, ``lpips`` and
    ``ssim``, a constant map for ``pearson``) give ``NaN`` and a :class:`RuntimeWarning` naming
    how many. Integer maps are promoted, never truncated.

    Parameters
    ----------
    attributions : Tensor or tuple of Tensor
        ``(N, *shape)`` maps, e.g. the output of any Captum attribution. ``lpips`` and ``ssim``
        need one ``(N, C, H, W)`` tensor with ``C`` in {1, 3} (``ssim``: H, W >= 11).
    scores : Tensor or tuple of Tensor
        Same form and shapes as ``attributions``, e.g. score maps of a
        :class:`~captum_pags.scores.ScoreModel`.
    method : {"cosine", "pearson", "lpips", "ssim"}
        Similarity measure.
    lpips_net : Callable, optional
        Only for ``method="lpips"``: an LPIPS network called as ``lpips_net(x0, x1)`` on
        ``(n, 3, H, W)`` tensors in :math:`[-1, 1]`, returning ``n`` distances (``lpips.LPIPS``
        does). Without it the paper's ``lpips.LPIPS(net="alex")`` is built (``lpips`` extra),
        with AlexNet's weights read from the torch hub cache; if they are not there, one
        :class:`FileNotFoundError` names the folder. Nothing is ever downloaded. The network is
        evaluated in eval mode under ``no_grad`` and restored after.
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
    target: Any = None,
    *,
    gradient: Gradient = "log_softmax",
    score: ScoreKind = "bayes",
    gradient_target: GradientTarget = "true",
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

        g = \begin{cases}
            \nabla_x \log \operatorname{softmax}(f(x))_c & \text{log\_softmax} \\
            \nabla_x f_c(x) & \text{logit} \\
            \nabla_x \textstyle\sum_{c'} f_{c'}(x) & \text{logit\_sum}
        \end{cases}
        \qquad
        s = \begin{cases}
            \nabla \log p_\sigma(x \mid y) - \nabla \log p_\sigma(x) & \text{bayes} \\
            \nabla \log p_\sigma(x \mid y) & \text{conditional} \\
            \nabla \log p_\sigma(x) & \text{unconditional,}
        \end{cases}

    where :math:`y` is the true label ``target`` and the gradient's class :math:`c` is
    :math:`y` (``gradient_target="true"``) or the model's prediction
    :math:`\arg\max_{c'} f_{c'}(x)` (``"predicted"``).

    The pairings of Srinivas, Bordt & Lakkaraju (NeurIPS 2023) and its released code:

    * ``gradient="logit_sum", score="unconditional"``: the released script's default (no label
      needed; ``target`` may be None);
    * ``gradient="logit", score="conditional"``: Figure 3 (the label logit's gradient against
      the class-conditional score);
    * ``gradient_target="predicted"`` with ``score="conditional"``: the ImageNet experiments
      (gradient at the predicted class, score at the true label);
    * ``gradient="log_softmax", score="bayes"`` (default): the paper's theory, which this package
      tests exactly: the Bayes-optimal classifier's log-softmax gradient *is* the Bayes score
      difference. On ``digits16`` it shows the inverted U over regularization most clearly at
      :math:`\sigma \approx 0.25`--:math:`0.5` (pixel units in [0, 1]).

    Parameters
    ----------
    model : Callable
        Classifier returning ``(N, C)`` logits (an :class:`torch.nn.Module` is evaluated in eval
        mode with frozen parameters; mode, ``requires_grad`` and ``.grad`` are restored).
    inputs : Tensor
        ``(N, *shape)`` floating-point inputs in the score model's data units.
    score_model : ScoreModel
        Any score model of :mod:`captum_pags.scores` (exact, diffusion-based, ...).
    sigma : float
        Noise level of the score, in data units.
    target : int, list of int or Tensor
        True class of each example ``(N,)`` (or one int for all): the score's condition, and the
        gradient's class unless ``gradient_target="predicted"``. Only the pairing
        ``gradient="logit_sum", score="unconditional"`` needs none.
    gradient : {"log_softmax", "logit", "logit_sum"}
        Which output is differentiated (also the forward function given to an attribution class;
        ``"logit_sum"`` gives an ``(N, 1)`` output, selected with target 0).
    score : {"bayes", "conditional", "unconditional"}
        Which score map the gradients are compared with.
    gradient_target : {"true", "predicted"}
        Class of the gradient: the true label or the model's arg-max (NaN logits are refused).
        Ignored by ``"logit_sum"``.
    attribution : captum.attr.Attribution class or instance, optional
        Use this attribution instead of the plain input gradient. A class (e.g.
        ``IntegratedGradients``) is built on the forward function chosen by ``gradient``; an
        instance (e.g. ``NoiseTunnel(Saliency(model))``) is used as given.
    attribute_kwargs : dict, optional
        Extra keyword arguments of ``attribution.attribute`` (e.g. ``nt_samples``, ``abs=False``).
    method, lpips_net :
        Passed to :func:`score_alignment` (``"lpips"`` is the paper's metric).
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
    if not inputs.is_floating_point():
        raise TypeError(f"Expected `inputs` to be a floating-point tensor (data units) but got dtype {inputs.dtype}")
    if not isinstance(score_model, ScoreModel):
        raise TypeError(f"Expected `score_model` to be a captum_pags ScoreModel but got {type(score_model).__name__}")
    if not callable(model):
        raise TypeError(f"Expected `model` to be callable but got {type(model).__name__}")
    check_model_dtype(model, inputs)
    check_choice("gradient", gradient, GRADIENTS)
    check_choice("score", score, SCORE_KINDS)
    check_choice("gradient_target", gradient_target, GRADIENT_TARGETS)
    _check_lpips(method, lpips_net)
    chunk = _check_chunk(max_examples_per_batch)
    label_free = gradient == "logit_sum" and score == "unconditional"
    if target is None and not label_free:
        raise ValueError(
            "Expected `target` (the true class of each example) but got None; only gradient='logit_sum' with "
            "score='unconditional' needs no label"
        )
    if isinstance(target, str):
        raise TypeError(
            f"Expected `target` to be the true labels (int, list or tensor) but got {target!r}; use "
            "gradient_target='predicted' for the gradient at the predicted class"
        )
    score_model.check_supports(score, name="score")
    labels = read_target(target, n, inputs.device, num_classes=score_model.num_classes)
    # shapes, sigma and labels against the score model, before any gradient is taken
    sigma, _ = score_model.check_call(inputs, sigma, labels if score != "unconditional" else None)
    explainer = _explainer(attribution, model, gradient)
    kwargs = dict(attribute_kwargs or {})

    grads = []
    with preserved_state(model, train=False, requires_grad=False):
        for sl in chunks(n, chunk):
            idx = torch.arange(sl.start, sl.stop, device=inputs.device)
            args = index_examples(additional_forward_args, idx, n)
            x = inputs[sl]
            if gradient == "logit_sum":
                g_target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            elif gradient_target == "predicted":
                with torch.no_grad():
                    g_target = predicted_classes(ClassScore(model, "logit")(x, *_as_args(args)), x.shape[0])
            else:
                g_target = labels[sl]
            if explainer is None:
                g = class_gradients(model, x, g_target, kind=gradient, additional_forward_args=args)
            else:
                g = explainer.attribute(x, target=g_target, additional_forward_args=args, **kwargs)
                g = check_tensor("attribution output", g)
            grads.append(g.detach())
    maps = torch.cat(grads)

    with torch.no_grad():
        x = inputs.detach()
        if score == "unconditional":
            s = score_model.score(x, sigma, None, batch_size=chunk)
        else:
            s = score_model.score(x, sigma, labels, batch_size=chunk)
            if score == "bayes":
                s = s - score_model.score(x, sigma, None, batch_size=chunk)
    return score_alignment(
        maps, s.to(device=maps.device), method, lpips_net=lpips_net, max_examples_per_batch=max_examples_per_batch
    )


def _as_args(args: Any) -> tuple[Any, ...]:
    if args is None:
        return ()
    return args if isinstance(args, tuple) else (args,)


def _explainer(attribution: Any, model: Callable[..., Tensor], gradient: str) -> Attribution | None:
    if attribution is None:
        return None
    if isinstance(attribution, type) and issubclass(attribution, Attribution):
        return attribution(ClassScore(model, gradient))  # type: ignore[arg-type]
    if isinstance(attribution, Attribution):
        return attribution
    raise TypeError(
        f"Expected `attribution` to be a Captum Attribution class or instance but got {type(attribution).__name__}"
    )
