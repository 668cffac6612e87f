"""Many Jacobian-vector and vector-Jacobian products at one point, batched with ``torch.func``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import Tensor
from torch.func import jvp, vjp, vmap


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
