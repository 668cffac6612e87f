"""Exact scores of Gaussian mixtures (full covariance, or concentrated near a linear subspace).

These are the ground truth that every learned estimator in the package is tested against.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._kernel._linalg import orthonormal_rows
from .._kernel._validation import check_positive, check_tensor
from .base import ScoreModel, promote_inputs

__all__ = ["AnalyticMixtureScore", "BayesOptimalClassifier", "GaussianMixtureScore", "SubspaceGaussianMixtureScore"]


def _check_weights(weights: Tensor | None, c: int) -> Tensor:
    if weights is None:
        return torch.full((c,), 1.0 / c, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (c,) or not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
        raise ValueError(f"Expected `weights` to be {c} finite positive numbers but got {w.tolist()}")
    return w / w.sum()


def _finite64(name: str, value: Tensor) -> Tensor:
    """``value`` as float64 after checking it holds real, finite numbers (parameters, not data)."""
    check_tensor(name, value)
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"Expected `{name}` to hold real numbers but got dtype {value.dtype}")
    out = value.detach().to(torch.float64)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"Expected `{name}` to hold finite values but it contains NaN or inf")
    return out


def _polar_rows(vectors: Tensor) -> Tensor:
    r"""The orthonormal rows nearest to ``vectors``: :math:`Q = (VV^\top)^{-1/2} V = UW^\top`, :math:`V = USW^\top`.

    Unlike the right singular vectors (which rotate the rows arbitrarily within their span), this
    keeps rows that are already orthonormal as they are, so ``means`` given in the coordinates of
    the user's basis stay in those coordinates.
    """
    orthonormal_rows(vectors, name="basis")  # refuses rank-deficient bases with the kernel's threshold
    u, _, vh = torch.linalg.svd(vectors, full_matrices=False)
    return u @ vh


class AnalyticMixtureScore(ScoreModel):
    r"""Base of exact Gaussian-mixture scores.

    For a mixture :math:`p(x) = \sum_c \pi_c\, \mathcal{N}(x; m_c, \Sigma_c)` smoothed by
    :math:`\mathcal{N}(0, \sigma^2 I)`,

    .. math::

        \nabla \log p_\sigma(x \mid c) = -(\Sigma_c + \sigma^2 I)^{-1} (x - m_c), \qquad
        \nabla \log p_\sigma(x) = \sum_c w_c(x)\, \nabla \log p_\sigma(x \mid c),

    with posterior weights :math:`w_c(x) = p_\sigma(c \mid x)`. ``sigma = 0`` is allowed.
    Everything is computed in float64 and returned in the inputs' floating dtype (the default
    float dtype for integer inputs); NaN or inf parameters are refused on construction.
    Subclasses implement ``_class_terms(x, sigma)``, returning the per-class log-likelihoods
    ``(N, C)`` and scores ``(N, C, D)``.

    Examples
    --------
    >>> mix = GaussianMixtureScore(torch.tensor([[-2.0], [2.0]]), torch.eye(1))
    >>> isinstance(mix, AnalyticMixtureScore), mix.num_classes
    (True, 2)
    >>> mix.score(torch.tensor([[0.0]]), sigma=0.0)  # the two classes' pulls cancel
    tensor([[0.]])
    """

    allows_zero_sigma = True

    def __init__(self, num_classes: int, input_shape: Sequence[int], weights: Tensor | None) -> None:
        self.num_classes = num_classes
        self.input_shape = torch.Size(input_shape)
        self.log_weights = _check_weights(weights, num_classes).log()

    @property
    def num_features(self) -> int:
        """``D``, the number of features of one example."""
        return int(self.input_shape.numel())

    @abstractmethod
    def _class_terms(self, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        """Return ``(log p_sigma(x | c), score_c(x))`` shaped ``(N, C)`` and ``(N, C, D)``."""

    def _log_likelihoods64(self, inputs: Tensor, sigma: float) -> tuple[Tensor, torch.dtype]:
        """Validated float64 ``log p_sigma(x | c)`` ``(N, C)`` and the dtype to return results in."""
        sigma, _ = self.check_call(inputs, sigma, None)
        x = promote_inputs(inputs)
        return self._class_terms(x.reshape(x.shape[0], -1).double(), sigma)[0], x.dtype

    def class_log_likelihoods(self, inputs: Tensor, sigma: float = 0.0) -> Tensor:
        r"""Exact :math:`\log p_\sigma(x \mid c)` for every class, shape ``(N, C)``."""
        ll, dtype = self._log_likelihoods64(inputs, sigma)
        return ll.to(dtype)

    def log_prob(self, inputs: Tensor, sigma: float = 0.0) -> Tensor:
        r"""Exact :math:`\log p_\sigma(x) = \log \sum_c \pi_c\, p_\sigma(x \mid c)`, shape ``(N,)``."""
        ll, dtype = self._log_likelihoods64(inputs, sigma)
        return torch.logsumexp(ll + self.log_weights.to(ll), dim=1).to(dtype)

    def log_posterior(self, inputs: Tensor, sigma: float = 0.0) -> Tensor:
        r"""Exact :math:`\log p_\sigma(c \mid x) = \log \pi_c + \log p_\sigma(x \mid c) - \log p_\sigma(x)`, ``(N, C)``.

        Examples
        --------
        >>> mix = GaussianMixtureScore(torch.tensor([[-1.0], [1.0]]), torch.eye(1), torch.tensor([3.0, 1.0]))
        >>> mix.log_posterior(torch.tensor([[0.0]])).exp()  # at the midpoint: the priors
        tensor([[0.7500, 0.2500]])
        """
        ll, dtype = self._log_likelihoods64(inputs, sigma)
        return torch.log_softmax(ll + self.log_weights.to(ll), dim=1).to(dtype)

    def _score(self, inputs: Tensor, sigma: float, target: Tensor | None) -> Tensor:
        x = inputs.reshape(inputs.shape[0], -1).double()
        ll, scores = self._class_terms(x, sigma)
        if target is None:
            w = torch.softmax(ll + self.log_weights.to(ll), dim=1)
            out = torch.einsum("nc,ncd->nd", w, scores)
        else:
            out = scores[torch.arange(x.shape[0], device=x.device), target]
        return out.reshape(inputs.shape).to(inputs.dtype)


class GaussianMixtureScore(AnalyticMixtureScore):
    r"""Exact score of a Gaussian mixture with full covariances.

    Parameters
    ----------
    means : Tensor
        ``(C, D)`` or ``(C, *shape)`` class means.
    covariances : Tensor
        ``(C, D, D)`` per-class or ``(D, D)`` shared covariance (symmetric positive semi-definite;
        ``Σ + σ² I`` must be positive definite).
    weights : Tensor, optional
        ``(C,)`` class priors (normalised); uniform by default.

    Examples
    --------
    >>> gm = GaussianMixtureScore(torch.zeros(1, 2), torch.eye(2))
    >>> gm.score(torch.tensor([[1.0, 2.0]]), sigma=1.0)
    tensor([[-0.5000, -1.0000]])
    """

    def __init__(self, means: Tensor, covariances: Tensor, weights: Tensor | None = None) -> None:
        means, cov = _finite64("means", means), _finite64("covariances", covariances)
        if means.dim() < 2 or means.shape[0] == 0:
            raise ValueError(f"Expected `means` to have shape (C, D) or (C, *shape) but got {tuple(means.shape)}")
        c = means.shape[0]
        super().__init__(c, means.shape[1:], weights)
        d = self.num_features
        self.means = means.reshape(c, d)
        if cov.shape == (d, d):
            cov = cov.expand(c, d, d)
        if cov.shape != (c, d, d):
            raise ValueError(
                f"Expected `covariances` to have shape ({c}, {d}, {d}) or ({d}, {d}) but got {tuple(covariances.shape)}"
            )
        if not torch.allclose(cov, cov.transpose(1, 2), atol=1e-10):
            raise ValueError("Expected `covariances` to be symmetric")
        self.covariances = cov.contiguous()
        self._chol: dict[float, Tensor] = {}

    def _cholesky(self, sigma: float) -> Tensor:
        if sigma not in self._chol:
            eye = torch.eye(self.num_features, dtype=torch.float64)
            chol, info = torch.linalg.cholesky_ex(self.covariances + sigma**2 * eye)
            if bool((info != 0).any()):
                raise ValueError(f"Expected `covariances` + sigma^2 I to be positive definite at sigma={sigma}")
            self._chol[sigma] = chol
        return self._chol[sigma]

    def _class_terms(self, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        chol = self._cholesky(sigma).to(x)
        diff = (x.unsqueeze(1) - self.means.to(x)).transpose(0, 1)  # (C, N, D)
        z = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # (C, D, N)
        score = -torch.linalg.solve_triangular(chol.transpose(1, 2), z, upper=True)  # (C, D, N)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)  # (C,)
        ll = -0.5 * (z**2).sum(1) - 0.5 * logdet.unsqueeze(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return ll.T, score.permute(2, 0, 1)


class SubspaceGaussianMixtureScore(AnalyticMixtureScore):
    r"""Exact score of a Gaussian mixture concentrated near a ``k``-dimensional linear subspace.

    Class :math:`c` is :math:`x = U^\top(\mu_c + s_c \odot z) + \tau \varepsilon` with
    :math:`z \sim \mathcal{N}(0, I_k)`, :math:`\varepsilon \sim \mathcal{N}(0, I_D)` and orthonormal
    rows :math:`U \in \mathbb{R}^{k \times D}`. With :math:`a = U x`, :math:`r = x - U^\top a`,
    :math:`t^2 = \tau^2 + \sigma^2` and :math:`v_c = s_c^2 + t^2`,

    .. math::

        \nabla \log p_\sigma(x \mid c) = -U^\top \frac{a - \mu_c}{v_c} - \frac{r}{t^2}.

    The off-subspace term is shared by all classes, so the Bayes-optimal classifier's gradient
    :math:`\nabla \log p(y \mid x)` lies exactly in the subspace.

    Parameters
    ----------
    basis : Tensor
        ``(k, D)`` or ``(k, *shape)``; orthonormalised on construction to the nearest orthonormal
        rows (:math:`(BB^\top)^{-1/2}B`), so an orthonormal basis is kept as given and ``means``
        are coordinates along its rows.
    means : Tensor
        ``(C, k)`` class means in subspace coordinates.
    stds : Tensor or float
        On-subspace standard deviations: a float, ``(C,)`` or ``(C, k)``.
    noise_std : float
        Isotropic off-subspace noise :math:`\tau > 0`.
    weights : Tensor, optional
        ``(C,)`` class priors; uniform by default.
    input_shape : sequence of int, optional
        Per-example shape; defaults to ``basis.shape[1:]``.

    Examples
    --------
    >>> sm = SubspaceGaussianMixtureScore(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 1), 1.0, 0.5)
    >>> sm.score(torch.tensor([[1.0, 1.0]]), sigma=0.0)
    tensor([[-0.8000, -4.0000]])
    """

    def __init__(
        self,
        basis: Tensor,
        means: Tensor,
        stds: Tensor | float,
        noise_std: float,
        weights: Tensor | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        basis, means = _finite64("basis", basis), _finite64("means", means)
        k = basis.shape[0]
        if means.dim() != 2 or means.shape[1] != k:
            raise ValueError(f"Expected `means` to have shape (C, {k}) but got {tuple(means.shape)}")
        c = means.shape[0]
        shape = basis.shape[1:] if input_shape is None else torch.Size(input_shape)
        if shape.numel() != basis[0].numel():
            raise ValueError(
                f"Expected `input_shape` {tuple(shape)} to have {basis[0].numel()} elements like `basis` rows"
            )
        super().__init__(c, shape, weights)
        self.basis = _polar_rows(basis.reshape(k, -1))
        self.means = means
        s = _finite64("stds", torch.as_tensor(stds))
        if s.dim() == 0:
            s = s.expand(c, k)
        elif s.dim() == 1 and s.shape[0] == c:
            s = s.unsqueeze(1).expand(c, k)
        if s.shape != (c, k) or bool((s < 0).any()):
            raise ValueError(f"Expected `stds` to be >= 0 with shape (), ({c},) or ({c}, {k}) but got {tuple(s.shape)}")
        self.stds = s.contiguous()
        self.noise_std = check_positive("noise_std", noise_std)

    @property
    def intrinsic_dim(self) -> int:
        """``k``, the dimension of the subspace."""
        return int(self.basis.shape[0])

    def _class_terms(self, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        u = self.basis.to(x)
        t2 = self.noise_std**2 + sigma**2
        v = (self.stds**2 + t2).to(x)  # (C, k)
        a = x @ u.T  # (N, k)
        r = x - a @ u  # (N, D)
        da = a.unsqueeze(1) - self.means.to(x)  # (N, C, k)
        d, k = x.shape[1], u.shape[0]
        ll = (
            -0.5 * ((da**2) / v).sum(-1)
            - 0.5 * (r**2).sum(-1, keepdim=True) / t2
            - 0.5 * torch.log(v).sum(-1)
            - 0.5 * (d - k) * math.log(t2)
            - 0.5 * d * math.log(2 * math.pi)
        )
        score = -(da / v) @ u - (r / t2).unsqueeze(1)  # (N, C, D)
        return ll, score


class BayesOptimalClassifier(nn.Module):
    r"""The Bayes-optimal classifier of an exact mixture, as a module returning logits.

    The logits are the exact log-posteriors (a valid choice, since softmax leaves them unchanged):

    .. math::

        \text{logits}_c(x) = \log p_\sigma(c \mid x)
        = \log \pi_c + \log p_\sigma(x \mid c) - \log p_\sigma(x),

    so :math:`\nabla_x \text{logits}_y = \nabla \log p_\sigma(x\mid y) - \nabla \log p_\sigma(x)`,
    the Bayes score difference of Srinivas et al. (NeurIPS 2023). For a
    :class:`SubspaceGaussianMixtureScore` this gradient lies exactly in the subspace.

    Parameters
    ----------
    mixture : AnalyticMixtureScore
        The exact class-conditional densities.
    sigma : float
        Noise level of the smoothed densities (``0`` for the data density itself).

    Examples
    --------
    >>> gm = GaussianMixtureScore(torch.tensor([[-1.0], [1.0]]), torch.eye(1))
    >>> BayesOptimalClassifier(gm)(torch.tensor([[0.0], [1.0]])).softmax(1)
    tensor([[0.5000, 0.5000],
            [0.1192, 0.8808]])
    """

    def __init__(self, mixture: AnalyticMixtureScore, sigma: float = 0.0) -> None:
        super().__init__()
        if not isinstance(mixture, AnalyticMixtureScore):
            raise TypeError(f"Expected `mixture` to be an AnalyticMixtureScore but got {type(mixture).__name__}")
        self.mixture = mixture
        self.sigma = mixture.check_sigma(sigma)

    def forward(self, inputs: Tensor) -> Tensor:
        """Log-posteriors ``(N, C)`` of ``(N, *shape)`` inputs."""
        return self.mixture.log_posterior(inputs, self.sigma)
