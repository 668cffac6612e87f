"""A global linear subspace: the exact tangent space of data that lies in it."""

from __future__ import annotations

import torch
from torch import Tensor

from .._kernel._validation import check_batch, check_int, check_tensor
from .base import ShapeLike, TangentSpace, orthonormal_rows

__all__ = ["LinearSubspace"]


class LinearSubspace(TangentSpace):
    r"""Tangent space of a linear (or affine) subspace, the same at every point.

    .. math::

        T_x = \operatorname{span}(b_1, \dots, b_k), \qquad P_T = B^\top B,

    with the rows of :math:`B` orthonormalised on construction (SVD).

    Parameters
    ----------
    basis : Tensor
        ``(k, D)`` or ``(k, *shape)`` spanning vectors; need not be orthonormal but must have
        rank ``k``.
    input_shape : sequence of int, optional
        Per-example input shape. Defaults to ``basis.shape[1:]``.
    rtol : float, optional
        Relative singular-value threshold of the rank check.

    Examples
    --------
    >>> space = LinearSubspace(torch.tensor([[1.0, 1.0, 0.0]]))
    >>> space.dim
    1
    >>> space.project(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 5.0]]))
    tensor([[0.5000, 0.5000, 0.0000]])
    """

    def __init__(self, basis: Tensor, input_shape: ShapeLike | None = None, rtol: float | None = None) -> None:
        check_tensor("basis", basis)
        if basis.dim() < 2 or basis.shape[0] == 0:
            raise ValueError(
                f"Expected `basis` to have shape (k, D) or (k, *shape) with k >= 1 but got {tuple(basis.shape)}"
            )
        if not basis.is_floating_point():
            basis = basis.double()
        if not bool(torch.isfinite(basis).all()):
            raise ValueError("Expected `basis` to hold finite values but it contains NaN or inf")
        shape = tuple(basis.shape[1:]) if input_shape is None else tuple(input_shape)
        super().__init__(shape)
        d = self.num_features
        flat = basis.reshape(basis.shape[0], -1)
        if flat.shape[1] != d:
            raise ValueError(
                f"Expected `basis` to have D={d} features per vector (from `input_shape` {shape}) "
                f"but got {flat.shape[1]}"
            )
        self._rows = orthonormal_rows(flat.double(), rtol, name="basis")
        self._cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        self.mean: Tensor | None = None
        self.explained_variance: Tensor | None = None

    @classmethod
    def from_data(cls, data: Tensor, dim: int, center: bool = True) -> LinearSubspace:
        r"""Fit the ``dim`` leading principal directions of ``data`` (PCA).

        .. math::

            X - \bar x = U S V^\top, \qquad B = V_{:, :\text{dim}}^\top

        Parameters
        ----------
        data : Tensor
            ``(N, *shape)`` samples.
        dim : int
            Number of principal directions ``k`` (``1 <= k <= min(N, D)``).
        center : bool
            Subtract the mean first (an affine subspace through the mean).

        Returns
        -------
        LinearSubspace
            With ``mean`` (``(*shape)``) and ``explained_variance`` (``(k,)``) set.

        Examples
        --------
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
        >>> LinearSubspace.from_data(x, 1).project(x, torch.tensor([[1.0, 0.0]] * 3))[0]
        tensor([0.5000, 0.5000])
        """
        check_tensor("data", data)
        n = check_batch("data", [data])
        flat = data.reshape(n, -1).double()
        d = flat.shape[1]
        check_int("dim", dim, minimum=1)
        if dim > min(n, d):
            raise ValueError(f"Expected `dim` to be <= min(N, D) = {min(n, d)} but got {dim}")
        mean = flat.mean(0) if center else torch.zeros(d, dtype=flat.dtype, device=flat.device)
        _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        space = cls(vh[:dim], input_shape=tuple(data.shape[1:]))
        space.mean = mean.reshape(data.shape[1:]).to(data.dtype)
        space.explained_variance = (s[:dim] ** 2 / max(n - 1, 1)).to(data.dtype)
        return space

    @property
    def dim(self) -> int:
        """``k``, the dimension of the subspace."""
        return int(self._rows.shape[0])

    @property
    def rows(self) -> Tensor:
        """The ``(k, D)`` orthonormal basis (float64, on the device it was built on)."""
        return self._rows

    def projection_matrix(self) -> Tensor:
        r"""The explicit ``(D, D)`` projector :math:`B^\top B` (float64)."""
        return self._rows.T @ self._rows

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[0]
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        key = (x.device, dtype)
        if key not in self._cache:
            self._cache[key] = self._rows.to(device=x.device, dtype=dtype)
        return self._cache[key]
