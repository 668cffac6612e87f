"""A global linear subspace: the exact tangent space of data that lies in it."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor

from .._kernel._linalg import compute_dtype, default_rtol, result_dtype
from .._kernel._tensors import chunks
from .._kernel._validation import check_batch, check_choice, check_int, check_tensor
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

    _accepts_flat_shape = True

    def __init__(self, basis: Tensor, input_shape: ShapeLike | None = None, rtol: float | None = None) -> None:
        check_tensor("basis", basis)
        if basis.dim() < 2 or basis.shape[0] == 0:
            raise ValueError(
                f"Expected `basis` to have shape (k, D) or (k, *shape) with k >= 1 but got {tuple(basis.shape)}"
            )
        if basis.is_complex():
            raise TypeError(f"Expected `basis` to be a real tensor but got {basis.dtype}")
        if basis.is_floating_point() and not bool(torch.isfinite(basis).all()):
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
    def from_data(
        cls,
        data: Tensor | Iterable[Any],
        dim: int,
        center: bool = True,
        *,
        method: Literal["auto", "full", "randomized"] = "auto",
        oversampling: int = 10,
        iterations: int = 4,
        seed: int = 0,
        chunk_size: int | None = 4096,
    ) -> LinearSubspace:
        r"""Fit the ``dim`` leading principal directions of ``data`` (PCA).

        .. math::

            X - \bar x = U S V^\top, \qquad B = V_{:, :\text{dim}}^\top, \qquad
            \text{explained variance}_i = \frac{s_i^2}{N - 1}

        Directions without variance (``s_i`` at the noise floor, e.g. ``dim`` above the rank of
        the data) are dropped with a warning rather than kept as arbitrary directions, so the
        subspace may have fewer than ``dim`` rows.

        With ``method="randomized"`` (``"auto"`` picks it when ``4 (dim + oversampling) <
        min(N, D)``) the directions come from a randomized range finder with
        ``oversampling`` extra probes and ``iterations`` power iterations (Halko, Martinsson &
        Tropp, 2011), seeded by a local generator (the global RNG is untouched, unlike
        :func:`torch.svd_lowrank`), streaming over ``chunk_size`` rows of ``data`` at a time in
        float64: no ``(N, D)`` float64 copy and no full SVD. On data with a spectral gap it
        agrees with the full SVD to rounding.

        Parameters
        ----------
        data : Tensor or iterable of Tensor
            ``(N, *shape)`` samples (integer data is promoted, never truncated), or a re-iterable
            of batches (a list, a :class:`~torch.utils.data.DataLoader`; a batch that is a tuple
            or list gives its first element, e.g. the images of ``(x, y)``): streamed, a few
            passes, never all in memory at once.
        dim : int
            Number of principal directions ``k`` (``1 <= k <= min(N, D)``).
        center : bool
            Subtract the mean first (an affine subspace through the mean).
        method : {"auto", "full", "randomized"}
            Full SVD or randomized low-rank SVD.
        oversampling : int
            Extra probe vectors of the randomized method.
        iterations : int
            Power iterations of the randomized method.
        seed : int
            Seed of the randomized method's local generator.
        chunk_size : int, optional
            Rows of a tensor ``data`` per block (``None``: all at once); batches of an iterable
            are used as they come.

        Returns
        -------
        LinearSubspace
            With ``mean`` (``(*shape)``) and ``explained_variance`` (``(k,)``) set, in the
            data's float dtype (the default float dtype for integer data).

        Examples
        --------
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
        >>> LinearSubspace.from_data(x, 1).project(x, torch.tensor([[1.0, 0.0]] * 3))[0]
        tensor([0.5000, 0.5000])
        """
        rows = _Rows(data, chunk_size)
        n, d, shape, dtype, device = rows.n, rows.d, rows.shape, rows.dtype, rows.device
        check_int("dim", dim, minimum=1)
        if dim > min(n, d):
            raise ValueError(f"Expected `dim` to be <= min(N, D) = {min(n, d)} but got {dim}")
        check_choice("method", method, ("auto", "full", "randomized"))
        check_int("oversampling", oversampling, minimum=0)
        check_int("iterations", iterations, minimum=0)
        check_int("seed", seed)
        out = result_dtype(dtype)
        mean = rows.column_mean() if center else torch.zeros(d, dtype=torch.float64, device=device)
        m = min(dim + oversampling, n, d)
        if method == "randomized" or (method == "auto" and 4 * m < min(n, d)):
            s, vh = _randomized_svd(rows, mean, m, iterations, seed)
        else:
            _, s, vh = torch.linalg.svd(torch.cat(list(rows.blocks())) - mean, full_matrices=False)
        s, vh = s[:dim], vh[:dim]
        keep = s > default_rtol(dtype, n, d) * s[:1].clamp_min(torch.finfo(s.dtype).tiny)
        rank = int(keep.sum())
        if rank == 0:
            raise ValueError("Expected `data` to vary (at least two distinct points) but every point is the same")
        if rank < dim:
            warnings.warn(
                f"LinearSubspace.from_data: only {rank} of the dim={dim} principal directions of `data` have "
                f"non-zero variance; the other {dim - rank} are dropped (the subspace has dim {rank})",
                RuntimeWarning,
                stacklevel=2,
            )
        space = cls(vh[:rank], input_shape=shape)
        space._rows = vh[:rank].double().contiguous()  # the principal directions themselves, in order
        space.mean = mean.reshape(shape).to(out)
        space.explained_variance = (s[:rank] ** 2 / max(n - 1, 1)).to(out)
        return space

    @property
    def dim(self) -> int:
        """``k``, the dimension of the subspace."""
        return int(self._rows.shape[0])

    @property
    def rows(self) -> Tensor:
        """The ``(k, D)`` orthonormal basis (float64, on the device it was built on).

        For :meth:`from_data` these are the principal directions, largest variance first.
        """
        return self._rows

    def projection_matrix(self) -> Tensor:
        r"""The explicit ``(D, D)`` projector :math:`B^\top B` (float64)."""
        return self._rows.T @ self._rows

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[0]
        dtype = compute_dtype(x.dtype)  # 16-bit inputs get float32 rows, which stay orthonormal
        key = (x.device, dtype)
        if key not in self._cache:
            self._cache[key] = self._rows.to(device=x.device, dtype=dtype)
        return self._cache[key]


class _Rows:
    """Float64 row blocks ``(b, D)`` of the data: a tensor in chunks, or a re-iterable of batches, validated."""

    def __init__(self, data: Any, chunk_size: int | None) -> None:
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, minimum=1)
        self.chunk_size = chunk_size
        if isinstance(data, Tensor):
            self._check(data)
            self.n = check_batch("data", [data])
            self.data: Any = data
            first, dtype = data, data.dtype
        else:
            if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
                raise TypeError(
                    "Expected `data` to be a torch.Tensor or an iterable of tensor batches but got "
                    f"{type(data).__name__}"
                )
            self.data = data
            self.n, first, dtype = 0, None, None
            for batch in self._batches():
                first = batch if first is None else first
                # batches of mixed precision give the widest dtype, as mixed inputs do everywhere
                dtype = batch.dtype if dtype is None else torch.promote_types(dtype, batch.dtype)
                self.n += batch.shape[0]
            if first is None:
                raise ValueError("Expected `data` to hold at least one example but got an empty batch")
        self.shape = tuple(first.shape[1:])
        self.d = int(torch.Size(self.shape).numel())
        self.dtype, self.device = dtype, first.device

    @staticmethod
    def _check(t: Tensor) -> None:
        if t.is_complex():
            raise TypeError(f"Expected `data` to be a real tensor but got {t.dtype}")
        if t.dim() < 2:
            raise ValueError(f"Expected `data` to have shape (N, *shape) but got {tuple(t.shape)}")

    def _batches(self) -> Iterator[Tensor]:
        shape = None
        for batch in self.data:
            if isinstance(batch, (tuple, list)) and batch:
                batch = batch[0]
            check_tensor("data", batch)
            self._check(batch)
            check_batch("data", [batch])
            if shape is not None and tuple(batch.shape[1:]) != shape:
                raise ValueError(
                    f"Expected every batch of `data` to have per-example shape {shape} but got {tuple(batch.shape[1:])}"
                )
            shape = tuple(batch.shape[1:])
            yield batch

    def blocks(self) -> Iterator[Tensor]:
        if isinstance(self.data, Tensor):
            flat = self.data.reshape(self.n, -1)
            for s in chunks(self.n, self.chunk_size):
                yield flat[s].double()
            return
        seen = 0
        for batch in self._batches():
            seen += batch.shape[0]
            yield batch.reshape(batch.shape[0], -1).double()
        if seen != self.n:
            raise ValueError(
                f"Expected `data` to give the same {self.n} examples on every pass (a tensor, a list of batches or a "
                f"DataLoader) but a later pass gave {seen}; a one-shot iterator cannot be streamed twice"
            )

    def column_mean(self) -> Tensor:
        total = torch.zeros(self.d, dtype=torch.float64, device=self.device)
        for block in self.blocks():
            total += block.sum(0)
        return total / self.n


def _randomized_svd(rows: _Rows, mean: Tensor, m: int, iterations: int, seed: int) -> tuple[Tensor, Tensor]:
    """Top-``m`` singular values and right singular vectors of ``X - mean`` (randomized, streamed)."""

    def right(q: Tensor) -> Tensor:  # (X - mean)^T q: (D, m) from (N, m)
        acc = torch.zeros(rows.d, q.shape[1], dtype=torch.float64, device=mean.device)
        start = 0
        for block in rows.blocks():
            acc += (block - mean).T @ q[start : start + block.shape[0]]
            start += block.shape[0]
        return acc

    def left(w: Tensor) -> Tensor:  # (X - mean) w: (N, m) from (D, m)
        return torch.cat([(block - mean) @ w for block in rows.blocks()])

    gen = torch.Generator().manual_seed(seed)
    omega = torch.randn(rows.d, m, generator=gen, dtype=torch.float64).to(mean.device)
    q = torch.linalg.qr(left(omega)).Q
    for _ in range(iterations):
        q = torch.linalg.qr(left(torch.linalg.qr(right(q)).Q)).Q
    small = right(q).T  # Q^T (X - mean): (m, D)
    _, s, vh = torch.linalg.svd(small, full_matrices=False)
    return s, vh
