"""Training losses that make classifiers robust, usable in any training loop.

Every loss is an :class:`torch.nn.Module` called as ``loss = criterion(model, inputs, targets)``.
It returns a scalar and keeps the detached parts of the last call in ``criterion.last``
(:class:`LossParts`). Penalties are means over examples of per-example quantities, so their
strength does not depend on the batch size.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._kernel._model_state import unwrap_parallel
from .._kernel._validation import check_batch, check_choice, check_int, check_positive, check_tensor
from ..scores.base import ScoreModel
from ._checks import check_float_inputs, check_labels_nonnegative, check_logits, format_labels
from .attacks import NORMS, PGD, Norm

__all__ = [
    "AdversarialLoss",
    "GradientNormLoss",
    "LossParts",
    "NoiseConsistencyLoss",
    "RandomizedSmoothingLoss",
    "ScoreAlignmentLoss",
    "StandardLoss",
    "TrainingLoss",
]

Model = Callable[[Tensor], Tensor]
_TINY = 1e-12


def _identity(inputs: Tensor) -> Tensor:
    return inputs


@dataclass
class LossParts:
    """The detached parts of one loss evaluation.

    Attributes
    ----------
    total : Tensor
        The scalar that was returned.
    terms : dict of str to Tensor
        Named scalar parts, e.g. ``{"ce": ..., "grad_norm_sq": ...}``.

    Examples
    --------
    >>> LossParts(torch.tensor(1.5), {"ce": torch.tensor(1.0)}).as_dict()
    {'loss': 1.5, 'ce': 1.0}
    """

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The parts as Python floats, ``{"loss": total, **terms}`` (synchronises with the device)."""
        return {"loss": float(self.total), **{k: float(v) for k, v in self.terms.items()}}


def _per_example_sq_norm(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).pow(2).sum(dim=1)


def _cross_entropy(logits: Any, targets: Tensor, label_max: int, reduction: str = "mean") -> Tensor:
    """Cross-entropy after checking the logits' shape against the labels (no synchronisation)."""
    return F.cross_entropy(check_logits(logits, targets.shape[0], label_max), targets, reduction=reduction)


def _ce_and_input_grad(
    model: Model, inputs: Tensor, targets: Tensor, create_graph: bool, label_max: int
) -> tuple[Tensor, Tensor]:
    r"""Per-example cross-entropies ``(N,)`` and :math:`\nabla_{x_i} \operatorname{CE}_i` from one forward pass.

    The gradient of the summed loss equals the per-example gradients for models that treat the
    examples of a batch independently (no train-mode BatchNorm). ``create_graph`` keeps the graph
    for double backprop; otherwise the graph of the forward pass is kept (``retain_graph``) so that
    the cross-entropies can still be back-propagated.
    """
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        ce = _cross_entropy(model(x), targets, label_max, reduction="none")
        (grad,) = torch.autograd.grad(ce.sum(), x, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return ce, torch.zeros_like(x) if grad is None else grad


class TrainingLoss(nn.Module):
    """Base of the losses in this module: validates the call and records :class:`LossParts`.

    Subclasses implement :meth:`_compute` returning the scalar loss and its named parts.

    Attributes
    ----------
    last : LossParts or None
        Parts of the most recent call.

    Examples
    --------
    >>> class SquaredLogit(TrainingLoss):
    ...     def _compute(self, model, inputs, targets):
    ...         value = model(inputs).gather(1, targets[:, None]).pow(2).mean()
    ...         return value, {"sq": value}
    >>> loss = SquaredLogit()
    >>> model = torch.nn.Linear(2, 3)
    >>> _ = loss(model, torch.zeros(4, 2), torch.tensor([0, 1, 2, 0]))
    >>> sorted(loss.last.as_dict())
    ['loss', 'sq']
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: LossParts | None = None
        self._label_max = 0

    @abstractmethod
    def _compute(self, model: Model, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss and named detached-able parts for a validated batch."""

    def forward(self, model: Model, inputs: Tensor, targets: Any) -> Tensor:
        """Loss of ``model`` on ``(N, *shape)`` inputs with ``(N,)`` class labels, a scalar tensor."""
        if not callable(model):
            raise TypeError(f"Expected `model` to be callable but got {type(model).__name__}")
        check_tensor("inputs", inputs)
        n = check_batch("inputs", [inputs])
        check_float_inputs("inputs", (inputs,), model)
        labels = format_labels("targets", targets, n, inputs.device)
        self._label_max = check_labels_nonnegative(labels)
        module = unwrap_parallel(model)
        buffers = [b.detach().clone() for b in module.buffers()] if isinstance(module, nn.Module) else []
        try:
            total, terms = self._compute(model, inputs, labels)
        except (ValueError, TypeError):
            # a call refused after a train-mode forward pass leaves no BatchNorm statistics behind
            if buffers:
                with torch.no_grad():
                    for b, saved in zip(module.buffers(), buffers):
                        b.copy_(saved)
            raise
        self.last = LossParts(total.detach(), {k: v.detach() for k, v in terms.items()})
        return total


class StandardLoss(TrainingLoss):
    r"""Plain cross-entropy, the baseline: :math:`\frac1N \sum_i \operatorname{CE}(f(x_i), y_i)`.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> _ = torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
    >>> StandardLoss()(model, torch.ones(3, 2), torch.tensor([0, 1, 1]))
    tensor(0.6931, grad_fn=<NllLossBackward0>)
    """

    def _compute(self, model: Model, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        ce = _cross_entropy(model(inputs), targets, self._label_max)
        return ce, {"ce": ce}


GradientNormMethod = Literal["double_backprop", "finite_difference"]


class GradientNormLoss(TrainingLoss):
    r"""Cross-entropy plus the mean squared norm of each example's input gradient.

    .. math::

        L = \frac1N \sum_i \operatorname{CE}_i + \lambda\, \frac1N \sum_i
        \big\| \nabla_{x_i} \operatorname{CE}_i \big\|_2^2,
        \qquad \operatorname{CE}_i = \operatorname{CE}(f(x_i), y_i).

    Input-gradient regularisation (Drucker & LeCun 1992; Ross & Doshi-Velez 2018) is one of the
    robust training methods of Srinivas, Bordt & Lakkaraju (NeurIPS 2023). ``"double_backprop"``
    differentiates the gradient exactly. ``"finite_difference"`` (Finlay & Oberman 2019) avoids
    second derivatives: with the detached unit direction :math:`d_i = g_i / \|g_i\|` of the
    gradient :math:`g_i`,

    .. math::

        \|\nabla_{x_i} \operatorname{CE}_i\|_2^2 \approx
        \Big(\frac{\operatorname{CE}(f(x_i + h d_i), y_i) - \operatorname{CE}_i}{h}\Big)^2 .

    Both penalties are means over examples, so :math:`\lambda` means the same for any batch size.
    The model must treat examples independently (no train-mode BatchNorm) for the gradient of the
    summed loss to be the per-example gradient.

    Parameters
    ----------
    lam : float
        :math:`\lambda \ge 0`.
    method : {"double_backprop", "finite_difference"}
        Exact penalty or its finite-difference estimate.
    h : float
        Step of the difference quotient (input units), used by ``"finite_difference"``.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    >>> criterion = GradientNormLoss(lam=1.0)
    >>> loss = criterion(model, torch.zeros(1, 2), torch.tensor([0]))
    >>> criterion.last.as_dict()  # CE = log 2, gradient (-1/2, 1/2)
    {'loss': 1.1931, 'ce': 0.6931, 'grad_norm_sq': 0.5}
    """

    def __init__(self, lam: float, method: GradientNormMethod = "double_backprop", h: float = 1e-2) -> None:
        super().__init__()
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.method = check_choice("method", method, ("double_backprop", "finite_difference"))
        self.h = check_positive("h", h)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"lam={self.lam}, method={self.method!r}, h={self.h}"

    def _compute(self, model: Model, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.method == "double_backprop":
            ce, grad = _ce_and_input_grad(model, inputs, targets, self.lam > 0, self._label_max)
            penalty = _per_example_sq_norm(grad).mean()
        else:
            ce, grad = _ce_and_input_grad(model, inputs, targets, False, self._label_max)
            norms = grad.reshape(grad.shape[0], -1).norm(dim=1)
            direction = grad / norms.clamp_min(_TINY).view(-1, *([1] * (grad.dim() - 1)))
            ce_step = F.cross_entropy(model(inputs.detach() + self.h * direction), targets, reduction="none")
            penalty = ((ce_step - ce) / self.h).pow(2).mean()
        ce_mean = ce.mean()
        return ce_mean + self.lam * penalty, {"ce": ce_mean, "grad_norm_sq": penalty}


class NoiseConsistencyLoss(TrainingLoss):
    r"""Cross-entropy plus the mean squared change of the logits under Gaussian noise.

    .. math::

        L = \frac1N \sum_i \operatorname{CE}(f(x_i), y_i) + \lambda\, \frac1N \sum_i
        \| f(x_i) - f(x_i + \delta_i) \|_2^2, \qquad \delta_i \sim \mathcal{N}(0, \sigma^2 I).

    A consistency regulariser in the spirit of stability training (Zheng et al., CVPR 2016):
    it asks for robustness to random (mostly off-manifold) noise, the mechanism behind perceptually
    aligned gradients in Srinivas, Bordt & Lakkaraju (NeurIPS 2023). Noise comes from the global
    torch random generator (seed it, or let :func:`~captum_pags.training.fit` do so).

    Parameters
    ----------
    lam : float
        :math:`\lambda \ge 0`.
    sigma : float
        Noise standard deviation :math:`\sigma > 0` (input units).

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = torch.nn.init.zeros_(model.weight)
    >>> criterion = NoiseConsistencyLoss(lam=1.0, sigma=0.5)
    >>> criterion(model, torch.ones(2, 2), torch.tensor([0, 1]))  # constant model: no change
    tensor(0.6931, grad_fn=<AddBackward0>)
    """

    def __init__(self, lam: float, sigma: float) -> None:
        super().__init__()
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.sigma = check_positive("sigma", sigma)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"lam={self.lam}, sigma={self.sigma}"

    def _compute(self, model: Model, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits = model(inputs)
        noisy = model(inputs + self.sigma * torch.randn_like(inputs))
        ce = _cross_entropy(logits, targets, self._label_max)
        consistency = _per_example_sq_norm(logits - noisy).mean()
        return ce + self.lam * consistency, {"ce": ce, "consistency": consistency}


class RandomizedSmoothingLoss(TrainingLoss):
    r"""Cross-entropy on Gaussian-noised inputs (Gaussian data augmentation).

    .. math::

        L = \frac1N \sum_i \operatorname{CE}(f(x_i + \delta_i), y_i), \qquad
        \delta_i \sim \mathcal{N}(0, \sigma^2 I).

    The training of Cohen, Rosenfeld & Kolter (ICML 2019) for randomized smoothing
    (:class:`~captum_pags.training.SmoothedClassifier`); one of the robust training methods of
    Srinivas, Bordt & Lakkaraju (NeurIPS 2023).

    Parameters
    ----------
    sigma : float
        Noise standard deviation :math:`\sigma > 0` (input units).

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> _ = torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
    >>> RandomizedSmoothingLoss(sigma=0.5)(model, torch.ones(2, 2), torch.tensor([0, 1]))
    tensor(0.6931, grad_fn=<NllLossBackward0>)
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = check_positive("sigma", sigma)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"sigma={self.sigma}"

    def _compute(self, model: Model, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        ce = _cross_entropy(model(inputs + self.sigma * torch.randn_like(inputs)), targets, self._label_max)
        return ce, {"noisy_ce": ce}


class AdversarialLoss(TrainingLoss):
    r"""Cross-entropy at a per-example PGD adversary (adversarial training, Madry et al. 2018).

    .. math::

        L = \frac1N \sum_i \operatorname{CE}(f(x_i + \delta_i^\star), y_i), \qquad
        \delta_i^\star \approx \arg\max_{\|\delta\| \le \varepsilon} \operatorname{CE}(f(x_i + \delta), y_i),

    with :math:`\delta^\star` found by :class:`~captum_pags.training.PGD` (model in eval mode,
    frozen parameters, nothing left in ``.grad``); the loss itself is evaluated in the model's
    current mode. Adversarial training with L2 and Linf budgets is the main robust training of
    Srinivas, Bordt & Lakkaraju (NeurIPS 2023).

    Parameters
    ----------
    epsilon : float
        Per-example budget :math:`\varepsilon > 0`.
    steps : int
        PGD steps, ``>= 1``.
    norm : {"l2", "linf"}
        Threat model.
    step_size : float, optional
        PGD step; defaults to ``2.5 * epsilon / steps``.
    random_start : bool
        Start PGD from a random point of the ball.
    bounds : tuple of float, optional
        ``(low, high)`` valid input range.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> _ = torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
    >>> AdversarialLoss(epsilon=0.5, steps=2)(model, torch.ones(2, 2), torch.tensor([0, 1]))
    tensor(0.6931, grad_fn=<NllLossBackward0>)
    """

    def __init__(
        self,
        epsilon: float,
        steps: int = 10,
        norm: Norm = "l2",
        step_size: float | None = None,
        random_start: bool = True,
        bounds: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        check_positive("epsilon", epsilon)
        check_int("steps", steps, minimum=1)
        check_choice("norm", norm, NORMS)
        self._attack_kwargs: dict[str, Any] = {
            "epsilon": epsilon,
            "steps": steps,
            "norm": norm,
            "step_size": step_size,
            "random_start": random_start,
            "bounds": bounds,
        }
        # validated once here; the attack itself is built for the model of each call
        self._config = PGD(_identity, **self._attack_kwargs)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        a = self._config
        return f"epsilon={a.epsilon}, steps={a.steps}, norm={a.norm!r}, step_size={a.step_size}, bounds={a.bounds}"

    def _compute(self, model: Model, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        attack = PGD(unwrap_parallel(model), **self._attack_kwargs)
        try:
            adv = attack.perturb(inputs.detach(), targets)
        except ValueError as err:  # the attack names its own argument; this loss's is `targets`
            raise ValueError(str(err).replace("`target`", "`targets`")) from err
        ce = _cross_entropy(model(adv), targets, self._label_max)
        return ce, {"adv_ce": ce}


class ScoreAlignmentLoss(TrainingLoss):
    r"""Cross-entropy plus the misalignment of the model's gradient with the Bayes score difference.

    .. math::

        L = \frac1N \sum_i \operatorname{CE}_i + \lambda\, \frac1N \sum_i
        \Big(1 - \cos\big(\nabla_{x_i} \log p_f(y_i \mid x_i),\;
        s_\sigma(x_i, y_i) - s_\sigma(x_i)\big)\Big),

    where :math:`s_\sigma(x, y) - s_\sigma(x) = \nabla_x \log p_\sigma(y \mid x)` is the gradient of
    the Bayes-optimal classifier of the :math:`\sigma`-smoothed data (Srinivas, Bordt &
    Lakkaraju, NeurIPS 2023). Training for perceptually aligned gradients directly with a cosine
    penalty follows Ganz et al. (ICML 2023). The scores are targets (no gradient flows into the
    score model); the penalty is differentiated by double backprop.

    Parameters
    ----------
    lam : float
        :math:`\lambda \ge 0`.
    score_model : ScoreModel
        A class-conditional score model that also has an unconditional score.
    sigma : float
        Noise level of the scores (validated by the score model).
    batch_size : int, optional
        Evaluate the score model on at most this many examples at a time.

    Examples
    --------
    >>> from captum_pags.scores import BayesOptimalClassifier, GaussianMixtureScore
    >>> scores = GaussianMixtureScore(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.eye(2))
    >>> bayes = BayesOptimalClassifier(scores, sigma=0.5)
    >>> criterion = ScoreAlignmentLoss(lam=1.0, score_model=scores, sigma=0.5)
    >>> loss = criterion(bayes, torch.tensor([[0.3, 0.2]]), torch.tensor([1]))
    >>> round(float(criterion.last.terms["misalignment"]), 6)  # the Bayes classifier is aligned
    0.0
    """

    def __init__(self, lam: float, score_model: ScoreModel, sigma: float, batch_size: int | None = None) -> None:
        super().__init__()
        self.lam = check_positive("lam", lam, allow_zero=True)
        if not isinstance(score_model, ScoreModel):
            raise TypeError(
                f"Expected `score_model` to be a captum_pags ScoreModel but got {type(score_model).__name__}"
            )
        if score_model.num_classes is None or not score_model.supports_unconditional:
            raise ValueError(
                "Expected `score_model` to have both class-conditional and unconditional scores "
                f"but got num_classes={score_model.num_classes}, "
                f"supports_unconditional={score_model.supports_unconditional}"
            )
        self.score_model = score_model
        self.sigma = score_model.check_sigma(sigma)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, minimum=1)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"lam={self.lam}, sigma={self.sigma}"

    def _compute(self, model: Model, inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        ce, grad = _ce_and_input_grad(model, inputs, targets, self.lam > 0, self._label_max)
        with torch.no_grad():
            x = inputs.detach()
            cond = self.score_model.score(x, self.sigma, targets, batch_size=self.batch_size)
            uncond = self.score_model.score(x, self.sigma, None, batch_size=self.batch_size)
            direction = (cond - uncond).to(grad)
        n = grad.shape[0]
        # grad of log p(y|x) is minus the gradient of the cross-entropy
        cos = F.cosine_similarity(-grad.reshape(n, -1), direction.reshape(n, -1), dim=1, eps=_TINY)
        misalignment = (1 - cos).mean()
        ce_mean = ce.mean()
        return ce_mean + self.lam * misalignment, {"ce": ce_mean, "misalignment": misalignment}
