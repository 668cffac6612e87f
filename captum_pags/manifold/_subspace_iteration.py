"""Randomized subspace iteration on a network Jacobian, from batched JVPs/VJPs (used by DenoiserTangent)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.func import vjp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._kernel._autodiff import _explained_errors, jvp_many, vjp_many
from .._kernel._linalg import principal_rows
from .._kernel._tensors import chunks

Fn = Callable[[Tensor], Tensor]


@contextmanager
def transformable_attention() -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` with its math implementation inside the block.

    The fused CPU/GPU kernels (flash, memory-efficient) have no forward-mode AD and no ``vmap``
    rule over their backward; the math implementation is built from ordinary operations that
    ``torch.func`` transforms. :func:`torch.nn.attention.sdpa_kernel` restores the previous
    backend selection on exit, also after an error. Nothing of the model is changed.
    """
    with sdpa_kernel(SDPBackend.MATH):
        yield


def _rows(vectors: Tensor) -> Tensor:
    """``(m, n, *shape)`` -> ``(n, m, D)``."""
    m, n = vectors.shape[:2]
    return vectors.reshape(m, n, -1).transpose(0, 1)


def _directions(rows: Tensor, shape: torch.Size) -> Tensor:
    """``(n, m, D)`` -> ``(m, n, *shape)``."""
    n, m, _ = rows.shape
    return rows.transpose(0, 1).reshape(m, n, *shape)


def _orthonormalise(rows: Tensor) -> Tensor:
    """``(n, m, D)`` rows -> orthonormal rows spanning them (QR; rank-deficient sets still come out orthonormal)."""
    return torch.linalg.qr(rows.transpose(1, 2)).Q.transpose(1, 2)


class JacobianProducts:
    """Products of ``J = d fn / dx`` at ``x`` with blocks of probe vectors, counted per example.

    ``probe_chunk_size`` probes go through one vectorised pass (``None``: all); the forward pass
    of the VJPs is shared by all chunks. :attr:`count` is the number of Jacobian-vector products
    per example done so far.
    """

    def __init__(self, fn: Fn, x: Tensor, probe_chunk_size: int | None, vectorize: bool) -> None:
        self.fn, self.x, self.shape = fn, x, x.shape[1:]
        self.probe_chunk_size, self.vectorize = probe_chunk_size, vectorize
        self.count = 0
        self._pullback: Callable[[Tensor], tuple[Tensor, ...]] | None = None

    def _checked(self, out: Tensor) -> Tensor:
        if out.shape[1:] != self.x.shape:
            raise ValueError(
                f"Expected `denoiser` to return the shape of `inputs` {tuple(self.x.shape)} but got "
                f"{tuple(out.shape[1:])}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError("Expected the Jacobian of `denoiser` to be finite but it contains NaN or inf")
        return out

    def jvp(self, rows: Tensor) -> Tensor:
        """``J v`` for ``(n, m, D)`` rows ``v``; returns ``(n, m, D)``."""
        tangents = _directions(rows, self.shape)
        parts = [
            jvp_many(self.fn, self.x, tangents[s], vectorize=self.vectorize)
            for s in chunks(tangents.shape[0], self.probe_chunk_size)
        ]
        self.count += rows.shape[1]
        return _rows(self._checked(torch.cat(parts)))

    def vjp(self, rows: Tensor) -> Tensor:
        """``J^T c`` for ``(n, m, D)`` rows ``c``; returns ``(n, m, D)``."""
        cotangents = _directions(rows, self.shape)
        parts = []
        for s in chunks(cotangents.shape[0], self.probe_chunk_size):
            if not self.vectorize:
                parts.append(vjp_many(self.fn, self.x, cotangents[s], vectorize=False))
                continue
            with _explained_errors():
                if self._pullback is None:  # one forward pass, shared by every block of probes
                    out, self._pullback = vjp(self.fn, self.x)
                    self._checked(out.unsqueeze(0))
                pullback = self._pullback
                parts.append(vmap(lambda u, pb=pullback: pb(u)[0])(cotangents[s]))
        self.count += rows.shape[1]
        return _rows(self._checked(torch.cat(parts)))


def _check_nonzero(y: Tensor) -> None:
    if not bool(y.abs().amax(dim=(1, 2)).gt(0).all()):
        raise ValueError(
            "Expected `denoiser` to be differentiable with respect to its input, but its Jacobian is zero at "
            "some inputs (does it run under torch.no_grad or detach its input?)"
        )


def symmetric_iteration(products: JacobianProducts, probes: Tensor, k: int, iterations: int) -> tuple[Tensor, Tensor]:
    r"""Leading eigen-directions of a (nearly) symmetric ``J`` from VJPs only.

    .. math::

        Y_0 = J^\top \Omega, \qquad Y_{i+1} = J^\top \operatorname{orth}(Y_i), \qquad
        B = \text{top-}k \text{ left singular vectors of } Y_q,

    ``q + 1`` passes of ``m`` products per example; the span of :math:`Y_q` is that of
    :math:`J^{q+1}\Omega` for symmetric :math:`J`. No forward-mode AD is needed.

    Returns the ``(n, k, D)`` basis and the ``(n, m)`` singular values of :math:`Y_q`.
    """
    y = products.vjp(probes)
    _check_nonzero(y)
    for _ in range(iterations):
        y = products.vjp(_orthonormalise(y))
    spectrum, rows = principal_rows(y, method="gram")
    return rows[:, :k], spectrum


def general_iteration(products: JacobianProducts, probes: Tensor, k: int, iterations: int) -> tuple[Tensor, Tensor]:
    r"""Leading left singular vectors of a general ``J`` (Halko, Martinsson & Tropp, 2011), JVPs and VJPs.

    .. math::

        Q \leftarrow \operatorname{orth}(J \Omega), \quad
        Q \leftarrow \operatorname{orth}\big(J \operatorname{orth}(J^\top Q)\big)\ (q \text{ times}), \quad
        Q^\top J = \hat U \hat S \hat V^\top, \quad B = (Q \hat U_{:, :k})^\top,

    ``2q + 2`` passes of ``m`` products per example.
    """
    y = products.jvp(probes)
    _check_nonzero(y)
    q = _orthonormalise(y)
    for _ in range(iterations):
        q = _orthonormalise(products.vjp(q))
        q = _orthonormalise(products.jvp(q))
    qt_j = products.vjp(q)  # rows of Q^T J
    evals, evecs = torch.linalg.eigh((qt_j @ qt_j.transpose(1, 2)).double())
    spectrum = evals.flip(-1).clamp_min(0).sqrt().to(q.dtype)
    u_hat = evecs.flip(-1)[:, :, :k].to(q.dtype)
    return u_hat.transpose(1, 2) @ q, spectrum
