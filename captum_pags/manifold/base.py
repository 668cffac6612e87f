"""The :class:`TangentSpace` interface and the one implementation of tangent projections."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._kernel._linalg import orthonormal_rows, principal_angles, project_onto_rows
from .._kernel._tensors import feature_shapes, flatten_features, num_features, unflatten_features
from .._kernel._validation import check_batch, check_tensor_or_tuple

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
    #: Estimators that flatten their inputs anyway accept any per-example shape with the ``D``
    #: of a flat ``(D,)`` ``input_shape`` (a ``(k, D)`` PCA basis for ``(N, C, H, W)`` images).
    _accepts_flat_shape: bool = False

    def check_inputs(self, inputs: TensorOrTuple, name: str = "inputs") -> tuple[Tensor, ...]:
        """Validate ``inputs`` (a tensor or tuple, per-example shapes as built for) and return them as a tuple.

        Checks the form (a tensor or a tuple), real dtypes, a shared non-empty batch, finite values
        and the per-example shapes the space was built for; the tensors are returned unchanged.
        Metrics and attributions call it before any costly work, so that a bad shape is refused
        first. (:meth:`basis` and :meth:`components` then promote integer inputs, e.g. ``uint8``
        images, to the default float dtype; they are never truncated.)
        """
        inputs_t = check_tensor_or_tuple(name, inputs)
        for t in inputs_t:
            if t.is_complex():
                raise TypeError(f"Expected `{name}` to be a real tensor but got {t.dtype}")
            if t.is_meta:
                raise ValueError(f"Expected `{name}` to hold data but got a tensor on the meta device")
        check_batch(name, inputs_t)
        shapes = feature_shapes(inputs_t)
        if self._input_shapes is not None and shapes != self._input_shapes and not self._flat_match(shapes):
            got = [tuple(s) for s in shapes]
            want = [tuple(s) for s in self._input_shapes]
            raise ValueError(
                f"Expected `{name}` to have per-example shape {want[0] if len(want) == 1 else want} "
                f"(the shape this tangent space was built for) but got "
                f"{got[0] if len(got) == 1 else got}"
            )
        return inputs_t

    def _checked_float_inputs(self, inputs: TensorOrTuple) -> tuple[Tensor, ...]:
        """:meth:`check_inputs`, then integer tensors promoted to the default float dtype (never truncated)."""
        inputs_t = self.check_inputs(inputs)
        return tuple(t if t.is_floating_point() else t.to(torch.get_default_dtype()) for t in inputs_t)

    def _flat_match(self, shapes: tuple[torch.Size, ...]) -> bool:
        built = self._input_shapes
        return (
            self._accepts_flat_shape
            and built is not None
            and len(built) == 1
            and len(built[0]) == 1
            and len(shapes) == 1
            and int(shapes[0].numel()) == built[0][0]
        )

    @property
    def takes_target(self) -> bool:
        """Whether the basis depends on a per-call ``target`` (class labels); False for most estimators.

        :class:`~captum_pags.attr.ManifoldGradient` passes its attribution target on only when True.
        """
        return False

    def _check_target(self, target: Any) -> None:
        if target is not None and not self.takes_target:
            raise ValueError(
                f"Expected `target=None` for {type(self).__name__}, whose basis takes no class labels, but got a "
                "target (a DenoiserTangent takes them with conditional=True)"
            )

    def _basis_for(self, inputs: tuple[Tensor, ...], target: Any) -> Tensor:
        """The basis for validated inputs and a per-call ``target``; estimators that use labels override it."""
        return self._basis(inputs)

    def _shared_or_batched_basis(self, inputs_t: tuple[Tensor, ...], target: Any = None) -> Tensor:
        self._check_target(target)
        basis = self._basis_for(inputs_t, target)
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
    def basis(self, inputs: TensorOrTuple, target: Any = None) -> Tensor:
        """Orthonormal tangent basis at each example.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            ``(N, *shape)`` points on (or near) the manifold; integer tensors are promoted to the
            default float dtype.
        target : int, list of int or Tensor, optional
            Per-call class labels, for estimators with :attr:`takes_target` (else must be None).

        Returns
        -------
        Tensor
            ``(N, k, D)`` in the inputs' float dtype (float32 for 16-bit inputs where the
            estimator computes in float32); rows orthonormal (rows of zeros mark directions an
            estimator dropped).
        """
        inputs_t = self._checked_float_inputs(inputs)
        basis = self._shared_or_batched_basis(inputs_t, target)
        if basis.dim() == 2:
            basis = basis.unsqueeze(0).expand(inputs_t[0].shape[0], -1, -1)
        return basis

    def components(
        self, inputs: TensorOrTuple, vectors: TensorOrTuple, target: Any = None
    ) -> tuple[TensorOrTuple, TensorOrTuple]:
        """Split ``vectors`` into tangent and orthogonal parts that sum to ``vectors``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            ``(N, *shape)`` points where the tangent space is taken.
        vectors : Tensor or tuple of Tensor
            Same form as ``inputs``, shaped ``(N, *shape)`` or ``(N, M, *shape)`` (``M`` vectors
            per example).
        target : int, list of int or Tensor, optional
            Per-call class labels, for estimators with :attr:`takes_target` (else must be None).

        Returns
        -------
        (on, off)
            Two objects of the same form and shapes as ``vectors``, in the vectors' float dtype
            (the wider of basis and vectors does the math).
        """
        inputs_t = self._checked_float_inputs(inputs)
        vec_t = check_tensor_or_tuple("vectors", vectors)
        for v in vec_t:
            if v.is_complex():
                raise TypeError(f"Expected `vectors` to be a real tensor but got {v.dtype}")
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
        if extra == 1 and len({v.shape[1] for v in vec_t}) != 1:
            raise ValueError(
                "Expected every tensor of `vectors` to hold the same number M of vectors per example but got "
                f"{[v.shape[1] for v in vec_t]}"
            )
        lead = [n] if extra == 0 else [n, vec_t[0].shape[1]]
        flat = flatten_features(vec_t, lead=1 + extra)
        flat3 = flat.unsqueeze(1) if extra == 0 else flat
        basis = self._shared_or_batched_basis(inputs_t, target)
        # the wider dtype of basis and vectors for the math, the vectors' float dtype out
        on_flat = project_onto_rows(basis, flat3).reshape(flat.shape)
        off_flat = flat.to(on_flat.dtype) - on_flat
        on = unflatten_features(on_flat, shapes, lead)
        off = unflatten_features(off_flat, shapes, lead)
        if isinstance(vectors, Tensor):
            return on[0], off[0]
        return on, off

    def project(self, inputs: TensorOrTuple, vectors: TensorOrTuple, target: Any = None) -> TensorOrTuple:
        r"""Tangent part :math:`P_T(x)\,v` of ``vectors`` (same form and shape as ``vectors``).

        Examples
        --------
        >>> from captum_pags.manifold import LinearSubspace
        >>> space = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
        >>> space.project(torch.zeros(1, 3), torch.tensor([[2.0, 3.0, 4.0]]))
        tensor([[2., 0., 0.]])
        """
        return self.components(inputs, vectors, target)[0]

    def project_orthogonal(self, inputs: TensorOrTuple, vectors: TensorOrTuple, target: Any = None) -> TensorOrTuple:
        r"""Orthogonal part :math:`v - P_T(x)\,v` of ``vectors`` (same form and shape as ``vectors``).

        Examples
        --------
        >>> from captum_pags.manifold import LinearSubspace
        >>> space = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0]]))
        >>> space.project_orthogonal(torch.zeros(1, 3), torch.tensor([[2.0, 3.0, 4.0]]))
        tensor([[0., 3., 4.]])
        """
        return self.components(inputs, vectors, target)[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, input_shape={self.input_shape})"
