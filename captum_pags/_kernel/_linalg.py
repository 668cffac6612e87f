"""Linear algebra written once: orthonormal rows, projections onto them, principal angles.

Dtype rules, shared by every routine here:

* the math runs in float64 for float64 and integer inputs and in float32 for float32, float16 and
  bfloat16 inputs (16-bit floats use the tolerances of that float32 computation, not their own
  epsilon, so nothing turns into NaN);
* results come back in the input's floating dtype, integer inputs in the default float dtype
  (never truncated back to integers);
* two tensors of different float dtypes (a float32 vector, a float64 basis) are combined in the
  wider one and the result takes the vectors' dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ._validation import check_tensor

__all__ = [
    "compute_dtype",
    "default_rtol",
    "orthonormal_rows",
    "principal_angles",
    "principal_rows",
    "project_onto_rows",
    "result_dtype",
]


def _check_real(name: str, t: Tensor) -> None:
    if t.is_complex():
        raise TypeError(f"Expected `{name}` to be a real tensor but got {t.dtype}")


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype the math runs in: float64 if any input is float64 or an integer, else float32.

    Examples
    --------
    >>> compute_dtype(torch.bfloat16), compute_dtype(torch.float32, torch.float64), compute_dtype(torch.uint8)
    (torch.float32, torch.float64, torch.float64)
    """
    wide = any(d == torch.float64 or not d.is_floating_point for d in dtypes)
    return torch.float64 if wide else torch.float32


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a result comes back in: the input's float dtype, or the default float dtype for integers.

    Examples
    --------
    >>> result_dtype(torch.float16), result_dtype(torch.int64)
    (torch.float16, torch.float32)
    """
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def default_rtol(dtype: torch.dtype, n: int, d: int, method: Literal["svd", "gram"] = "svd") -> float:
    r"""Relative singular-value threshold just above the rounding-noise floor.

    A direction is kept when :math:`s_i > \text{rtol}\cdot s_1`. Two noise floors bound what can
    be told from zero:

    * the input's own rounding, with relative size about :math:`\sqrt{\max(n, D)}\,\epsilon_{in}`
      (:math:`\epsilon_{in}` of the compute dtype, so float32's for 16-bit floats), kept with a
      safety factor of 10;
    * for the Gram route only, the Gram matrix :math:`V V^\top` (formed in float64) squares the
      condition number, so its rounding of about :math:`\max(n, D)\,\epsilon_{64}\,s_1^2` sits at
      :math:`\sqrt{\max(n, D)\,\epsilon_{64}}\,s_1` in the singular values, again with a factor 10
      (inside the square root).

    For a float64 ``(16, 3072)`` Jacobian this is :math:`2.6\cdot 10^{-6}`, for a float32 one
    :math:`6.6\cdot 10^{-5}`: rounding noise is dropped, a real direction with gain ``1e-3`` kept.

    Examples
    --------
    >>> f"{default_rtol(torch.float64, 3, 20, 'gram'):.1e}", f"{default_rtol(torch.float32, 3, 20):.1e}"
    ('2.1e-07', '5.3e-06')
    """
    big = max(n, d, 1)
    eps_in = torch.finfo(compute_dtype(dtype)).eps
    rtol = 10.0 * math.sqrt(big) * eps_in
    if method == "gram":
        rtol = max(rtol, math.sqrt(10.0 * big * torch.finfo(torch.float64).eps))
    return rtol


def principal_rows(
    vectors: Tensor,
    k: int | None = None,
    rtol: float | None = None,
    *,
    method: Literal["auto", "svd", "gram"] = "auto",
    name: str = "vectors",
    drop: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Leading singular values and right singular vectors (as orthonormal rows) of ``(..., n, D)`` matrices.

    The one orthonormalisation of the package: every estimator and :func:`orthonormal_rows` call
    it. With :math:`V = U S W^\top`,

    .. math::

        \text{rows} = W^\top_{:k}, \qquad
        \text{row } i \text{ is set to zero when } s_i \le \text{rtol}\cdot s_1 .

    ``method="gram"`` eigendecomposes the small :math:`n \times n` Gram matrix :math:`V V^\top` in
    float64 and forms :math:`u_i^\top V / s_i`, re-orthonormalised by one Cholesky-QR step (cheap
    for :math:`n \ll D`); ``"svd"`` runs an SVD in the compute dtype; ``"auto"`` takes the Gram
    route when :math:`4n \le D`. Integer and 16-bit inputs are promoted (see the module notes);
    ``rtol`` defaults to :func:`default_rtol` of the route taken.

    Parameters
    ----------
    vectors : Tensor
        ``(..., n, D)`` real matrices.
    k : int, optional
        Number of leading pairs to return (default ``n``; at most ``min(n, D)``).
    rtol : float, optional
        Relative singular-value threshold.
    method : {"auto", "svd", "gram"}
        Numerical route.
    name : str
        Argument name used in error messages.
    drop : bool
        True: directions at or below the threshold come back as zero rows. False: they raise a
        :class:`ValueError` naming ``name`` (a set that must have full rank).

    Returns
    -------
    (singular_values, rows)
        ``(..., k)`` descending singular values and ``(..., k, D)`` rows in
        :func:`result_dtype` of the input.

    Examples
    --------
    >>> s, rows = principal_rows(torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    >>> s, rows
    (tensor([3., 0.]), tensor([[1., 0., 0.],
            [0., 0., 0.]]))
    """
    check_tensor(name, vectors)
    _check_real(name, vectors)
    if vectors.dim() < 2:
        raise ValueError(f"Expected `{name}` to have shape (..., n, D) but got {tuple(vectors.shape)}")
    n, d = vectors.shape[-2:]
    k = min(n, d) if k is None else k
    if not 1 <= k <= min(n, d):
        raise ValueError(f"Expected `k` to be in 1..min(n, D) = {min(n, d)} but got {k}")
    if method == "auto":
        method = "gram" if 4 * n <= d else "svd"
    if method not in ("svd", "gram"):
        raise ValueError(f"Expected `method` to be one of 'auto', 'svd', 'gram' but got {method!r}")
    rtol = default_rtol(vectors.dtype, n, d, method) if rtol is None else float(rtol)
    out = result_dtype(vectors.dtype)
    if method == "gram":
        sv, rows, keep = _gram_rows(vectors.to(torch.float64), k, rtol)
    else:
        work = vectors.to(compute_dtype(vectors.dtype))
        _, s, vh = torch.linalg.svd(work, full_matrices=False)
        sv, rows = s[..., :k], vh[..., :k, :]
        keep = sv > rtol * sv[..., :1].clamp_min(torch.finfo(sv.dtype).tiny)
        rows = rows * keep.unsqueeze(-1).to(rows.dtype)
    if not drop and not bool(keep.all()):
        rank = int(keep.sum(-1).min())
        raise ValueError(
            f"Expected `{name}` to have full rank {k} but its numerical rank is {rank} "
            f"(relative singular-value threshold {rtol:.1e}); its rows cannot be orthonormalised"
        )
    return sv.to(out), rows.to(out)


def _gram_rows(wide: Tensor, k: int, rtol: float) -> tuple[Tensor, Tensor, Tensor]:
    evals, evecs = torch.linalg.eigh(wide @ wide.transpose(-1, -2))  # ascending
    sv = evals.flip(-1)[..., :k].clamp_min(0).sqrt()
    keep = sv > rtol * sv[..., :1]
    inv = torch.where(keep, 1 / sv.clamp_min(torch.finfo(sv.dtype).tiny), torch.zeros_like(sv))
    coeffs = evecs.flip(-1)[..., :k] * inv.unsqueeze(-2)  # (..., n, k)
    rows = coeffs.transpose(-1, -2) @ wide  # (..., k, D)
    overlap = rows @ rows.transpose(-1, -2) + torch.diag_embed((~keep).to(wide.dtype))
    repair = torch.linalg.solve_triangular(
        torch.linalg.cholesky(overlap), torch.eye(k, dtype=wide.dtype, device=wide.device), upper=False
    )
    return sv, repair @ rows, keep


def orthonormal_rows(vectors: Tensor, rtol: float | None = None, *, name: str = "basis", drop: bool = False) -> Tensor:
    r"""Orthonormalise the rows of ``vectors`` (shape ``(..., k, D)``): the span, as orthonormal rows.

    .. math::

        V = U S W^\top \;\Rightarrow\; \text{rows of } W^\top_{:r},\quad
        r = \#\{ i : s_i > \text{rtol}\cdot s_1 \}

    A thin wrapper of :func:`principal_rows` (the one orthonormalisation of the package) with the
    same dtype promotion: integer rows come back in the default float dtype, 16-bit rows are
    orthonormalised in float32.

    Parameters
    ----------
    vectors : Tensor
        ``(k, D)`` or ``(N, k, D)`` spanning vectors.
    rtol : float, optional
        Relative singular-value threshold; defaults to :func:`default_rtol`.
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
    check_tensor(name, vectors)
    if vectors.dim() < 2:
        raise ValueError(f"Expected `{name}` to have shape (..., k, D) but got {tuple(vectors.shape)}")
    k, d = vectors.shape[-2:]
    if k > d:
        raise ValueError(f"Expected `{name}` to have at most D={d} rows but got {k}")
    if k == 0:
        raise ValueError(f"Expected `{name}` to have at least one row but got shape {tuple(vectors.shape)}")
    return principal_rows(vectors, rtol=rtol, method="svd", name=name, drop=drop)[1]


def project_onto_rows(basis: Tensor, vectors: Tensor) -> Tensor:
    r"""Project flat vectors onto the span of orthonormal rows: :math:`B^\top B v`.

    Computed in the wider of the two compute dtypes (a float32 vector with a float64 basis is
    projected in float64) and returned in the vectors' float dtype (integers: the default float
    dtype), so that projecting twice equals projecting once up to the rounding of that dtype.

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
    >>> project_onto_rows(torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.tensor([[[3, 4]]]))
    tensor([[[0., 4.]]])
    """
    work = compute_dtype(basis.dtype, vectors.dtype)
    b, v = basis.to(work), vectors.to(work)
    if b.dim() == 2:
        out = (v @ b.transpose(0, 1)) @ b
    else:
        out = torch.bmm(torch.bmm(v, b.transpose(1, 2)), b)
    return out.to(result_dtype(vectors.dtype))


def _orthonormality_tolerance(dtype: torch.dtype) -> float:
    return 5e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-3


def _check_orthonormal(name: str, rows: Tensor, original: torch.dtype) -> Tensor:
    """Mask ``(..., k)`` of non-zero rows, after checking they are orthonormal (zero rows allowed)."""
    tol = _orthonormality_tolerance(original)
    norms = rows.norm(dim=-1)
    nonzero = norms > 0.5
    gram = rows @ rows.transpose(-1, -2)
    expected = torch.diag_embed(nonzero.to(rows.dtype))
    err = (gram - expected).abs()
    bad_norm = ((norms - 1).abs() > tol) & (norms > tol)
    if bool(bad_norm.any()) or not bool((err <= tol).all()):
        worst = float(err.max())
        raise ValueError(
            f"Expected `{name}` to have orthonormal rows (or zero rows) but |B B^T - I| reaches {worst:.2g} "
            f"(tolerance {tol:g}); orthonormalise them first, e.g. with `orthonormal_rows`"
        )
    return nonzero


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
    Rows that are not orthonormal (within ``1e-3``, ``5e-2`` for 16-bit floats) are refused with
    a :class:`ValueError`: the formula would return angles that mean nothing. The math runs in
    the wider compute dtype of the two (float32 for 16-bit inputs).

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
        _check_real(name, t)
        if t.dim() < 2 or t.shape[-2] == 0:
            raise ValueError(f"Expected `{name}` to have shape (..., k, D) with k >= 1 but got {tuple(t.shape)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"Expected `{name}` to hold finite values but it contains NaN or inf")
    if basis_a.shape[-1] != basis_b.shape[-1]:
        raise ValueError(
            f"Expected `basis_a` and `basis_b` to have the same number of features D but got "
            f"{basis_a.shape[-1]} and {basis_b.shape[-1]}"
        )
    dtype = compute_dtype(basis_a.dtype, basis_b.dtype)
    big, small = basis_a.to(dtype), basis_b.to(dtype)
    nz_a = _check_orthonormal("basis_a", big, basis_a.dtype)
    nz_b = _check_orthonormal("basis_b", small, basis_b.dtype)
    if small.shape[-2] > big.shape[-2]:
        big, small, nz_b = small, big, nz_a
    cross = small @ big.transpose(-1, -2)  # (..., k_small, k_big)
    cos = torch.linalg.svdvals(cross).clamp(0.0, 1.0)  # descending
    residual = small - cross @ big
    sin = torch.linalg.svdvals(residual).clamp(0.0, 1.0).flip(-1)  # ascending
    # A zero row of the smaller set adds a zero sine in front and a zero cosine at the end;
    # shift the sines past those and call the dropped directions orthogonal.
    k = small.shape[-2]
    zero_rows = (~nz_b).sum(-1, keepdim=True)
    idx = torch.arange(k, device=small.device) + zero_rows
    sin = torch.where(idx < k, sin.gather(-1, idx.clamp(max=k - 1).expand_as(sin)), torch.ones_like(sin))
    angles = torch.atan2(sin, cos)
    return angles.to(result_dtype(torch.promote_types(basis_a.dtype, basis_b.dtype)))
