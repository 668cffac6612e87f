"""Synthetic data with a known manifold, exact scores and an exact Bayes-optimal classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._kernel._validation import check_int, check_positive
from ..manifold.subspace import LinearSubspace
from ..scores.analytic import BayesOptimalClassifier, SubspaceGaussianMixtureScore

__all__ = ["GaussianSubspaceMixture"]


def _smooth_basis(k: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Random images blurred by a Gaussian kernel: a subspace whose samples look like pictures."""
    c, h, w = shape
    noise = torch.randn(k, c, h, w, generator=generator, dtype=torch.float64)
    radius = max(1, min(h, w) // 4)
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (xs / (radius / 2)) ** 2)
    kernel = (g[:, None] * g[None, :]) / g.sum() ** 2
    kernel = kernel.expand(c, 1, -1, -1).contiguous()
    blurred = F.conv2d(F.pad(noise, [radius] * 4, mode="circular"), kernel, groups=c)
    return blurred.reshape(k, -1)


class GaussianSubspaceMixture:
    r"""A Gaussian mixture on a known ``k``-dimensional linear subspace of :math:`\mathbb{R}^D`.

    Class :math:`c \in \{0,\dots,C-1\}` (prior :math:`\pi_c`, uniform unless ``weights`` are given) draws

    .. math::

        x = U^\top(\mu_c + s\, z) + \tau\, \varepsilon, \qquad z \sim \mathcal{N}(0, I_k),\;
        \varepsilon \sim \mathcal{N}(0, I_D),

    where the rows of :math:`U` are an orthonormal basis of the subspace, :math:`\mu_c` are class
    means drawn with norm ``class_sep``, :math:`s` = ``on_std`` and :math:`\tau` = ``off_std``.
    Everything about it is exact: the tangent space (:attr:`tangent_space`), the score of the data
    smoothed at any :math:`\sigma` (:attr:`score_model`) and the Bayes-optimal classifier
    (:meth:`bayes_classifier`).

    Parameters
    ----------
    num_classes : int
        ``C >= 2``.
    intrinsic_dim : int
        ``k``, with ``1 <= k < D``.
    shape : int or sequence of int
        Per-example shape; ``(C, H, W)`` for images. ``D`` is its number of elements.
    class_sep : float
        Norm of each class mean in subspace coordinates.
    on_std : float
        Standard deviation :math:`s` inside the subspace.
    off_std : float
        Standard deviation :math:`\tau` of the isotropic noise off the subspace.
    basis : {"random", "smooth"}
        ``"smooth"`` (images only) spans blurred random images, so samples look like pictures.
    seed : int
        Seeds the basis and the means.
    weights : sequence of float, optional
        Class priors :math:`\pi_c` (normalised). Without them classes are equally likely and
        :meth:`sample` takes them in turn; with them :meth:`sample` draws the labels.

    Examples
    --------
    >>> data = GaussianSubspaceMixture(num_classes=2, intrinsic_dim=2, shape=6, seed=0)
    >>> x, y = data.sample(4, seed=1)
    >>> x.shape, y.tolist()
    (torch.Size([4, 6]), [0, 1, 0, 1])
    >>> data.tangent_space.dim
    2
    """

    def __init__(
        self,
        num_classes: int = 3,
        intrinsic_dim: int = 4,
        shape: int | Sequence[int] = (1, 8, 8),
        class_sep: float = 3.0,
        on_std: float = 1.0,
        off_std: float = 1e-3,
        basis: str = "random",
        seed: int = 0,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.shape = torch.Size((shape,) if isinstance(shape, int) else tuple(shape))
        d = int(self.shape.numel())
        check_int("intrinsic_dim", intrinsic_dim, minimum=1)
        if intrinsic_dim >= d:
            raise ValueError(f"Expected `intrinsic_dim` to be < D = {d} but got {intrinsic_dim}")
        self.intrinsic_dim = intrinsic_dim
        self.class_sep = check_positive("class_sep", class_sep, allow_zero=True)
        self.on_std = check_positive("on_std", on_std)
        self.off_std = check_positive("off_std", off_std)
        gen = torch.Generator().manual_seed(seed)
        if basis == "smooth":
            if len(self.shape) != 3:
                raise ValueError(f"Expected `shape` (C, H, W) for `basis='smooth'` but got {tuple(self.shape)}")
            raw = _smooth_basis(intrinsic_dim, tuple(self.shape), gen)
        elif basis == "random":
            raw = torch.randn(intrinsic_dim, d, generator=gen, dtype=torch.float64)
        else:
            raise ValueError(f"Expected `basis` to be one of 'random', 'smooth' but got {basis!r}")
        directions = torch.randn(self.num_classes, intrinsic_dim, generator=gen, dtype=torch.float64)
        means = self.class_sep * directions / directions.norm(dim=1, keepdim=True)
        priors = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.score_model = SubspaceGaussianMixtureScore(
            raw, means, self.on_std, self.off_std, weights=priors, input_shape=self.shape
        )
        self.weights: Tensor | None = None if weights is None else self.score_model.log_weights.exp()
        self.tangent_space = LinearSubspace(self.score_model.basis, input_shape=self.shape)

    @property
    def basis(self) -> Tensor:
        """``(k, D)`` orthonormal basis of the subspace (float64)."""
        return self.score_model.basis

    @property
    def means(self) -> Tensor:
        """``(C, k)`` class means in subspace coordinates (float64)."""
        return self.score_model.means

    def sample(self, n: int, seed: int | None = None, *, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Draw ``n`` labelled examples: classes in turn (``y = i mod C``), or drawn from ``weights`` if given.

        Returns
        -------
        (Tensor, Tensor)
            Inputs ``(n, *shape)`` and labels ``(n,)``.
        """
        check_int("n", n, minimum=1)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        if self.weights is None:
            y = torch.arange(n) % self.num_classes
        else:
            y = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        k, d = self.intrinsic_dim, int(self.shape.numel())
        z = torch.randn(n, k, generator=gen, dtype=torch.float64)
        eps = torch.randn(n, d, generator=gen, dtype=torch.float64)
        x = (self.means[y] + self.on_std * z) @ self.basis + self.off_std * eps
        return x.reshape(n, *self.shape).to(dtype), y

    def score(self, inputs: Tensor, sigma: float, target: Tensor | int | None = None) -> Tensor:
        r"""Exact score :math:`\nabla \log p_\sigma(x\,[\mid y])` (see :class:`SubspaceGaussianMixtureScore`)."""
        return self.score_model.score(inputs, sigma, target)

    def bayes_classifier(self, sigma: float = 0.0) -> BayesOptimalClassifier:
        """The exact Bayes-optimal classifier (logits) for the data smoothed at ``sigma``."""
        return BayesOptimalClassifier(self.score_model, sigma)
