"""Tangent space from the principal directions of each input's nearest reference points."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .._kernel._linalg import compute_dtype, principal_rows
from .._kernel._tensors import chunks, feature_shapes, flatten_features, num_features
from .._kernel._validation import check_batch, check_int, check_positive, check_tensor_or_tuple
from .base import TangentSpace, TensorOrTuple

__all__ = ["LocalPCATangent"]


class LocalPCATangent(TangentSpace):
    r"""Tangent space from a principal component analysis of the nearest reference points.

    For a query :math:`x` with nearest reference points :math:`r_1, \dots, r_n` (Euclidean
    distance over all features) and their mean :math:`\bar r`,

    .. math::

        R = \begin{bmatrix} r_1 - \bar r \\ \vdots \\ r_n - \bar r \end{bmatrix}
        = U S V^\top, \qquad B(x) = V_{:, :k}^\top,

    the ``k`` leading principal directions of the neighbourhood. For data on a smooth
    :math:`k`-dimensional manifold sampled densely enough, these approach the tangent space at
    :math:`x` (local PCA; e.g. Singer & Wu, 2012). Distances are computed as matrix products in
    blocks of ``chunk_size`` reference points with a running top-``n`` merge; the leading singular
    pairs come from each neighbourhood's small :math:`n \times n` Gram matrix :math:`R R^\top`,
    batched over ``batch_size`` queries at a time.

    Parameters
    ----------
    reference : Tensor or tuple of Tensor
        ``(M, *shape)`` points on the manifold (a tuple of tensors for tuple inputs). Copied,
        flattened and kept with their squared norms (the fit); queries must have the same
        per-example shape.
    dim : int
        ``k``, the tangent dimension, ``1 <= k < D``.
    n_neighbors : int
        ``n``, the neighbourhood size, ``k < n <= M`` (``n`` centred points span at most
        ``n - 1`` directions).
    chunk_size : int, optional
        Reference points per block of distances; ``None`` takes all at once.
    batch_size : int, optional
        Queries per block; ``None`` picks as many as keep one block of neighbourhoods
        (``batch_size * n_neighbors * D`` values) under :attr:`max_block_elements`. Results do
        not depend on either.
    rtol : float, optional
        Directions whose singular value is at most ``rtol`` times the largest of their
        neighbourhood (e.g. repeated points) are returned as zero rows, with a warning once per
        estimator; defaults to the shared noise-floor threshold
        (:func:`~captum_pags._kernel._linalg.default_rtol`).

    Attributes
    ----------
    last_singular_values : Tensor or None
        ``(N, k)`` singular values :math:`S_{:k}` of the last call's neighbourhoods.
    last_neighbors : Tensor or None
        ``(N, n)`` indices into ``reference`` of the last call's neighbours (ascending index).
    last_rank : Tensor or None
        ``(N,)`` number of non-zero basis rows of the last call.

    Examples
    --------
    >>> t = torch.linspace(-1.0, 1.0, 9)
    >>> line = torch.stack([t, 2 * t, torch.zeros(9)], dim=1)
    >>> space = LocalPCATangent(line, dim=1, n_neighbors=4)
    >>> space.basis(torch.tensor([[0.0, 0.0, 0.0]])).abs()
    tensor([[[0.4472, 0.8944, 0.0000]]])
    """

    def __init__(
        self,
        reference: TensorOrTuple,
        dim: int,
        n_neighbors: int,
        *,
        chunk_size: int | None = 4096,
        batch_size: int | None = None,
        rtol: float | None = None,
    ) -> None:
        ref_t = check_tensor_or_tuple("reference", reference)
        m = check_batch("reference", ref_t)
        shapes = feature_shapes(ref_t)
        super().__init__(shapes)
        d = num_features(shapes)
        check_int("dim", dim, minimum=1)
        if dim >= d:
            raise ValueError(f"Expected `dim` to be < D = {d}, the number of features of `reference`, but got {dim}")
        check_int("n_neighbors", n_neighbors, minimum=1)
        if n_neighbors <= dim:
            raise ValueError(
                f"Expected `n_neighbors` to be > `dim` = {dim} (n centred points span at most n - 1 directions) "
                f"but got {n_neighbors}"
            )
        if n_neighbors > m:
            raise ValueError(
                f"Expected `n_neighbors` to be <= the number of reference points M = {m} but got {n_neighbors}"
            )
        self._dim = dim
        self.n_neighbors = n_neighbors
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        self.rtol = None if rtol is None else check_positive("rtol", rtol, allow_zero=True)
        flat = flatten_features(ref_t).detach()
        if flat.is_complex():
            raise TypeError(f"Expected `reference` to be a real tensor but got {flat.dtype}")
        self.reference = flat.clone() if flat.is_floating_point() else flat.to(torch.get_default_dtype())
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}
        self.last_singular_values: Tensor | None = None
        self.last_neighbors: Tensor | None = None
        self.last_rank: Tensor | None = None
        self._warned = False

    #: Upper bound on the values of one block of neighbourhoods when ``batch_size`` is None.
    max_block_elements: int = 2**24

    _accepts_flat_shape = True

    @property
    def dim(self) -> int:
        """``k``, the number of principal directions."""
        return self._dim

    def _fitted(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (device, dtype)
        if key not in self._cache:
            ref = self.reference.to(device=device, dtype=dtype)
            self._cache[key] = (ref, ref.square().sum(1))
        return self._cache[key]

    def _neighbors(self, q: Tensor, ref: Tensor, ref_sq: Tensor) -> Tensor:
        """Indices ``(b, n)`` of the ``n`` nearest reference points, ascending index."""
        n = self.n_neighbors
        best_d = q.new_empty(q.shape[0], 0)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.long, device=q.device)
        for s in chunks(ref.shape[0], self.chunk_size):
            # |q - r|^2 up to the per-query constant |q|^2, which does not change the ranking
            dist = torch.addmm(ref_sq[s].unsqueeze(0), q, ref[s].T, alpha=-2.0)
            idx = torch.arange(s.start, s.stop, device=q.device).expand(q.shape[0], -1)
            cand_d, cand_i = torch.cat([best_d, dist], 1), torch.cat([best_i, idx], 1)
            top = torch.topk(cand_d, min(n, cand_d.shape[1]), dim=1, largest=False).indices
            best_d, best_i = cand_d.gather(1, top), cand_i.gather(1, top)
        # a fixed order makes the PCA input, hence the result, independent of the chunking
        return best_i.sort(dim=1).values

    def _batch_size(self, d: int) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return max(1, self.max_block_elements // (self.n_neighbors * d))

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = flatten_features(inputs)
        out_dtype = compute_dtype(x.dtype)
        dtype = compute_dtype(x.dtype, self.reference.dtype)
        ref, ref_sq = self._fitted(x.device, dtype)
        x = x.to(dtype)
        bases, svals, neighbors = [], [], []
        for s in chunks(x.shape[0], self._batch_size(x.shape[1])):
            idx = self._neighbors(x[s], ref, ref_sq)
            hood = ref[idx]  # (b, n, D), bounded by the block size
            centred = hood - hood.mean(1, keepdim=True)
            sv, rows = principal_rows(centred, self._dim, self.rtol, method="gram")
            bases.append(rows.to(out_dtype))
            svals.append(sv)
            neighbors.append(idx)
            del hood, centred
        basis = torch.cat(bases)
        self.last_singular_values = torch.cat(svals)
        self.last_neighbors = torch.cat(neighbors)
        rank = (basis.abs().amax(-1) > 0).sum(-1)
        self.last_rank = rank
        self._warn_dropped(rank)
        return basis

    def _warn_dropped(self, rank: Tensor) -> None:
        short = rank < self._dim
        if self._warned or not bool(short.any()):
            return
        self._warned = True
        empty = int((rank == 0).sum())
        warnings.warn(
            f"LocalPCATangent: the neighbourhoods of {int(short.sum())} of {len(rank)} inputs span fewer than "
            f"dim={self._dim} directions (repeated reference points?); {empty} of them have an all-zero basis. "
            "The missing directions are zero rows (see `last_rank`). This warning is shown once per "
            "LocalPCATangent.",
            RuntimeWarning,
            stacklevel=5,
        )
