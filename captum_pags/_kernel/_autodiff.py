"""Automatic differentiation written once: input gradients and batched JVP/VJP products (``torch.func``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.func import jvp, vjp, vmap

from ._captum_compat import TargetType, run_forward


@contextmanager
def _explained_errors() -> Iterator[None]:
    try:
        with warnings.catch_warnings():
            # torch scripts its forward-AD decompositions on first use; not the user's concern
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            yield
    except RuntimeError as err:
        if "in-place operation" in str(err) and "captured Tensor" in str(err):
            raise RuntimeError(
                "The network updated a buffer in place during a torch.func transform (e.g. BatchNorm in train "
                "mode). Pass the module itself or a bound method of it (it is then evaluated in eval mode), or put "
                "the network in eval mode before wrapping it in a function."
            ) from err
        raise


def _repeat(primal: Tensor, m: int) -> Tensor:
    return primal.unsqueeze(0).expand(m, *primal.shape).reshape(m * primal.shape[0], *primal.shape[1:])


def jvp_many(fn: Callable[[Tensor], Tensor], primal: Tensor, tangents: Tensor, *, vectorize: bool = True) -> Tensor:
    """Forward-mode products ``J_fn(primal) @ t`` for ``m`` tangents at once.

    ``primal`` is ``(N, *in_shape)``, ``tangents`` ``(m, N, *in_shape)``; returns
    ``(m, N, *out_shape)``. ``fn`` must act on each example independently. With ``vectorize``
    the ``m`` products run under :func:`torch.func.vmap` (the primal is evaluated once); without
    it they are folded into one batch of ``m * N`` examples, which works for any function that
    ``torch.func.jvp`` supports.
    """
    with _explained_errors():
        if vectorize:
            return vmap(lambda t: jvp(fn, (primal,), (t,))[1])(tangents)
        m, n = tangents.shape[:2]
        out = jvp(fn, (_repeat(primal, m),), (tangents.reshape(m * n, *tangents.shape[2:]),))[1]
        return out.reshape(m, n, *out.shape[1:])


def vjp_many(fn: Callable[[Tensor], Tensor], primal: Tensor, cotangents: Tensor, *, vectorize: bool = True) -> Tensor:
    """Reverse-mode products ``c @ J_fn(primal)`` for ``m`` cotangents at once.

    ``primal`` is ``(N, *in_shape)``, ``cotangents`` ``(m, N, *out_shape)``; returns
    ``(m, N, *in_shape)``. One forward pass, then ``m`` backward passes under
    :func:`torch.func.vmap` (or folded into one batch when ``vectorize`` is False).
    """
    with _explained_errors():
        if vectorize:
            _, pullback = vjp(fn, primal)
            return vmap(lambda c: pullback(c)[0])(cotangents)
        m, n = cotangents.shape[:2]
        _, pullback = vjp(fn, _repeat(primal, m))
        out = pullback(cotangents.reshape(m * n, *cotangents.shape[2:]))[0]
        return out.reshape(m, n, *out.shape[1:])


def input_gradients(
    forward_func: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    target: TargetType = None,
    additional_forward_args: Any = None,
    create_graph: bool = False,
) -> tuple[Tensor, ...]:
    r"""Gradients :math:`\nabla_x f_t(x)` of the selected outputs w.r.t. each input tensor.

    Unlike Captum's helper, ``create_graph=True`` keeps the graph so that the gradients can be
    differentiated again (double backprop). Parameters' ``.grad`` are never touched
    (:func:`torch.autograd.grad` only). The user's input tensors are not modified: a leaf copy is
    made when they do not require gradients.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> input_gradients(model, (torch.zeros(1, 2),), target=1)
    (tensor([[3., 4.]]),)
    """
    with torch.enable_grad():
        xs = tuple(x if x.requires_grad else x.detach().requires_grad_() for x in inputs)
        out = run_forward(forward_func, xs, target, additional_forward_args)
        if out.dim() > 1 and out[0].numel() != 1:
            raise ValueError(
                "Expected `target` to select one output per example (e.g. a class index) but the "
                f"selected output has shape {tuple(out.shape)}"
            )
        grads = torch.autograd.grad(out.sum(), xs, create_graph=create_graph, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads))
