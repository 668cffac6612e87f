"""Randomized subspace iteration on a network Jacobian, from batched JVPs/VJPs (used by DenoiserTangent)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.func import vjp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._kernel._autodiff import _explained_errors, jvp_many, vjp_many
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


def canonical_signs(rows: Tensor) -> Tensor:
    """Flip each row so that its entry of largest magnitude is positive (eigenvectors have no sign of their own).

    Makes a basis independent of how the batch was chunked.
    """
    pivot = rows.gather(-1, rows.abs().argmax(-1, keepdim=True))
    return rows * torch.where(pivot < 0, -1.0, 1.0).to(rows.dtype)


def _check_nonzero(y: Tensor) -> None:
    if not bool(y.abs().amax(dim=(1, 2)).gt(0).all()):
        raise ValueError(
            "Expected `denoiser` to be differentiable with respect to its input, but its Jacobian is zero at "
            "some inputs (does it run under torch.no_grad or detach its input?)"
        )


def _orthogonal_complement_rows(rows: Tensor, basis: Tensor | None) -> Tensor:
    """Orthonormal rows spanning ``rows`` with the span of ``basis`` removed (projected out twice)."""
    if basis is None:
        return _orthonormalise(rows)
    for _ in range(2):  # "twice is enough" (Kahan, Parlett)
        rows = _orthonormalise(rows - (rows @ basis.transpose(1, 2)) @ basis)
    return rows


def symmetric_iteration(products: JacobianProducts, probes: Tensor, k: int, iterations: int) -> tuple[Tensor, Tensor]:
    r"""Leading eigen-directions of a (nearly) symmetric ``J`` from VJPs only: randomized block Krylov.

    .. math::

        Q_0 = \operatorname{orth}(\Omega), \quad Y_i = J^\top Q_i, \quad
        Q_{i+1} = \operatorname{orth}\big((I - K_i K_i^\top) Y_i\big), \quad
        K_i = [Q_0, \dots, Q_i] \quad (i = 0..q),

    then Rayleigh-Ritz on the whole Krylov space: the ``k`` largest eigenpairs of the
    (symmetrised) :math:`K_q^\top J K_q`, whose image :math:`J K_q = [Y_0, \dots, Y_q]` is already
    known (Musco & Musco, NeurIPS 2015). Every block is orthogonalised against the earlier ones
    before the network sees it, so the products are never recombined through an ill-conditioned
    change of basis. ``q + 1`` passes of ``m`` products per example, no forward-mode AD.

    Returns the ``(n, k, D)`` basis and the ``(n, m)`` leading Ritz values (clamped at 0).
    """
    m = probes.shape[1]
    q = _orthonormalise(probes)
    y = products.vjp(q)
    _check_nonzero(y)
    krylov, images = q, [y]
    for _ in range(iterations):
        room = min(m, krylov.shape[2] - krylov.shape[1])  # the Krylov space cannot outgrow R^D
        if room == 0:
            break
        q = _orthogonal_complement_rows(y, krylov)[:, :room]
        y = products.vjp(q)
        krylov = torch.cat([krylov, q], 1)
        images.append(y)
    h = (krylov @ torch.cat(images, 1).transpose(1, 2)).double()  # K^T J^T K
    ritz, z = torch.linalg.eigh((h + h.transpose(1, 2)) / 2)
    ritz, z = ritz.flip(-1), z.flip(-1).to(krylov.dtype)
    basis = z[:, :, :k].transpose(1, 2) @ krylov
    return canonical_signs(basis), ritz[:, :m].clamp_min(0).to(krylov.dtype)


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
    return canonical_signs(u_hat.transpose(1, 2) @ q), spectrum
