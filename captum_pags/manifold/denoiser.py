"""Tangent space from the dominant eigen-directions of a denoiser's Jacobian."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from .._kernel._linalg import compute_dtype
from .._kernel._model_state import evaluation_state, owning_module
from .._kernel._tensors import chunks
from .._kernel._validation import check_choice, check_int, check_positive, check_tensor
from ..scores.base import ScoreModel, TargetLike
from ._subspace_iteration import JacobianProducts, general_iteration, symmetric_iteration, transformable_attention
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


Method = Literal["symmetric", "general"]
_DEFAULT_ITERATIONS = {"symmetric": 2, "general": 2}


class DenoiserTangent(TangentSpace):
    r"""Tangent space from the dominant eigen-directions of a denoiser's Jacobian.

    For the optimal denoiser :math:`D(x) = \mathbb{E}[x_0 \mid x_0 + \sigma \varepsilon = x]` of
    data near a manifold, Tweedie's formula gives the posterior covariance

    .. math::

        \operatorname{Cov}[x_0 \mid x] = \sigma^2 \frac{\partial D}{\partial x}(x), \qquad
        D(x) = x + \sigma^2 \nabla \log p_\sigma(x),

    and at small :math:`\sigma` its dominant eigenvectors span the tangent space of the manifold
    near :math:`x` (Kadkhodaie et al., ICLR 2024; Manor & Michaeli, ICLR 2024). The ``k`` leading
    directions of :math:`J = \partial D / \partial x` are found without forming :math:`J` by
    randomized subspace iteration (Halko, Martinsson & Tropp, 2011) with :math:`m = k + p` probe
    vectors :math:`\Omega` (``p`` = ``oversampling``) and ``q`` = ``iterations``:

    * ``method="symmetric"`` (default) uses that :math:`J` is (close to) symmetric, a Hessian of
      :math:`\tfrac{1}{2}\|x\|^2 + \sigma^2 \log p_\sigma`: VJPs only, and a Rayleigh-Ritz step on
      the whole block Krylov space (Musco & Musco, NeurIPS 2015),

      .. math::

          Q_0 = \operatorname{orth}(\Omega), \quad Y_i = J^\top Q_i, \quad
          Q_{i+1} = \operatorname{orth}(Y_i), \quad
          B(x) = \text{top-}k \text{ Ritz vectors of } J \text{ on }
          \operatorname{span}[Q_0, \dots, Q_q],

      :math:`(q + 1)\, m` products per example and no forward-mode AD (which the fused attention
      kernels lack). On the exact mixtures of the tests, ``q = 1`` (``2m`` products) is already
      more accurate than the general path at ``q = 2`` (``6m``);
    * ``method="general"`` finds the left singular vectors of any :math:`J` (a learned denoiser is
      not exactly symmetric) from JVPs and VJPs,

      .. math::

          Q \leftarrow \operatorname{qr}(J \Omega), \quad
          Q \leftarrow \operatorname{qr}\big(J\, \operatorname{qr}(J^\top Q)\big)\ (q \text{ times}), \quad
          Q^\top J = \hat U \hat S \hat V^\top, \quad B(x) = (Q \hat U_{:, :k})^\top,

      :math:`(2q + 2)\, m` products per example.

    Inputs are cast to the dtype of the denoiser's parameters (integer images are promoted, never
    truncated); the basis comes back in the inputs' float dtype (float32 for 16-bit inputs).
    Products run as batched ``torch.func`` VJPs/JVPs under ``vmap``, ``probe_chunk_size`` probes
    and ``chunk_size`` examples at a time (peak memory grows with their product), with
    ``scaled_dot_product_attention`` switched to its math implementation inside the call (fused
    kernels support neither forward-mode AD nor ``vmap`` over their backward; the previous
    setting is restored after). The singular values found are the spectrum used by
    :func:`intrinsic_dimension`.

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
    iterations : int, optional
        ``q >= 0`` power iterations; default 2 for both: ``3 m`` products per example for
        ``"symmetric"``, ``6 m`` for ``"general"``.
    method : {"symmetric", "general"}
        VJP-only iteration for a symmetric Jacobian, or the JVP/VJP iteration for any Jacobian.
    conditional : bool
        Take the class labels of a class-conditional score model per call, from the ``target`` of
        :meth:`basis`, :meth:`components`, ... (:class:`~captum_pags.attr.ManifoldGradient`
        passes its attribution target, so batches of any size and NoiseTunnel's expanded batch
        work). False: the unconditional score (or the fixed ``target`` below).
    target : int, list of int or Tensor, optional
        Fixed class labels (``(N,)`` or one int for all), kept for compatibility; prefer
        ``conditional=True`` and per-call targets.
    seed : int
        Seeds the probe vectors (the same probes for every example, so results do not depend on
        the batching).
    chunk_size : int, optional
        Examples per batch of products; ``None`` takes all at once.
    probe_chunk_size : int, optional
        Probes per vectorised pass; ``None`` takes all ``m`` at once. Results do not depend on it.
    input_shape : sequence of int, optional
        Per-example shape; defaults to the score model's ``input_shape``.
    vectorize : bool
        Use ``torch.func.vmap`` over the probes (default); ``False`` folds them into one larger
        batch instead, for networks with operations ``vmap`` does not support.

    Attributes
    ----------
    last_spectrum : Tensor or None
        ``(N, m)`` singular values (descending) found in the last call.
    last_products_per_example : int or None
        Jacobian-vector products per example of the last call (the cost, in network passes).

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
        iterations: int | None = None,
        method: Method = "symmetric",
        conditional: bool = False,
        target: TargetLike = None,
        seed: int = 0,
        chunk_size: int | None = 4,
        probe_chunk_size: int | None = 8,
        input_shape: ShapeLike | None = None,
        vectorize: bool = True,
    ) -> None:
        if isinstance(denoiser, ScoreModel):
            self.sigma = denoiser.check_sigma(sigma)
            if self.sigma == 0:
                raise ValueError("Expected `sigma` to be > 0 (the denoiser is the identity at 0) but got 0.0")
            if input_shape is None and denoiser.input_shape is not None:
                input_shape = tuple(denoiser.input_shape)
            if conditional and denoiser.num_classes is None:
                raise ValueError(
                    "Expected `conditional=False` for an unconditional score model (it takes no class labels)"
                )
        elif callable(denoiser):
            self.sigma = check_positive("sigma", sigma)
            if target is not None or conditional:
                raise ValueError(
                    "Expected `target=None` for a plain denoiser function D(x, sigma) (it takes no class labels; "
                    "`conditional` must be False) but got a target"
                )
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
        self.method = check_choice("method", method, ("symmetric", "general"))
        default_q = _DEFAULT_ITERATIONS[method]
        self.iterations = default_q if iterations is None else check_int("iterations", iterations, minimum=0)
        self.conditional = bool(conditional)
        self.target = target
        self.seed = check_int("seed", seed)
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)
        self.probe_chunk_size = (
            None if probe_chunk_size is None else check_int("probe_chunk_size", probe_chunk_size, minimum=1)
        )
        self.vectorize = bool(vectorize)
        self.last_spectrum: Tensor | None = None
        self.last_products_per_example: int | None = None
        self._probes: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}

    @property
    def dim(self) -> int:
        """``k``, the number of eigen-directions returned."""
        return self._dim

    @property
    def takes_target(self) -> bool:
        """Whether calls read class labels from their ``target`` (``conditional=True``)."""
        return self.conditional

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

    def _network_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """Inputs are cast to the floating dtype of the denoiser's parameters (if it has any)."""
        if isinstance(self.denoiser, ScoreModel):
            modules = list(self.denoiser.networks())
        else:
            module = owning_module(self.denoiser)
            modules = [] if module is None else [module]
        for module in modules:
            for p in module.parameters():
                if p.is_floating_point():
                    return p.dtype
        return dtype

    def _labels(self, x: Tensor, target: TargetLike) -> Tensor | None:
        if not isinstance(self.denoiser, ScoreModel):
            return None
        labels = target if self.conditional and target is not None else self.target
        if self.conditional and labels is None:
            raise ValueError(
                "Expected `target` (class labels, one per example or one for all) for a DenoiserTangent with "
                "conditional=True but got None"
            )
        _, labels = self.denoiser.check_call(x, self.sigma, labels)
        return labels

    def _estimate(self, inputs: tuple[Tensor, ...], target: TargetLike = None) -> tuple[Tensor, Tensor]:
        if len(inputs) != 1:
            raise ValueError(
                f"Expected `inputs` to be one tensor for a DenoiserTangent but got a tuple of {len(inputs)}"
            )
        x = inputs[0]
        out_dtype = compute_dtype(x.dtype)
        x = x.to(self._network_dtype(x.dtype))
        n, d = x.shape[0], int(x[0].numel())
        if self._dim >= d:
            raise ValueError(f"Expected `dim` to be < D = {d} but got {self._dim}")
        labels = self._labels(x, target)
        m = min(self._dim + self.oversampling, d)
        probes = self._probe_matrix(m, d, x.device, x.dtype)
        iterate = symmetric_iteration if self.method == "symmetric" else general_iteration
        bases, spectra, count = [], [], 0
        # freeze the networks a score model wraps before torch.func transforms run it
        networks = self.denoiser.networks() if isinstance(self.denoiser, ScoreModel) else []
        with evaluation_state(self.denoiser, *networks), torch.no_grad(), transformable_attention():
            for s in chunks(n, self.chunk_size):
                fn = self._denoise_fn(None if labels is None else labels[s])
                xs = x[s].detach()
                products = JacobianProducts(fn, xs, self.probe_chunk_size, self.vectorize)
                basis, spectrum = iterate(products, probes.expand(xs.shape[0], -1, -1), self._dim, self.iterations)
                bases.append(basis.to(out_dtype))
                spectra.append(spectrum.to(out_dtype))
                count = products.count
        self.last_products_per_example = count
        return torch.cat(bases), torch.cat(spectra)

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        return self._basis_for(inputs, None)

    def _basis_for(self, inputs: tuple[Tensor, ...], target: TargetLike) -> Tensor:
        basis, spectrum = self._estimate(inputs, target)
        self.last_spectrum = spectrum
        return basis

    def spectrum(self, inputs: Tensor, target: TargetLike = None) -> Tensor:
        r"""Leading singular values of the denoiser Jacobian :math:`\partial D / \partial x`.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` points near the manifold.
        target : int, list of int or Tensor, optional
            Class labels, read when ``conditional=True``.

        Returns
        -------
        Tensor
            ``(N, m)`` descending, ``m = min(dim + oversampling, D)``; for the optimal denoiser they
            are the eigenvalues of :math:`\operatorname{Cov}[x_0 \mid x] / \sigma^2`.
        """
        inputs_t = self._checked_float_inputs(inputs)
        self._check_target(target)
        _, spectrum = self._estimate(inputs_t, target)
        self.last_spectrum = spectrum
        return spectrum

    def intrinsic_dimension(self, inputs: Tensor, target: TargetLike = None) -> Tensor:
        r"""Intrinsic dimension at each input from the largest gap of :meth:`spectrum`.

        See :func:`intrinsic_dimension`; estimates range over ``1 .. m - 1``, so choose
        ``dim + oversampling`` above the dimension you expect.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` points near the manifold.
        target : int, list of int or Tensor, optional
            Class labels, read when ``conditional=True``.

        Returns
        -------
        Tensor
            ``(N,)`` int64 estimates.
        """
        return intrinsic_dimension(self.spectrum(inputs, target))

    def __repr__(self) -> str:
        name = type(self.denoiser).__name__
        return (
            f"{type(self).__name__}({name}, sigma={self.sigma:g}, dim={self.dim}, method={self.method!r}, "
            f"input_shape={self.input_shape})"
        )
