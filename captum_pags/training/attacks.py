"""Projected gradient descent with a per-example budget (L2 or Linf)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from captum.robust import Perturbation
from torch import Tensor

from .._kernel._captum_compat import format_output, run_forward
from .._kernel._model_state import preserved_state, unwrap_parallel
from .._kernel._tensors import feature_shapes, flatten_features, unflatten_features
from .._kernel._validation import check_batch, check_choice, check_int, check_positive, check_tensor_or_tuple
from ..scores.base import format_target
from ._checks import check_float_inputs

__all__ = ["PGD"]

Norm = Literal["l2", "linf"]
NORMS: tuple[str, ...] = ("l2", "linf")
# Madry et al. (2018): a step of 2.5 * eps / steps lets the iterate reach the boundary and move along it.
_DEFAULT_STEP_FACTOR = 2.5
_TINY = 1e-12


def _check_bounds(bounds: Any) -> tuple[float, float] | None:
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"Expected `bounds` to be None or a pair (low, high) but got {bounds!r}")
    low, high = (float(b) for b in bounds)
    if not low < high:
        raise ValueError(f"Expected `bounds` (low, high) with low < high but got {tuple(bounds)}")
    return low, high


class PGD(Perturbation):
    r"""Projected gradient descent (Madry et al., ICLR 2018) with a budget for every example.

    For each example :math:`x_i` with label :math:`y_i`, starting from a random point
    :math:`\delta^0_i` of the ball (uniform in volume),

    .. math::

        \delta^{t+1}_i = \Pi_{\|\delta\| \le \varepsilon}\Big(\delta^t_i + \alpha\,
        \frac{g_i}{\|g_i\|_2}\Big) \;\; (\text{L2}), \qquad
        \delta^{t+1}_i = \operatorname{clip}_{[-\varepsilon, \varepsilon]}\big(\delta^t_i + \alpha\,
        \operatorname{sign} g_i\big) \;\; (\text{Linf}),

    with :math:`g_i = \pm\nabla_{\delta} \operatorname{CE}(f(x_i + \delta^t_i), y_i)` (``+`` to
    leave the label, ``-`` for a targeted attack towards it) and the L2 projection
    :math:`\Pi(\delta) = \delta \min(1, \varepsilon / \|\delta\|_2)`. Normalisation, projection and
    the random start are per example, so every example gets the full budget whatever the batch
    size. With ``bounds``, :math:`x_i + \delta_i` is clipped to the box after each projection;
    since inputs must lie in the box this only shrinks :math:`|\delta_i|` coordinate-wise.

    The model runs in eval mode during the attack (BatchNorm statistics are neither used nor
    updated) with its parameters frozen; mode, ``requires_grad`` and ``.grad`` are restored
    afterwards. It is a :class:`captum.robust.Perturbation`, so it plugs into
    :class:`captum.robust.AttackComparator` (pass ``additional_attack_arg_names=["target"]``).

    Parameters
    ----------
    model : Callable
        Returns logits ``(N, C)`` for ``(N, *shape)`` inputs (a module or a plain function).
    epsilon : float
        Budget :math:`\varepsilon > 0` of each example (L2 norm over all its features, or Linf).
    steps : int
        Number of gradient steps, ``>= 1``.
    norm : {"l2", "linf"}
        Threat model.
    step_size : float, optional
        :math:`\alpha`; defaults to ``2.5 * epsilon / steps``.
    random_start : bool
        Start from a uniform random point of the ball instead of the input itself.
    bounds : tuple of float, optional
        ``(low, high)`` valid input range, e.g. ``(0.0, 1.0)`` for images.
    targeted : bool
        Move towards ``target`` (minimise its cross-entropy) instead of away from it.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> _ = torch.manual_seed(0)
    >>> x = torch.tensor([[0.5, 0.5], [0.1, 0.9]])
    >>> adv = PGD(model, epsilon=0.1, steps=3)(x, target=torch.tensor([0, 1]))
    >>> bool(((adv - x).norm(dim=1) <= 0.1 + 1e-6).all())
    True
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        epsilon: float,
        steps: int = 10,
        norm: Norm = "l2",
        step_size: float | None = None,
        random_start: bool = True,
        bounds: tuple[float, float] | None = None,
        targeted: bool = False,
    ) -> None:
        if not callable(model):
            raise TypeError(f"Expected `model` to be callable but got {type(model).__name__}")
        self.model = model
        self.epsilon = check_positive("epsilon", epsilon)
        self.steps = check_int("steps", steps, minimum=1)
        self.norm = check_choice("norm", norm, NORMS)
        if step_size is None:
            step_size = _DEFAULT_STEP_FACTOR * self.epsilon / self.steps
        self.step_size = check_positive("step_size", step_size)
        self.random_start = bool(random_start)
        self.bounds = _check_bounds(bounds)
        self.targeted = bool(targeted)

    def __repr__(self) -> str:
        return (
            f"PGD(epsilon={self.epsilon}, steps={self.steps}, norm={self.norm!r}, step_size={self.step_size}, "
            f"random_start={self.random_start}, bounds={self.bounds}, targeted={self.targeted})"
        )

    # ------------------------------------------------------------------ per-example geometry
    def _project(self, delta: Tensor) -> Tensor:
        if self.norm == "linf":
            return delta.clamp(-self.epsilon, self.epsilon)
        norms = delta.norm(dim=1, keepdim=True)
        return delta * (self.epsilon / norms.clamp_min(self.epsilon))

    def _step(self, grad: Tensor) -> Tensor:
        if self.norm == "linf":
            return self.step_size * grad.sign()
        return self.step_size * grad / grad.norm(dim=1, keepdim=True).clamp_min(_TINY)

    def _random_start(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        n, d = x.shape
        if self.norm == "linf":
            u = torch.rand(n, d, generator=generator, device=x.device, dtype=x.dtype)
            return self.epsilon * (2 * u - 1)
        direction = torch.randn(n, d, generator=generator, device=x.device, dtype=x.dtype)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(_TINY)
        # radius eps * U^(1/d) makes the point uniform in the ball's volume
        u = torch.rand(n, 1, generator=generator, device=x.device, dtype=x.dtype)
        return direction * (self.epsilon * u.pow(1.0 / d))

    def _clip_to_bounds(self, x: Tensor, delta: Tensor) -> Tensor:
        if self.bounds is None:
            return delta
        low, high = self.bounds
        return (x + delta).clamp(low, high) - x

    # ------------------------------------------------------------------ public API
    def perturb(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any,
        additional_forward_args: Any = None,
        generator: torch.Generator | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Adversarial examples :math:`x + \delta` with :math:`\|\delta_i\| \le \varepsilon` for every example.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            ``(N, *shape)`` inputs (a tuple for multi-input models; the budget then covers all
            their features together).
        target : int, list of int or Tensor
            ``(N,)`` true labels (or the classes to reach when ``targeted``); one int for all.
        additional_forward_args : Any, optional
            Extra arguments passed to the model after the inputs (not perturbed).
        generator : torch.Generator, optional
            Random source of the random start (on the inputs' device), for reproducible attacks.

        Returns
        -------
        Tensor or tuple of Tensor
            Detached adversarial inputs, same form, shapes and device as ``inputs``.
        """
        is_tuple = isinstance(inputs, tuple)
        inputs_t = check_tensor_or_tuple("inputs", inputs)
        n = check_batch("inputs", inputs_t)
        check_float_inputs("inputs", inputs_t, self.model)
        shapes = feature_shapes(inputs_t)
        x = flatten_features([t.detach() for t in inputs_t])
        if self.bounds is not None:
            low, high = self.bounds
            if bool((x < low).any()) or bool((x > high).any()):
                raise ValueError(
                    f"Expected `inputs` to lie within `bounds` {self.bounds} but got values in "
                    f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
                )
        labels = format_target(target, n, x.device, None)
        if labels is None:
            raise ValueError("Expected `target` (class labels) for the attack but got None")

        model = unwrap_parallel(self.model)
        delta = self._random_start(x, generator) if self.random_start else torch.zeros_like(x)
        delta = self._clip_to_bounds(x, self._project(delta))
        sign = -1.0 if self.targeted else 1.0
        with preserved_state(model, train=False, requires_grad=False), torch.enable_grad():
            for _ in range(self.steps):
                delta.requires_grad_(True)
                adv = unflatten_features(x + delta, shapes, (n,))
                logits = run_forward(model, adv, None, additional_forward_args)
                if logits.dim() != 2 or logits.shape[0] != n:
                    raise ValueError(
                        f"Expected `model` to return logits of shape ({n}, C) but got {tuple(logits.shape)}"
                    )
                if int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]:
                    raise ValueError(
                        f"Expected `target` labels in [0, {logits.shape[1]}) but got values in "
                        f"[{int(labels.min())}, {int(labels.max())}]"
                    )
                loss = F.cross_entropy(logits, labels, reduction="sum")
                (grad,) = torch.autograd.grad(sign * loss, delta)
                with torch.no_grad():
                    delta = self._clip_to_bounds(x, self._project(delta + self._step(grad)))
        adv = unflatten_features((x + delta).detach(), shapes, (n,))
        return format_output(is_tuple, adv)
