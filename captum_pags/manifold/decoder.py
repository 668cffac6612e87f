"""Tangent space of an autoencoder's decoder: the decoder Jacobian at each input's encoding."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._kernel._autodiff import jvp_many
from .._kernel._linalg import compute_dtype, principal_rows
from .._kernel._model_state import evaluation_state, owning_module
from .._kernel._tensors import chunks
from .._kernel._validation import check_int, check_positive
from ._subspace_iteration import transformable_attention
from .base import ShapeLike, TangentSpace

__all__ = ["DecoderTangent"]


def _latent_mean(encoded: Any) -> Tensor:
    """The deterministic latent code from whatever an encoder returns.

    A tensor is returned as it is; a tuple or list gives its first element (e.g. the mean of
    ``(mean, log_var)``); an object with a ``latent_dist`` field (diffusers ``AutoencoderKL``)
    gives ``latent_dist.mean``; an object with a tensor ``mean`` field (a
    :class:`torch.distributions.Normal`) gives that mean.

    Parameters
    ----------
    encoded : Any
        What the encoder returned for a batch.

    Returns
    -------
    Tensor
        ``(N, *latent_shape)`` latent codes.

    Examples
    --------
    >>> _latent_mean((torch.zeros(2, 3), torch.ones(2, 3))).shape
    torch.Size([2, 3])
    >>> _latent_mean(torch.distributions.Normal(torch.ones(1, 2), 1.0))
    tensor([[1., 1.]])
    """
    if isinstance(encoded, Tensor):
        return encoded
    if isinstance(encoded, (tuple, list)) and encoded:
        return _latent_mean(encoded[0])
    dist = getattr(encoded, "latent_dist", None)
    if dist is not None:
        return _latent_mean(dist)
    mean = getattr(encoded, "mean", None)
    if isinstance(mean, Tensor):
        return mean
    raise TypeError(
        "Expected `encoder` to return a tensor, a tuple whose first element is the latent mean, or an "
        f"object with a `mean` or `latent_dist.mean` field but got {type(encoded).__name__}"
    )


def _decoded_tensor(decoded: Any) -> Tensor:
    """The image tensor from whatever a decoder returns.

    A tensor is returned as it is; a tuple or list gives its first element; an object with a
    tensor ``sample`` field (diffusers ``DecoderOutput``) gives that field.

    Parameters
    ----------
    decoded : Any
        What the decoder returned for a batch.

    Returns
    -------
    Tensor
        ``(N, *shape)`` decoded examples.

    Examples
    --------
    >>> _decoded_tensor((torch.zeros(2, 4),)).shape
    torch.Size([2, 4])
    """
    if isinstance(decoded, Tensor):
        return decoded
    if isinstance(decoded, (tuple, list)) and decoded:
        return _decoded_tensor(decoded[0])
    sample = getattr(decoded, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    raise TypeError(
        "Expected `decoder` to return a tensor, a tuple whose first element is the decoded batch, or an "
        f"object with a tensor `sample` field but got {type(decoded).__name__}"
    )


def _network_dtype(fn: Any, dtype: torch.dtype) -> torch.dtype:
    """The floating dtype of the parameters of the module behind ``fn`` (else ``dtype``): inputs are cast to it."""
    module = owning_module(fn)
    if module is not None:
        for p in module.parameters():
            if p.is_floating_point():
                return p.dtype
    return dtype


class DecoderTangent(TangentSpace):
    r"""Tangent space spanned by the columns of a decoder's Jacobian at each input's encoding.

    For an autoencoder with encoder :math:`E` and decoder :math:`G: \mathbb{R}^k \to \mathbb{R}^D`,
    the decoded data form a :math:`k`-dimensional manifold whose tangent space at
    :math:`G(E(x))` is the column space of the Jacobian:

    .. math::

        z = E(x), \qquad J(x) = \frac{\partial G}{\partial z}\Big|_{z} \in \mathbb{R}^{D \times k},
        \qquad B(x) = \operatorname{orth}\big(J(x)^\top\big) \in \mathbb{R}^{k \times D}.

    Srinivas, Bordt & Lakkaraju (NeurIPS 2023), after Bordt et al. (2023), used this tangent space
    with one backward pass per output pixel. Here :math:`J` is built from :math:`k` forward-mode
    products :math:`J e_i` (``torch.func.jvp`` under ``vmap``, batched over the examples), so the
    cost is about :math:`k` batched forward passes, whatever :math:`D` is. The rows are
    orthonormalised through the small :math:`k \times k` Gram matrix :math:`J^\top J`
    (eigendecomposed in float64; they come out as right singular vectors of :math:`J^\top`,
    largest singular value first); directions whose singular value is at most ``rtol`` times the
    largest are returned as zero rows (the rank per example is kept in :attr:`last_rank`, and a
    warning is given once).

    Inputs are cast to the dtype of the encoder's parameters (integer images included, never
    truncated); the basis comes back in the inputs' float dtype (float32 for 16-bit inputs).
    Attention layers run through the math implementation of ``scaled_dot_product_attention``
    inside the call (the fused kernels have no forward-mode AD), so a diffusers ``AutoencoderKL``
    works as it is. The encoder is evaluated deterministically (for a VAE, the mean of the
    posterior), and both networks run in eval mode with frozen parameters inside the call; their
    modes, ``requires_grad`` flags and gradients are restored after. The decoder must treat
    examples independently (true in eval mode for the usual layers).

    Parameters
    ----------
    decoder : Callable
        Module, bound method (e.g. ``vae.decode``) or function mapping ``(N, *latent_shape)`` codes
        to ``(N, *shape)`` examples of the inputs' shape. It may return a tensor, a tuple (first
        element) or an object with a ``sample`` field.
    encoder : Callable
        Module, bound method or function mapping ``(N, *shape)`` inputs to codes: a tensor, a tuple
        (first element, e.g. the mean) or an object with a ``mean`` or ``latent_dist.mean`` field.
    input_shape : sequence of int, optional
        Per-example input shape; ``None`` accepts any shape the networks accept.
    chunk_size : int, optional
        Examples per batch of Jacobians; ``None`` takes all at once. Results do not depend on it.
    latent_chunk_size : int, optional
        Latent directions per vectorised forward-mode pass; ``None`` takes all ``k`` at once.
        One pass holds the decoder's activations for ``chunk_size * latent_chunk_size``
        tangent directions, which bounds peak memory.
    rtol : float, optional
        Relative singular-value threshold below which a direction is dropped; defaults to the
        shared threshold above the Gram matrix's rounding floor
        (:func:`~captum_pags._kernel._linalg.default_rtol`, about :math:`\sqrt{10\,D\,\epsilon_{64}}`,
        so ``2.6e-6`` at ``D = 3072``): a float64 rounding-noise direction of a rank-deficient
        decoder is dropped, a real direction with relative gain ``1e-3`` is kept.
    vectorize : bool
        Use ``torch.func.vmap`` over the latent directions (default). ``False`` folds them into
        one larger batch instead, for networks with operations ``vmap`` does not support.

    Attributes
    ----------
    last_rank : Tensor or None
        ``(N,)`` numerical rank of the Jacobian at each example of the last call.

    Examples
    --------
    >>> decoder = torch.nn.Linear(2, 4, bias=False)
    >>> _ = decoder.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    >>> encoder = torch.nn.Linear(4, 2)
    >>> space = DecoderTangent(decoder, encoder)
    >>> on = space.project(torch.randn(1, 4), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> torch.allclose(on, torch.tensor([[1.0, 2.0, 0.0, 0.0]]), atol=1e-6)
    True
    >>> space.dim, space.last_rank
    (2, tensor([2]))
    """

    def __init__(
        self,
        decoder: Callable[..., Any],
        encoder: Callable[..., Any],
        input_shape: ShapeLike | None = None,
        *,
        chunk_size: int | None = 16,
        latent_chunk_size: int | None = 256,
        rtol: float | None = None,
        vectorize: bool = True,
    ) -> None:
        for name, fn in (("decoder", decoder), ("encoder", encoder)):
            if not callable(fn):
                raise TypeError(
                    f"Expected `{name}` to be callable (a module or a function) but got {type(fn).__name__}"
                )
        super().__init__(input_shape)
        if self._input_shapes is not None and len(self._input_shapes) != 1:
            raise ValueError(
                f"Expected `input_shape` to be one shape (a decoder returns one tensor) but got "
                f"{len(self._input_shapes)}"
            )
        self.decoder = decoder
        self.encoder = encoder
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)
        self.latent_chunk_size = (
            None if latent_chunk_size is None else check_int("latent_chunk_size", latent_chunk_size, minimum=1)
        )
        self.rtol = None if rtol is None else check_positive("rtol", rtol)
        self.vectorize = bool(vectorize)
        self.last_rank: Tensor | None = None
        self._dim: int | None = None
        self._warned = False

    @property
    def dim(self) -> int:
        """``k``, the latent dimension (one basis row per latent coordinate)."""
        if self._dim is None:
            if self._input_shapes is None:
                raise RuntimeError(
                    "The latent dimension of a DecoderTangent is known after the first call to `basis`, or at once "
                    "when `input_shape` is given"
                )
            module = owning_module(self.encoder)
            param = next(iter(module.parameters()), None) if module is not None else None
            kwargs = {} if param is None else {"dtype": param.dtype, "device": param.device}
            probe = torch.zeros(1, *self._input_shapes[0], **kwargs)
            with evaluation_state(self.encoder), torch.no_grad():
                self._dim = self._latent_dim(self._encode(probe), probe)
        return self._dim

    def _encode(self, x: Tensor) -> Tensor:
        z = _latent_mean(self.encoder(x)).detach()
        if z.dim() < 2 or z.shape[0] != x.shape[0]:
            raise ValueError(
                f"Expected the latent codes from `encoder` to have shape ({x.shape[0]}, *latent_shape) but got "
                f"{tuple(z.shape)}"
            )
        if not z.is_floating_point():
            raise TypeError(f"Expected the latent codes from `encoder` to be floating point but got {z.dtype}")
        if not bool(torch.isfinite(z).all()):
            raise ValueError("Expected the latent codes from `encoder` to be finite but they contain NaN or inf")
        return z

    def _latent_dim(self, z: Tensor, x: Tensor) -> int:
        k, d = int(z[0].numel()), int(x[0].numel())
        if k >= d:
            raise ValueError(
                f"Expected the latent dimension of `encoder` (k = {k}) to be < D = {d}, the number of input features"
            )
        return k

    def _decode(self, z: Tensor) -> Tensor:
        return _decoded_tensor(self.decoder(z))

    def _basis(self, inputs: tuple[Tensor, ...]) -> Tensor:
        if len(inputs) != 1:
            raise ValueError(
                f"Expected `inputs` to be one tensor for a DecoderTangent but got a tuple of {len(inputs)}"
            )
        x = inputs[0]
        out_dtype = compute_dtype(x.dtype)
        x = x.to(_network_dtype(self.encoder, x.dtype))
        with evaluation_state(self.decoder, self.encoder), torch.no_grad(), transformable_attention():
            parts = [self._chunk_basis(x[s]) for s in chunks(x.shape[0], self.chunk_size)]
        basis = torch.cat(parts) if len(parts) > 1 else parts[0]
        rank = (basis.abs().amax(-1) > 0).sum(-1)
        self.last_rank = rank
        if not self._warned and bool((rank < basis.shape[1]).any()):
            self._warned = True
            warnings.warn(
                f"DecoderTangent: the decoder Jacobian is rank-deficient at {int((rank < basis.shape[1]).sum())} of "
                f"{len(rank)} inputs (smallest rank {int(rank.min())} of {basis.shape[1]}); the dropped directions are "
                "zero rows of the basis (see `last_rank`). This warning is shown once per DecoderTangent.",
                RuntimeWarning,
                stacklevel=4,
            )
        return basis.to(out_dtype)

    def _chunk_basis(self, x: Tensor) -> Tensor:
        z = self._encode(x)
        k = self._latent_dim(z, x)
        self._dim = k
        n, d = x.shape[0], int(x[0].numel())
        decoded = self._decode(z)
        if decoded.shape != x.shape:
            raise ValueError(
                f"Expected `decoder` to return the shape of `inputs` {tuple(x.shape)} but got {tuple(decoded.shape)}"
            )
        eye = torch.eye(k, dtype=z.dtype, device=z.device).reshape(k, 1, *z.shape[1:])
        columns = []
        for s in chunks(k, self.latent_chunk_size):
            tangents = eye[s].expand(-1, n, *z.shape[1:])
            columns.append(jvp_many(self._decode, z, tangents, vectorize=self.vectorize).reshape(-1, n, d))
        jac = (torch.cat(columns) if len(columns) > 1 else columns[0]).transpose(0, 1)  # (n, k, D)
        if not bool(torch.isfinite(jac).all()):
            raise ValueError("Expected the Jacobian of `decoder` to be finite but it contains NaN or inf")
        return principal_rows(jac, rtol=self.rtol, method="gram")[1]
