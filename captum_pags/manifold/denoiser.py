"""Tangent space from the dominant eigen-directions of a denoiser's Jacobian."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._kernel._autodiff import jvp_many, vjp_many
from .._kernel._model_state import evaluation_state
from .._kernel._tensors import chunks
from .._kernel._validation import check_int, check_positive, check_tensor
from ..scores.base import ScoreModel, TargetLike
from .base import ShapeLike, TangentSpace

__all__ = ["DenoiserTangent", "intrinsic_dimension"]


def intrinsic_dimension(spectrum: Tensor) -> Tensor:
    r"""Estimate the intrinsic dimension from the largest gap of a descending spectrum.

    .. math::

        \hat k = \operatorname*{arg\,max}_{1 \le i < m} \frac{\lambda_i}{\lambda_{i+1}},

    with :math:`\lambda_{i+1}` floored at machine epsilon times :math:`\lambda_1`. Applied to the
    spectrum of a denoiser's Jacobian (:meth:`DenoiserTangent.spectrum`), whose eigenvalues are
    close to 1 along the manifold and close to 0 across it at small noise levels, this counts the
    tangent directions (Kadkhodaie et al., ICLR 2024).

    Parameters
    ----------
    spectrum : Tensor
        ``(..., m)`` non-negative values in descending order, ``m >= 2``.

    Returns
    -------
    Tensor
        ``(...)`` int64 estimates in ``1 .. m - 1`` (ties go to the smaller dimension).

    Examples
    --------
    >>> intrinsic_dimension(torch.tensor([[1.0, 0.9, 0.8, 1e-3, 1e-4], [1.0, 1e-2, 1e-3, 1e-4, 1e-5]]))
    tensor([3, 1])
    """
    check_tensor("spectrum", spectrum)
    if spectrum.dim() < 1 or spectrum.shape[-1] < 2:
        raise ValueError(f"Expected `spectrum` to have shape (..., m) with m >= 2 but got {tuple(spectrum.shape)}")
    if not spectrum.is_floating_point():
        spectrum = spectrum.to(torch.get_default_dtype())
    if not bool(torch.isfinite(spectrum).all()) or bool((spectrum < 0).any()):
        raise ValueError("Expected `spectrum` to hold finite values >= 0")
    rising = spectrum[..., 1:] > spectrum[..., :-1]
    if bool(rising.any()):
        where = tuple(int(i) for i in rising.nonzero()[0])
        raise ValueError(
            f"Expected `spectrum` to be in descending order along its last dimension but it rises at index {where}"
        )
    info = torch.finfo(spectrum.dtype)
    floor = (spectrum[..., :1] * info.eps).clamp_min(info.tiny)
    ratio = spectrum[..., :-1] / torch.maximum(spectrum[..., 1:], floor)
    return ratio.argmax(-1) + 1


def _orthonormal_columns(vectors: Tensor) -> Tensor:
    """``(m, n, *shape)`` vectors -> ``(n, D, m)`` orthonormal columns spanning them (QR)."""
    m, n = vectors.shape[:2]
    return torch.linalg.qr(vectors.reshape(m, n, -1).permute(1, 2, 0)).Q


def _as_directions(columns: Tensor, shape: torch.Size) -> Tensor:
    """``(n, D, m)`` columns -> ``(m, n, *shape)`` tangents or cotangents."""
    n, _, m = columns.shape
    return columns.permute(2, 0, 1).reshape(m, n, *shape)


class DenoiserTangent(TangentSpace):
    r"""Tangent space from the dominant eigen-directions of a denoiser's Jacobian.

    For the optimal denoiser :math:`D(x) = \mathbb{E}[x_0 \mid x_0 + \sigma \varepsilon = x]` of
    data near a manifold, Tweedie's formula gives the posterior covariance

    .. math::

        \operatorname{Cov}[x_0 \mid x] = \sigma^2 \frac{\partial D}{\partial x}(x), \qquad
        D(x) = x + \sigma^2 \nabla \log p_\sigma(x),

    and at small :math:`\sigma` its dominant eigenvectors span the tangent space of the manifold
    near :math:`x` (Kadkhodaie et al., ICLR 2024; Manor & Michaeli, ICLR 2024). The ``k`` leading
    left singular vectors of :math:`J = \partial D / \partial x` are found without forming
    :math:`J` by randomized subspace iteration (Halko, Martinsson & Tropp, 2011) with
    :math:`m = k + p` probe vectors :math:`\Omega` (``p`` = ``oversampling``) and ``q`` =
    ``iterations``:

    .. math::

        Q \leftarrow \operatorname{qr}(J \Omega), \quad
        Q \leftarrow \operatorname{qr}\big(J\, \operatorname{qr}(J^\top Q)\big)\ (q \text{ times}), \quad
        Q^\top J = \hat U \hat S \hat V^\top, \quad B(x) = (Q \hat U_{:, :k})^\top.

    Each product is a batched ``torch.func`` JVP or VJP over the ``m`` probes (``vmap``), so a
    call costs about :math:`(2q + 2)\, m` network evaluations per batch, not one per pixel. The
    singular values :math:`\hat S` are the spectrum used by :func:`intrinsic_dimension`.

    Parameters
    ----------
    denoiser : ScoreModel or Callable
        A :class:`~captum_pags.scores.ScoreModel` (its Tweedie denoiser is used) or a function
        ``D(x, sigma)`` returning denoised ``(N, *shape)`` inputs. It must be differentiable by
        ``torch.func`` (no ``torch.no_grad`` inside) and treat examples independently.
    sigma : float
        Noise level of the denoiser, small compared to the manifold's curvature radius but large
        compared to the data's spread off the manifold.
    dim : int
        ``k``, the tangent dimension, ``1 <= k < D``.
    oversampling : int
        ``p >= 0`` extra probe vectors (``m = min(k + p, D)``).
    iterations : int
        ``q >= 0`` power iterations; each sharpens the separation by the spectral ratio.
    target : int, list of int or Tensor, optional
        Class labels for a class-conditional score model (``(N,)`` or one int for all).
    seed : int
        Seeds the probe vectors (the same probes for every example, so results do not depend on
        the batching).
    chunk_size : int, optional
        Examples per batch of products (memory grows with ``chunk_size * m``); ``None`` takes
        all at once.
    input_shape : sequence of int, optional
        Per-example shape; defaults to the score model's ``input_shape``.
    vectorize : bool
        Use ``torch.func.vmap`` over the probes (default); ``False`` folds them into one larger
        batch instead, for networks with operations ``vmap`` does not support.

    Attributes
    ----------
    last_spectrum : Tensor or None
        ``(N, m)`` singular values of :math:`J` (descending) found in the last call.

    Examples
    --------
    >>> from captum_pags.scores import SubspaceGaussianMixtureScore
    >>> plane = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    >>> score = SubspaceGaussianMixtureScore(plane, torch.zeros(1, 2), stds=1.0, noise_std=1e-3)
    >>> space = DenoiserTangent(score, sigma=0.1, dim=2, oversampling=1)
    >>> on = space.project(torch.zeros(1, 4), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> torch.allclose(on, torch.tensor([[1.0, 2.0, 0.0, 0.0]]), atol=1e-4)
    True
    >>> space.intrinsic_dimension(torch.zeros(1, 4))
    tensor([2])
    """

    def __init__(
        self,
        denoiser: ScoreModel | Callable[[Tensor, float], Tensor],
        sigma: float,
        dim: int,
        *,
        oversampling: int = 10,
        iterations: int = 2,
        target: TargetLike = None,
        seed: int = 0,
        chunk_size: int | None = 8,
        input_shape: ShapeLike | None = None,
        vectorize: bool = True,
    ) -> None:
        if isinstance(denoiser, ScoreModel):
            self.sigma = denoiser.check_sigma(sigma)
            if self.sigma == 0:
                raise ValueError("Expected `sigma` to be > 0 (the denoiser is the identity at 0) but got 0.0")
            if input_shape is None and denoiser.input_shape is not None:
                input_shape = tuple(denoiser.input_shape)
        elif callable(denoiser):
            self.sigma = check_positive("sigma", sigma)
            if target is not None:
                raise ValueError("Expected `target=None` for a plain denoiser function D(x, sigma) but got a target")
        else:
            raise TypeError(
                f"Expected `denoiser` to be a ScoreModel or a callable D(x, sigma) but got {type(denoiser).__name__}"
            )
        super().__init__(input_shape)
        if self._input_shapes is not None and len(self._input_shapes) != 1:
            raise ValueError(f"Expected `input_shape` to be one shape but got {len(self._input_shapes)}")
        check_int("dim", dim, minimum=1)
        if self.num_features is not None and dim >= self.num_features:
            raise ValueError(f"Expected `dim` to be < D = {self.num_features} but got {dim}")
        self.denoiser = denoiser
        self._dim = dim
        self.oversampling = check_int("oversampling", oversampling, minimum=0)
        self.iterations = check_int("iterations", iterations, minimum=0)
        self.target = target
        self.seed = check_int("seed", seed)
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)
        self.vectorize = bool(vectorize)
        self.last_spectrum: Tensor | None = None
        self._probes: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}

    @property
    def dim(self) -> int:
        """``k``, the number of eigen-directions returned."""
        return self._dim

    def _probe_matrix(self, m: int, d: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        key = (m, d, device, dtype)
        if key not in self._probes:
            gen = torch.Generator().manual_seed(self.seed)
            self._probes[key] = torch.randn(m, d, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        return self._probes[key]

    def _denoise_fn(self, target: Tensor | None) -> Callable[[Tensor], Tensor]:
        sigma = self.sigma
        if isinstance(self.denoiser, ScoreModel):
            model = self.denoiser
            used = model.resolve_sigma(sigma)  # Tweedie with the noise level actually evaluated, as in `denoise`
            return lambda x: x + used**2 * model.raw_score(x, sigma, target)
        fn = self.denoiser
        return lambda x: fn(x, sigma)

    def _estimate(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        if len(inputs) != 1:
            raise ValueError(
                f"Expected `inputs` to be one tensor for a DenoiserTangent but got a tuple of {len(inputs)}"
            )
        x = inputs[0]
        if not x.is_floating_point():
            raise TypeError(f"Expected `inputs` to be floating point but got {x.dtype}")
        n, d = x.shape[0], int(x[0].numel())
        if self._dim >= d:
            raise ValueError(f"Expected `dim` to be < D = {d} but got {self._dim}")
        target = None
        if isinstance(self.denoiser, ScoreModel):
            _, target = self.denoiser.check_call(x, self.sigma, self.target)
        m = min(self._dim + self.oversampling, d)
        probes = self._probe_matrix(m, d, x.device, x.dtype)
        bases, spectra = [], []
        # freeze the networks a score model wraps before torch.func transforms run it
        networks = self.denoiser.networks() if isinstance(self.denoiser, ScoreModel) else []
        with evaluation_state(self.denoiser, *networks), torch.no_grad():
            for s in chunks(n, self.chunk_size):
                fn = self._denoise_fn(None if target is None else target[s])
                basis, spectrum = self._chunk(fn, x[s].detach(), probes)
                bases.append(basis)
                spectra.append(spectrum)
        return torch.cat(bases), torch.cat(spectra)

    def _chunk(self, fn: Callable[[Tensor], Tensor], x: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
        n, shape, m = x.shape[0], x.shape[1:], probes.shape[0]
        tangents = probes.reshape(m, 1, *shape).expand(m, n, *shape)
        y = jvp_many(fn, x, tangents, vectorize=self.vectorize)
        if y.shape[1:] != x.shape:
            raise ValueError(
                f"Expected `denoiser` to return the shape of `inputs` {tuple(x.shape)} but got {tuple(y.shape[1:])}"
            )
        if not bool(torch.isfinite(y).all()):
            raise ValueError("Expected the Jacobian of `denoiser` to be finite but it contains NaN or inf")
        if not bool(y.reshape(m, n, -1).abs().amax(dim=(0, 2)).gt(0).all()):
            raise ValueError(
                "Expected `denoiser` to be differentiable with respect to its input, but its Jacobian is zero at "
                "some inputs (does it run under torch.no_grad or detach its input?)"
            )
        q = _orthonormal_columns(y)
        for _ in range(self.iterations):
            q = _orthonormal_columns(vjp_many(fn, x, _as_directions(q, shape), vectorize=self.vectorize))
            q = _orthonormal_columns(jvp_many(fn, x, _as_directions(q, shape), vectorize=self.vectorize))
        # Rayleigh-Ritz: Q^T J = U S V^T, with U and S from the small (m, m) Gram matrix (float64)
        qt_j = vjp_many(fn, x, _as_directions(q, shape), vectorize=self.vectorize).reshape(m, n, -1).transpose(0, 1)
        evals, evecs = torch.linalg.eigh((qt_j @ qt_j.transpose(1, 2)).double())
        spectrum = evals.flip(-1).clamp_min(0).sqrt().to(x.dtype)
        u_hat = evecs.flip(-1)[:, :, : self._dim].to(x.dtype)
        basis = (q @ u_hat).transpose(1, 2)
        return basis, spectrum

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        basis, spectrum = self._estimate(inputs)
        self.last_spectrum = spectrum
        return basis

    def spectrum(self, inputs: Tensor) -> Tensor:
        r"""Leading singular values of the denoiser Jacobian :math:`\partial D / \partial x`.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` points near the manifold.

        Returns
        -------
        Tensor
            ``(N, m)`` descending, ``m = min(dim + oversampling, D)``; for the optimal denoiser they
            are the eigenvalues of :math:`\operatorname{Cov}[x_0 \mid x] / \sigma^2`.
        """
        inputs_t = self._checked_float_inputs(inputs)
        _, spectrum = self._estimate(inputs_t)
        self.last_spectrum = spectrum
        return spectrum

    def intrinsic_dimension(self, inputs: Tensor) -> Tensor:
        r"""Intrinsic dimension at each input from the largest gap of :meth:`spectrum`.

        See :func:`intrinsic_dimension`; estimates range over ``1 .. m - 1``, so choose
        ``dim + oversampling`` above the dimension you expect.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` points near the manifold.

        Returns
        -------
        Tensor
            ``(N,)`` int64 estimates.
        """
        return intrinsic_dimension(self.spectrum(inputs))

    def __repr__(self) -> str:
        name = type(self.denoiser).__name__
        return f"{type(self).__name__}({name}, sigma={self.sigma:g}, dim={self.dim}, input_shape={self.input_shape})"
