"""Leave the user's model as it was: every temporary change happens inside a context manager."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from torch import nn


def _set_requires_grad(param: nn.Parameter, flag: bool) -> None:
    if param.requires_grad == flag:
        return
    try:
        param.requires_grad_(flag)
    except RuntimeError:
        # inside a torch.func transform flags cannot change; freezing is only a saving there, as the
        # transform differentiates with respect to its own inputs, not the parameters
        pass


@contextmanager
def preserved_state(model: Any, *, train: bool | None = None, requires_grad: bool | None = None) -> Iterator[None]:
    """Temporarily set a module's mode and parameters' ``requires_grad``; restore both after.

    Also restores every parameter's ``.grad`` to the object it held before, so gradients computed
    inside (e.g. by an attack) never leak into the user's optimizer step. Objects that are not
    :class:`torch.nn.Module` (plain callables) pass through untouched.

    Parameters
    ----------
    model : Any
        The module (or callable) to protect.
    train : bool, optional
        ``True``/``False`` switches to train/eval mode inside the block; ``None`` leaves it.
    requires_grad : bool, optional
        If given, every parameter's ``requires_grad`` is set to it inside the block.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        if train is not None:
            try:
                model.train(train)
            except NotImplementedError:  # exported programs keep the mode they were exported in
                pass
        if requires_grad is not None:
            for p in params:
                _set_requires_grad(p, requires_grad)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag, grad in zip(params, flags, grads):
            _set_requires_grad(p, flag)
            if p.grad is not grad:
                p.grad = grad


def owning_module(obj: Any) -> nn.Module | None:
    """The module behind ``obj``: ``obj`` itself, the module a bound method belongs to, or None."""
    if isinstance(obj, nn.Module):
        return obj
    owner = getattr(obj, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


@contextmanager
def evaluation_state(*objs: Any) -> Iterator[None]:
    """Eval mode and frozen parameters for every module behind ``objs``; all restored after.

    ``objs`` may be modules, bound methods of modules (``vae.decode``) or plain callables (left
    alone). Eval mode makes a network act on each example independently (no batch statistics),
    which batched Jacobians through ``torch.func`` rely on.
    """
    with ExitStack() as stack:
        seen: set[int] = set()
        for obj in objs:
            module = owning_module(obj)
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                stack.enter_context(preserved_state(module, train=False, requires_grad=False))
        yield


def unwrap_parallel(model: Any) -> Any:
    """The module inside a ``DataParallel`` / ``DistributedDataParallel`` wrapper (else ``model``).

    Auxiliary passes that must not take part in gradient synchronisation (an attack's inner
    steps, noisy predictions) run on the unwrapped module; it shares its parameters with the wrapper.
    """
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while isinstance(model, (DataParallel, DistributedDataParallel)):
        model = model.module
    return model
