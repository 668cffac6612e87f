"""Automatic differentiation written once: input gradients and batched JVP/VJP products (``torch.func``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor
from torch.func import jvp, vjp, vmap

from ._captum_compat import TargetType, run_forward
from ._targets import read_target
from ._tensors import chunks, index_examples

GradientKind = Literal["log_softmax", "logit", "logit_sum"]
#: The class-score gradients of :func:`class_gradients`.
GRADIENT_KINDS: tuple[str, ...] = ("log_softmax", "logit", "logit_sum")


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


def check_model_dtype(model: Any, inputs: tuple[Tensor, ...] | Tensor, name: str = "inputs") -> None:
    """Refuse inputs whose floating dtype differs from the model's parameters, before any work.

    A float32 network fed float64, float16 or bfloat16 inputs fails deep inside with a matmul
    error (or silently computes in another precision); this names the argument instead. Plain
    callables, and modules without floating parameters or buffers, are not checked.

    Examples
    --------
    >>> try:
    ...     check_model_dtype(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.float64))
    ... except TypeError as err:
    ...     print(err.args[0][:61])
    Expected `inputs` to have the model's dtype torch.float32 but
    """
    from ._model_state import owning_module

    module = owning_module(model)
    if module is None:
        return
    dtype = next((t.dtype for t in module.parameters() if t.is_floating_point()), None)
    if dtype is None:
        dtype = next((t.dtype for t in module.buffers() if t.is_floating_point()), None)
    if dtype is None:
        return
    for x in inputs if isinstance(inputs, tuple) else (inputs,):
        if x.is_floating_point() and x.dtype != dtype:
            raise TypeError(
                f"Expected `{name}` to have the model's dtype {dtype} but got {x.dtype}; convert the inputs or the "
                "model (model.to(dtype))"
            )


def _is_class_target(target: Any) -> bool:
    """An int, a tensor, or a flat list of numbers: one class index per example (Captum's common case)."""
    if isinstance(target, (int, Tensor)) and not isinstance(target, bool):
        return True
    return isinstance(target, list) and all(isinstance(t, (int, float, Tensor)) for t in target)


def _select(out: Tensor, target: Any) -> Tensor:
    """Captum's target selection, with class targets of 2-d outputs read (and refused) by :func:`read_target`."""
    if target is None:
        return out
    if out.dim() == 2 and (_is_class_target(target) or isinstance(target, bool)):
        labels = read_target(target, out.shape[0], out.device, num_classes=out.shape[1])
        return out.gather(1, labels.reshape(-1, 1)).squeeze(1)
    return run_forward(lambda *_: out, (out,), target, None)


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
    for x in inputs:
        if not x.is_floating_point():
            raise TypeError(
                f"Expected `inputs` to be floating-point tensors (gradients need them) but got dtype {x.dtype}"
            )
    with torch.enable_grad():
        xs = tuple(x if x.requires_grad else x.detach().requires_grad_() for x in inputs)
        out = _select(run_forward(forward_func, xs, None, additional_forward_args), target)
        if out.dim() > 1 and out[0].numel() != 1:
            raise ValueError(
                "Expected `target` to select one output per example (e.g. a class index) but the "
                f"selected output has shape {tuple(out.shape)}"
            )
        grads = torch.autograd.grad(out.sum(), xs, create_graph=create_graph, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads))


class ClassScore:
    r"""A classifier's outputs turned into the class score whose input gradient is wanted.

    ``kind="log_softmax"`` gives :math:`\log\operatorname{softmax}(f(x))` ``(N, C)``,
    ``"logit"`` the logits :math:`f(x)` ``(N, C)`` and ``"logit_sum"``
    :math:`\sum_c f_c(x)` as ``(N, 1)`` (select it with target 0). Usable as the forward
    function of any Captum attribution. The model's output must be ``(N, C)``.

    Examples
    --------
    >>> ClassScore(lambda x: x, "logit_sum")(torch.tensor([[1.0, 2.0]]))
    tensor([[3.]])
    """

    def __init__(self, forward_func: Callable[..., Tensor], kind: GradientKind) -> None:
        if kind not in GRADIENT_KINDS:
            allowed = ", ".join(repr(k) for k in GRADIENT_KINDS)
            raise ValueError(f"Expected `gradient` to be one of {allowed} but got {kind!r}")
        self.forward_func = forward_func
        self.kind = kind

    def __call__(self, *args: Any) -> Tensor:
        out = self.forward_func(*args)
        if not isinstance(out, Tensor) or out.dim() != 2:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"Expected `model` to return (N, C) class scores for gradient={self.kind!r} but got {got}")
        if self.kind == "log_softmax":
            return torch.log_softmax(out, dim=1)
        if self.kind == "logit_sum":
            return out.sum(1, keepdim=True)
        return out


def class_gradients(
    model: Callable[..., Tensor],
    inputs: Tensor | tuple[Tensor, ...],
    target: Any,
    *,
    kind: GradientKind,
    create_graph: bool = False,
    batch_size: int | None = None,
    additional_forward_args: Any = None,
) -> Tensor | tuple[Tensor, ...]:
    r"""Input gradients of a classifier's class scores, the one place they are written.

    For logits :math:`f(x) \in \mathbb{R}^C` and the class :math:`y` of each example,

    .. math::

        g_{\text{log\_softmax}} = \nabla_x \log \operatorname{softmax}(f(x))_y
        = \nabla_x f_y(x) - \sum_c p_c(x) \nabla_x f_c(x), \qquad
        g_{\text{logit}} = \nabla_x f_y(x), \qquad
        g_{\text{logit\_sum}} = \nabla_x \sum_c f_c(x).

    The log-softmax gradient of the Bayes-optimal classifier is the Bayes score difference
    (Srinivas, Bordt & Lakkaraju, NeurIPS 2023); the logit-sum gradient (no target) is the
    default of the paper's released script.

    Parameters
    ----------
    model : Callable
        Returns ``(N, C)`` logits. It is called as it is (the caller chooses eval mode).
    inputs : Tensor or tuple of Tensor
        ``(N, *shape)`` inputs.
    target : int, list, Tensor, "predicted" or None
        Class of each example (read by :func:`~captum_pags._kernel._targets.read_target`;
        ``"predicted"`` takes the model's arg-max). Ignored by ``"logit_sum"``; required otherwise.
    kind : {"log_softmax", "logit", "logit_sum"}
        Which class score is differentiated.
    create_graph : bool
        Keep the graph for double backprop.
    batch_size : int, optional
        Differentiate at most this many examples at a time.
    additional_forward_args : Any, optional
        Extra arguments of ``model``; tensors with a batch dimension are per-example.

    Returns
    -------
    Tensor or tuple of Tensor
        Same form and shapes as ``inputs``.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> class_gradients(model, torch.zeros(1, 2), [1], kind="logit")
    tensor([[3., 4.]])
    >>> class_gradients(model, torch.zeros(1, 2), None, kind="logit_sum")
    tensor([[4., 6.]])
    >>> class_gradients(model, torch.zeros(1, 2), [1], kind="log_softmax")
    tensor([[1., 1.]])
    """
    forward = ClassScore(model, kind)
    is_tuple = isinstance(inputs, tuple)
    inputs_t = inputs if is_tuple else (inputs,)
    n = int(inputs_t[0].shape[0])
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"Expected `batch_size` to be an int >= 1 but got {batch_size!r}")
    predicted = isinstance(target, str) and target == "predicted"
    labels_all = None
    if kind != "logit_sum" and not predicted:
        labels_all = read_target(target, n, inputs_t[0].device, name="target", required=True)
    parts: list[tuple[Tensor, ...]] = []
    for sl in chunks(n, batch_size):
        xs = tuple(x[sl] for x in inputs_t)
        m = sl.stop - sl.start
        args = index_examples(additional_forward_args, torch.arange(sl.start, sl.stop), n)
        if kind == "logit_sum":
            labels = torch.zeros(m, dtype=torch.long, device=xs[0].device)
        elif labels_all is not None:
            labels = labels_all[sl]
        else:
            with torch.no_grad():
                scores = run_forward(model, tuple(x.detach() for x in xs), None, args)
            labels = read_target(target, m, xs[0].device, predict=lambda scores=scores: scores)
        parts.append(_selected_gradients(forward, xs, labels, args, create_graph))
    grads = tuple(torch.cat([p[i] for p in parts]) for i in range(len(inputs_t))) if len(parts) > 1 else parts[0]
    return grads if is_tuple else grads[0]


def _selected_gradients(
    forward: ClassScore, xs: tuple[Tensor, ...], labels: Tensor, args: Any, create_graph: bool
) -> tuple[Tensor, ...]:
    with torch.enable_grad():
        leaves = tuple(x if x.requires_grad else x.detach().requires_grad_() for x in xs)
        out = run_forward(forward, leaves, None, args)
        if out.shape[0] != labels.shape[0]:
            raise ValueError(
                f"Expected `model` to return one row of class scores per example ({labels.shape[0]}) but got "
                f"{tuple(out.shape)}"
            )
        if labels.numel() and int(labels.max()) >= out.shape[1]:
            raise ValueError(
                f"Expected `target` labels in [0, {out.shape[1]}) (the model's classes) but got {int(labels.max())}"
            )
        selected = out.gather(1, labels.to(out.device).reshape(-1, 1))
        grads = torch.autograd.grad(selected.sum(), leaves, create_graph=create_graph, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads))
