"""The :class:`TangentSpace` interface and the one implementation of tangent projections."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from .._tensors import feature_shapes, flatten_features, num_features, unflatten_features
from .._validation import check_batch, check_tensor, check_tensor_or_tuple

TensorOrTuple = Tensor | tuple[Tensor, ...]
ShapeLike = Sequence[int] | Sequence[Sequence[int]]

__all__ = ["TangentSpace", "orthonormal_rows", "principal_angles", "project_onto_rows"]


def _as_shapes(shape: ShapeLike | None) -> tuple[torch.Size, ...] | None:
    if shape is None:
        return None
    shape = tuple(shape)
    if shape and all(isinstance(s, (tuple, list, torch.Size)) for s in shape):
        return tuple(torch.Size(s) for s in shape)
    return (torch.Size(shape),)


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


def _principal_rows(vectors: Tensor, k: int | None = None, rtol: float | None = None) -> tuple[Tensor, Tensor]:
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


class TangentSpace(ABC):
    r"""Where the data manifold is at :math:`x`: an orthonormal basis of its tangent space.

    Subclasses implement :meth:`_basis`; this class validates inputs and implements the
    projections once for all of them:

    .. math::

        P_T(x)\,v = B(x)^\top B(x)\,v, \qquad P_\perp(x)\,v = v - P_T(x)\,v,

    where the rows of :math:`B(x) \in \mathbb{R}^{k\times D}` are orthonormal and :math:`D` is
    the number of features of one example (of all input tensors together, for tuple inputs).

    Parameters
    ----------
    input_shape : sequence of int, or sequence of shapes, optional
        Per-example shape (without the batch dimension) the space was built for; a tuple of shapes
        for tuple inputs. ``None`` accepts any shape.

    Examples
    --------
    A tangent space that follows the input: the radial direction of each point.

    >>> class Radial(TangentSpace):
    ...     dim = 1
    ...     def _basis(self, inputs):
    ...         x = inputs[0].flatten(1)
    ...         return (x / x.norm(dim=1, keepdim=True)).unsqueeze(1)
    >>> Radial().project(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]]))
    tensor([[0.3600, 0.4800]])
    """

    def __init__(self, input_shape: ShapeLike | None = None) -> None:
        self._input_shapes = _as_shapes(input_shape)

    @property
    def input_shape(self) -> torch.Size | tuple[torch.Size, ...] | None:
        """Per-example shape the space was built for (a tuple of shapes for tuple inputs)."""
        if self._input_shapes is None:
            return None
        return self._input_shapes[0] if len(self._input_shapes) == 1 else self._input_shapes

    @property
    def num_features(self) -> int | None:
        """``D``, the number of features of one example, if known."""
        return None if self._input_shapes is None else num_features(self._input_shapes)

    @property
    @abstractmethod
    def dim(self) -> int:
        """``k``, the number of basis vectors returned per example."""

    @abstractmethod
    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        """Return the basis for validated inputs: ``(k, D)`` if shared, else ``(N, k, D)``."""

    # ------------------------------------------------------------------ validation
    def _check_inputs(self, inputs: TensorOrTuple, name: str = "inputs") -> tuple[Tensor, ...]:
        inputs_t = check_tensor_or_tuple(name, inputs)
        check_batch(name, inputs_t)
        shapes = feature_shapes(inputs_t)
        if self._input_shapes is not None and shapes != self._input_shapes:
            got = [tuple(s) for s in shapes]
            want = [tuple(s) for s in self._input_shapes]
            raise ValueError(
                f"Expected `{name}` to have per-example shape {want[0] if len(want) == 1 else want} "
                f"(the shape this tangent space was built for) but got "
                f"{got[0] if len(got) == 1 else got}"
            )
        return inputs_t

    def _shared_or_batched_basis(self, inputs_t: tuple[Tensor, ...]) -> Tensor:
        basis = self._basis(inputs_t)
        n, d = inputs_t[0].shape[0], num_features(feature_shapes(inputs_t))
        ok = (basis.dim() == 2 and basis.shape[1] == d) or (
            basis.dim() == 3 and basis.shape[0] == n and basis.shape[2] == d
        )
        if not ok:
            raise RuntimeError(
                f"{type(self).__name__}._basis returned shape {tuple(basis.shape)}; expected (k, {d}) or ({n}, k, {d})"
            )
        return basis

    # ------------------------------------------------------------------ public API
    def basis(self, inputs: TensorOrTuple) -> Tensor:
        """Orthonormal tangent basis at each example.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            ``(N, *shape)`` points on (or near) the manifold.

        Returns
        -------
        Tensor
            ``(N, k, D)``; rows orthonormal (rows of zeros mark directions an estimator dropped).
        """
        inputs_t = self._check_inputs(inputs)
        basis = self._shared_or_batched_basis(inputs_t)
        if basis.dim() == 2:
            basis = basis.unsqueeze(0).expand(inputs_t[0].shape[0], -1, -1)
        return basis

    def components(self, inputs: TensorOrTuple, vectors: TensorOrTuple) -> tuple[TensorOrTuple, TensorOrTuple]:
        """Split ``vectors`` into tangent and orthogonal parts that sum to ``vectors``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            ``(N, *shape)`` points where the tangent space is taken.
        vectors : Tensor or tuple of Tensor
            Same form as ``inputs``, shaped ``(N, *shape)`` or ``(N, M, *shape)`` (``M`` vectors
            per example).

        Returns
        -------
        (on, off)
            Two objects of the same form and shapes as ``vectors``.
        """
        inputs_t = self._check_inputs(inputs)
        vec_t = check_tensor_or_tuple("vectors", vectors)
        if len(vec_t) != len(inputs_t):
            raise ValueError(f"Expected `vectors` to hold {len(inputs_t)} tensor(s) like `inputs` but got {len(vec_t)}")
        n = inputs_t[0].shape[0]
        shapes = feature_shapes(inputs_t)
        extra = vec_t[0].dim() - inputs_t[0].dim()
        for v, x in zip(vec_t, inputs_t):
            if extra not in (0, 1) or v.shape[0] != n or tuple(v.shape[1 + extra :]) != tuple(x.shape[1:]):
                raise ValueError(
                    f"Expected `vectors` to have shape (N, *shape) or (N, M, *shape) matching "
                    f"`inputs` {tuple(x.shape)} but got {tuple(v.shape)}"
                )
        lead = [n] if extra == 0 else [n, vec_t[0].shape[1]]
        flat = flatten_features(vec_t, lead=1 + extra)
        flat3 = flat.unsqueeze(1) if extra == 0 else flat
        basis = self._shared_or_batched_basis(inputs_t).to(dtype=flat.dtype)
        on_flat = project_onto_rows(basis, flat3).reshape(flat.shape)
        off_flat = flat - on_flat
        on = unflatten_features(on_flat, shapes, lead)
        off = unflatten_features(off_flat, shapes, lead)
        if isinstance(vectors, Tensor):
            return on[0], off[0]
        return on, off

    def project(self, inputs: TensorOrTuple, vectors: TensorOrTuple) -> TensorOrTuple:
        r"""Tangent part :math:`P_T(x)\,v` of ``vectors`` (same form and shape as ``vectors``).

        Examples
        --------
        >>> from captum_pags.manifold import LinearSubspace
        >>> space = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
        >>> space.project(torch.zeros(1, 3), torch.tensor([[2.0, 3.0, 4.0]]))
        tensor([[2., 0., 0.]])
        """
        return self.components(inputs, vectors)[0]

    def project_orthogonal(self, inputs: TensorOrTuple, vectors: TensorOrTuple) -> TensorOrTuple:
        r"""Orthogonal part :math:`v - P_T(x)\,v` of ``vectors`` (same form and shape as ``vectors``).

        Examples
        --------
        >>> from captum_pags.manifold import LinearSubspace
        >>> space = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
        >>> space.project_orthogonal(torch.zeros(1, 3), torch.tensor([[2.0, 3.0, 4.0]]))
        tensor([[0., 3., 4.]])
        """
        return self.components(inputs, vectors)[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, input_shape={self.input_shape})"
