"""Linear algebra written once: orthonormal rows, projections onto them, principal angles."""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import check_tensor

__all__ = ["orthonormal_rows", "principal_angles", "principal_rows", "project_onto_rows"]


def orthonormal_rows(vectors: Tensor, rtol: float | None = None, *, name: str = "basis", drop: bool = False) -> Tensor:
    r"""Orthonormalise the rows of ``vectors`` (shape ``(..., k, D)``) with an SVD.

    .. math::

        V = U S W^\top \;\Rightarrow\; \text{rows of } W^\top_{:r},\quad
        r = \#\{ i : s_i > \text{rtol}\cdot s_1 \}

    Parameters
    ----------
    vectors : Tensor
        ``(k, D)`` or ``(N, k, D)`` spanning vectors.
    rtol : float, optional
        Relative singular-value threshold; defaults to ``max(k, D) * eps`` of the dtype.
    name : str
        Argument name used in error messages.
    drop : bool
        If False, a rank-deficient set raises :class:`ValueError`. If True, directions below the
        threshold are returned as zero rows, so the shape stays ``(..., k, D)`` and projections
        simply ignore them.

    Returns
    -------
    Tensor
        Same shape as ``vectors``; its rows are orthonormal (or zero when dropped) and span the
        same space.

    Examples
    --------
    >>> b = orthonormal_rows(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    >>> torch.allclose(b @ b.T, torch.eye(2), atol=1e-6)
    True
    """
    k, d = vectors.shape[-2:]
    if k > d:
        raise ValueError(f"Expected `{name}` to have at most D={d} rows but got {k}")
    if rtol is None:
        rtol = max(k, d) * torch.finfo(vectors.dtype).eps
    _, s, vh = torch.linalg.svd(vectors, full_matrices=False)
    keep = s > rtol * s[..., :1].clamp_min(torch.finfo(vectors.dtype).tiny)
    if not drop and not bool(keep.all()):
        rank = int(keep.sum(-1).min())
        raise ValueError(
            f"Expected `{name}` to have full rank {k} but its numerical rank is {rank} "
            f"(relative singular-value threshold {rtol:.1e}); its rows cannot be orthonormalised"
        )
    return vh * keep.unsqueeze(-1).to(vh.dtype)


def principal_rows(vectors: Tensor, k: int | None = None, rtol: float | None = None) -> tuple[Tensor, Tensor]:
    """Leading singular pairs of ``(..., n, D)`` matrices through their ``(n, n)`` Gram matrix (cheap for n << D).

    Returns the ``k`` (default ``n``) largest singular values ``(..., k)`` and the matching right
    singular vectors as orthonormal rows ``(..., k, D)``; directions with ``s <= rtol * s_1``
    (``rtol`` defaulting to ``max(n, D)`` times the dtype's epsilon, as in
    :func:`orthonormal_rows`) come back as zero rows. The ``(n, n)`` Gram matrix is formed and
    eigendecomposed in float64, so this costs a few ``n^2 D`` matrix products instead of an SVD;
    the rows ``u^T V / s`` are then re-orthonormalised by one Cholesky-QR step (order and span
    unchanged) to repair rounding in the input's dtype.
    """
    n, d = vectors.shape[-2:]
    k = n if k is None else k
    if rtol is None:
        rtol = max(n, d) * torch.finfo(vectors.dtype).eps
    wide = vectors.double()
    evals, evecs = torch.linalg.eigh(wide @ wide.transpose(-1, -2))  # ascending
    sv = evals.flip(-1)[..., :k].clamp_min(0).sqrt()
    keep = sv > rtol * sv[..., :1]
    inv = torch.where(keep, 1 / sv.clamp_min(torch.finfo(sv.dtype).tiny), torch.zeros_like(sv))
    coeffs = evecs.flip(-1)[..., :k] * inv.unsqueeze(-2)  # (..., n, k)
    rows = coeffs.transpose(-1, -2).to(vectors.dtype) @ vectors  # (..., k, D)
    # nearly orthonormal already, so the repair step's Gram matrix needs no extra precision
    overlap = (rows @ rows.transpose(-1, -2)).double() + torch.diag_embed((~keep).to(torch.float64))
    repair = torch.linalg.inv(torch.linalg.cholesky(overlap)).to(vectors.dtype)
    return sv.to(vectors.dtype), repair @ rows


def project_onto_rows(basis: Tensor, vectors: Tensor) -> Tensor:
    r"""Project flat vectors onto the span of orthonormal rows: :math:`B^\top B v`.

    Parameters
    ----------
    basis : Tensor
        ``(k, D)`` (shared by the batch) or ``(N, k, D)`` (one basis per example).
    vectors : Tensor
        ``(N, M, D)`` vectors, ``M`` of them per example.

    Returns
    -------
    Tensor
        ``(N, M, D)`` projections.

    Examples
    --------
    >>> project_onto_rows(torch.tensor([[0.0, 1.0]]), torch.tensor([[[3.0, 4.0]]]))
    tensor([[[0., 4.]]])
    """
    if basis.dim() == 2:
        return (vectors @ basis.transpose(0, 1)) @ basis
    return torch.bmm(torch.bmm(vectors, basis.transpose(1, 2)), basis)


def principal_angles(basis_a: Tensor, basis_b: Tensor) -> Tensor:
    r"""Principal angles between the spans of two sets of orthonormal rows, in radians.

    With orthonormal rows :math:`A \in \mathbb{R}^{k_a \times D}`, :math:`B \in \mathbb{R}^{k_b \times D}`
    and :math:`k = \min(k_a, k_b)`, the cosines are the singular values of :math:`A B^\top` and the
    sines those of the part of the smaller set orthogonal to the larger one (Björck & Golub, 1973):

    .. math::

        \cos\theta_i = \sigma_i(A B^\top), \qquad
        \sin\theta_{k+1-i} = \sigma_i\big(B (I - A^\top A)\big) \;(k_b \le k_a), \qquad
        \theta_i = \operatorname{atan2}(\sin\theta_i, \cos\theta_i),

    which stays accurate for tiny angles (an ``arccos`` alone loses half the digits there).

    Parameters
    ----------
    basis_a : Tensor
        ``(..., k_a, D)`` orthonormal rows (e.g. an estimated basis ``(N, k, D)``).
    basis_b : Tensor
        ``(..., k_b, D)`` orthonormal rows; leading dimensions broadcast against ``basis_a``.

    Returns
    -------
    Tensor
        ``(..., min(k_a, k_b))`` angles in :math:`[0, \pi/2]`, ascending; the last one is the
        largest principal angle. Zero rows (directions an estimator dropped) count as orthogonal
        (angle :math:`\\pi/2`).

    Examples
    --------
    >>> a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    >>> torch.rad2deg(principal_angles(a, b))
    tensor([ 0.0000, 53.1301])
    """
    check_tensor("basis_a", basis_a)
    check_tensor("basis_b", basis_b)
    for name, t in (("basis_a", basis_a), ("basis_b", basis_b)):
        if t.dim() < 2 or t.shape[-2] == 0:
            raise ValueError(f"Expected `{name}` to have shape (..., k, D) with k >= 1 but got {tuple(t.shape)}")
    if basis_a.shape[-1] != basis_b.shape[-1]:
        raise ValueError(
            f"Expected `basis_a` and `basis_b` to have the same number of features D but got "
            f"{basis_a.shape[-1]} and {basis_b.shape[-1]}"
        )
    dtype = torch.promote_types(basis_a.dtype, basis_b.dtype)
    big, small = basis_a.to(dtype), basis_b.to(dtype)
    if small.shape[-2] > big.shape[-2]:
        big, small = small, big
    cross = small @ big.transpose(-1, -2)  # (..., k_small, k_big)
    cos = torch.linalg.svdvals(cross).clamp(0.0, 1.0)  # descending
    residual = small - cross @ big
    sin = torch.linalg.svdvals(residual).clamp(0.0, 1.0).flip(-1)  # ascending
    # A zero row of the smaller set adds a zero sine in front and a zero cosine at the end;
    # shift the sines past those and call the dropped directions orthogonal.
    k = small.shape[-2]
    zero_rows = (small.square().sum(-1) < 0.5).sum(-1, keepdim=True)
    idx = torch.arange(k, device=small.device) + zero_rows
    sin = torch.where(idx < k, sin.gather(-1, idx.clamp(max=k - 1).expand_as(sin)), torch.ones_like(sin))
    return torch.atan2(sin, cos)
