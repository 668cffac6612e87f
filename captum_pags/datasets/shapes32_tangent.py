"""The exact tangent space of ``shapes32``: the span of the renderer's Jacobian w.r.t. the factors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from .._kernel._autodiff import jvp_many
from .._kernel._linalg import orthonormal_rows, principal_angles
from .._kernel._tensors import chunks
from .._kernel._validation import check_int, check_positive, check_tensor
from ..manifold.base import TangentSpace
from .shapes32 import Shapes32, load_shapes32
from .shapes32_render import SHAPES32_FACTORS, SHAPES32_SHAPE, _render, check_factors_labels, render_shapes32

__all__ = ["Shapes32Tangent", "compare_tangents", "shapes32_jacobian", "shapes32_tangent"]

_F = len(SHAPES32_FACTORS)
_D = SHAPES32_SHAPE[0] * SHAPES32_SHAPE[1] * SHAPES32_SHAPE[2]


def shapes32_jacobian(factors: Tensor, labels: Tensor, *, chunk_size: int | None = 256) -> Tensor:
    r"""Jacobian of :func:`render_shapes32` w.r.t. the factors, by forward-mode AD.

    .. math::

        J(f, y) = \frac{\partial\, \mathrm{render}(f, y)}{\partial f} \in \mathbb{R}^{3072 \times 7},

    returned as its 7 columns (one image-shaped derivative per factor), computed with
    :func:`torch.func.jvp` under :func:`torch.func.vmap` (one pass of 7 tangents per chunk).

    Parameters
    ----------
    factors : Tensor
        ``(N, 7)`` floating factors (use float64 for reference accuracy).
    labels : Tensor
        ``(N,)`` integer shape kinds.
    chunk_size : int, optional
        Images per vectorised pass (``None``: all at once).

    Returns
    -------
    Tensor
        ``(N, 7, 3, 32, 32)`` in the dtype of ``factors``.

    Examples
    --------
    >>> f = torch.tensor([[16.0, 16.0, 7.0, 0.3, 0.2, 0.9, 0.1]], dtype=torch.float64)
    >>> shapes32_jacobian(f, torch.tensor([0])).shape
    torch.Size([1, 7, 3, 32, 32])
    """
    check_factors_labels(factors, labels)
    out = []
    for s in chunks(factors.shape[0], chunk_size):
        f, y = factors[s], labels[s]
        eye = torch.eye(_F, dtype=f.dtype, device=f.device).unsqueeze(1).expand(_F, f.shape[0], _F)
        out.append(jvp_many(lambda g, y=y: _render(g, y), f, eye).transpose(0, 1))
    return torch.cat(out) if out else factors.new_zeros((0, _F, *SHAPES32_SHAPE))


class Shapes32Tangent(TangentSpace):
    r"""The exact tangent space of ``shapes32`` at the images of known factors.

    Every ``shapes32`` image is :math:`x = \mathrm{render}(f, y)` for factors
    :math:`f \in \mathbb{R}^7` (:func:`render_shapes32`), so the data manifold of class :math:`y`
    is the 7-dimensional image of the renderer and its tangent space at :math:`x` is

    .. math::

        T_x = \operatorname{span}\, \frac{\partial\, \mathrm{render}(f, y)}{\partial f}, \qquad
        B(x) = \operatorname{orth}\big(J(f, y)^\top\big) \in \mathbb{R}^{7 \times 3072},

    computed in float64 by forward-mode AD (:func:`shapes32_jacobian`) and orthonormalised by an
    SVD, for each batch when it is asked for (nothing of size N x 7 x 3072 is kept).

    A point is recognised by its pixels: :meth:`basis` looks each input up among the images of
    the known factors (exact float32 bytes first, then the nearest known image within ``atol``
    in max-abs difference, so a dtype or device round trip still matches). An input that matches
    no known image, e.g. a noisy or perturbed image, raises :class:`ValueError`: the exact
    tangent space is only defined on the manifold, and guessing would be silently wrong. Use
    :meth:`basis_at` to get it from factors directly.

    Parameters
    ----------
    factors : Tensor
        ``(N, 7)`` factors of the known points.
    labels : Tensor
        ``(N,)`` their shape kinds.
    images : Tensor, optional
        ``(N, 3, 32, 32)`` the images to recognise (default: rendered from the factors, as
        float32); pass a split's stored images so they match bit for bit.
    atol : float
        Largest max-abs pixel difference at which an input still counts as a known image.
    chunk_size : int, optional
        Images per vectorised Jacobian pass.

    Examples
    --------
    >>> f = torch.tensor([[16.0, 16.0, 7.0, 0.3, 0.2, 0.9, 0.1]], dtype=torch.float64)
    >>> space = Shapes32Tangent(f, torch.tensor([2]))
    >>> x = render_shapes32(f, torch.tensor([2])).float()
    >>> b = space.basis(x)
    >>> b.shape, bool(torch.allclose(b[0] @ b[0].T, torch.eye(7), atol=1e-4))
    (torch.Size([1, 7, 3072]), True)
    """

    def __init__(
        self,
        factors: Tensor,
        labels: Tensor,
        images: Tensor | None = None,
        *,
        atol: float = 1e-6,
        chunk_size: int | None = 256,
    ) -> None:
        super().__init__(SHAPES32_SHAPE)
        check_tensor("factors", factors)
        if images is None:
            images = render_shapes32(factors, labels).float()
        else:
            check_factors_labels(factors, labels)
            check_tensor("images", images)
            if images.shape != (factors.shape[0], *SHAPES32_SHAPE):
                raise ValueError(
                    f"Expected `images` to have shape ({factors.shape[0]}, 3, 32, 32) but got {tuple(images.shape)}"
                )
        self.atol = check_positive("atol", atol)
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)
        self.factors = factors.detach().to("cpu", torch.float64)
        self.labels = labels.detach().to("cpu", torch.long)
        self._images = images.detach().to("cpu", torch.float32).reshape(images.shape[0], -1)
        self._index: dict[int, list[int]] = {}
        for i, row in enumerate(self._images):
            self._index.setdefault(hash(row.numpy().tobytes()), []).append(i)

    @property
    def dim(self) -> int:
        """``k = 7``, the number of factors."""
        return _F

    def lookup(self, inputs: Tensor) -> Tensor:
        """Index ``(N,)`` of the known image each input matches, ``-1`` where none does.

        Examples
        --------
        >>> f = torch.tensor([[16.0, 16.0, 7.0, 0.3, 0.2, 0.9, 0.1]], dtype=torch.float64)
        >>> space = Shapes32Tangent(f, torch.tensor([2]))
        >>> x = render_shapes32(f, torch.tensor([2])).float()
        >>> space.lookup(torch.cat([x, x + 0.01])).tolist()
        [0, -1]
        """
        flat = inputs.detach().to("cpu", torch.float32).reshape(inputs.shape[0], -1)
        found = torch.full((flat.shape[0],), -1, dtype=torch.long)
        for q, row in enumerate(flat):
            for i in self._index.get(hash(row.numpy().tobytes()), ()):
                if torch.equal(self._images[i], row):
                    found[q] = i
                    break
        missing = torch.nonzero(found < 0).flatten()
        if missing.numel():
            # the L2-nearest known image (one (q, chunk) distance matrix at a time), then its max-abs check:
            # an image within atol in max-abs is within atol * sqrt(D) in L2, far nearer than any other
            queries = flat[missing].double()
            best_dist = torch.full((len(missing),), float("inf"), dtype=torch.float64)
            best = torch.zeros(len(missing), dtype=torch.long)
            for s in chunks(self._images.shape[0], 1024):
                d, j = torch.cdist(queries, self._images[s].double()).min(1)
                better = d < best_dist
                best_dist, best = torch.where(better, d, best_dist), torch.where(better, j + s.start, best)
            close = (flat[missing] - self._images[best]).abs().amax(-1) <= self.atol
            found[missing] = torch.where(close, best, -1)
        return found

    def basis_at(self, factors: Tensor, labels: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """Orthonormal tangent basis ``(N, 7, 3072)`` at the images of any factors (no lookup).

        Computed in float64 and returned in ``dtype`` (default: that of ``factors``), on the
        device of ``factors``. Raises :class:`ValueError` where the Jacobian loses rank (outside
        the factor ranges, e.g. a shape of zero size or no contrast).
        """
        jac = shapes32_jacobian(factors.to(torch.float64), labels, chunk_size=self.chunk_size)
        try:
            basis = orthonormal_rows(jac.flatten(2), name="jacobian")
        except ValueError as err:
            raise ValueError(
                f"Expected `factors` where the renderer's Jacobian has full rank {_F} (inside the factor "
                f"ranges) but it does not: {err}"
            ) from None
        return basis.to(factors.dtype if dtype is None else dtype)

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[0]
        index = self.lookup(x)
        unknown = int((index < 0).sum())
        if unknown:
            raise ValueError(
                f"Expected `inputs` to be shapes32 images of the factors this tangent space holds, but {unknown} "
                f"of {x.shape[0]} match none (max-abs difference > atol={self.atol:g}); the exact tangent space "
                "is defined only on the data manifold: use `basis_at(factors, labels)` for other factors or an "
                "estimator (LocalPCATangent, DecoderTangent, DenoiserTangent) for points off it"
            )
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return self.basis_at(self.factors[index], self.labels[index], dtype).to(x.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={_F}, known_points={self.factors.shape[0]})"


def shapes32_tangent(
    split: Shapes32 | Literal["train", "test"] = "test", *, atol: float = 1e-6, chunk_size: int | None = 256
) -> Shapes32Tangent:
    r"""The exact tangent space of a ``shapes32`` split (like ``digits16_subspace`` for the plane).

    Parameters
    ----------
    split : Shapes32 or {"train", "test"}
        A split from :func:`~captum_pags.datasets.load_shapes32` (or any object with ``factors``,
        ``labels`` and ``images``), or the name of one.
    atol, chunk_size
        See :class:`Shapes32Tangent`.

    Returns
    -------
    Shapes32Tangent
        Recognises the split's images; ``dim == 7``.

    Examples
    --------
    >>> from captum_pags.datasets import load_shapes32
    >>> test = load_shapes32("test")
    >>> space = shapes32_tangent(test)
    >>> space.basis(test.images[:4]).shape
    torch.Size([4, 7, 3072])
    >>> shapes32_tangent("test").lookup(test.images[:3]).tolist()
    [0, 1, 2]
    """
    if isinstance(split, str):
        split = load_shapes32(split)
    return Shapes32Tangent(split.factors, split.labels, split.images, atol=atol, chunk_size=chunk_size)


def compare_tangents(
    estimators: Mapping[str, TangentSpace], exact: TangentSpace, images: Tensor, *, batch_size: int = 64
) -> dict[str, dict[str, float]]:
    r"""Principal angles of each estimated tangent space to the exact one, over a set of images.

    For each image :math:`x_n` and estimator :math:`\hat T` with basis :math:`\hat B(x_n)`
    (:math:`\hat k` rows) and the exact basis :math:`B(x_n)` (:math:`k` rows), the
    :math:`m = \min(\hat k, k)` principal angles :math:`\theta_1 \le \dots \le \theta_m`
    (:func:`~captum_pags.manifold.principal_angles`) are summarised as

    .. math::

        \text{mean} = \frac{1}{N m}\sum_{n, i} \theta_i(x_n), \quad
        \text{max\_mean} = \frac1N \sum_n \theta_m(x_n), \quad
        \text{max\_max} = \max_n \theta_m(x_n)

    in degrees (0: the estimator finds the exact space, or contains it when :math:`\hat k > k`;
    about 90: unrelated). Images are processed ``batch_size`` at a time, so memory does not grow
    with their number.

    Parameters
    ----------
    estimators : mapping of str to TangentSpace
        Named estimators, e.g. ``{"decoder": ..., "local-pca": ..., "denoiser": ...}``.
    exact : TangentSpace
        The reference, e.g. :func:`shapes32_tangent` of the split the images come from.
    images : Tensor
        ``(N, *shape)`` points.
    batch_size : int
        Images per batch.

    Returns
    -------
    dict
        ``{name: {"dim": k_hat, "mean": ..., "max_mean": ..., "max_max": ...}}`` (angles in degrees).

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> exact = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
    >>> est = {"tilted": LinearSubspace(torch.tensor([[1.0, 1.0, 0.0]]))}
    >>> round(compare_tangents(est, exact, torch.zeros(2, 3))["tilted"]["mean"], 6)
    45.0
    """
    check_tensor("images", images)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not isinstance(exact, TangentSpace):
        raise TypeError(f"Expected `exact` to be a TangentSpace but got {type(exact).__name__}")
    for name, space in estimators.items():
        if not isinstance(space, TangentSpace):
            raise TypeError(f"Expected `estimators[{name!r}]` to be a TangentSpace but got {type(space).__name__}")
    sums = {name: [0.0, 0.0, 0.0, 0] for name in estimators}  # sum of means, sum of largest, max, count
    for s in chunks(images.shape[0], batch_size):
        batch = images[s]
        reference = exact.basis(batch).to(torch.float64)
        for name, space in estimators.items():
            angles = torch.rad2deg(principal_angles(space.basis(batch).to(torch.float64), reference))
            acc = sums[name]
            acc[0] += float(angles.mean(-1).sum())
            acc[1] += float(angles[..., -1].sum())
            acc[2] = max(acc[2], float(angles[..., -1].max()))
            acc[3] += batch.shape[0]
    return {
        name: {
            "dim": int(estimators[name].dim),
            "mean": acc[0] / max(acc[3], 1),
            "max_mean": acc[1] / max(acc[3], 1),
            "max_max": acc[2],
        }
        for name, acc in sums.items()
    }
