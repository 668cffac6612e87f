"""Input gradients split into their on-manifold (tangent) and off-manifold parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from .._kernel._autodiff import check_model_dtype, input_gradients
from .._kernel._captum_compat import TargetType, TensorOrTupleOfTensorsGeneric, format_output
from .._kernel._model_state import owning_module, preserved_state
from .._kernel._validation import check_batch, check_choice, check_tensor_or_tuple
from ..manifold.base import TangentSpace

__all__ = ["ManifoldGradient", "input_gradients"]  # input_gradients: re-exported from the kernel

Component = Literal["on", "off", "full"]
COMPONENTS: tuple[str, ...] = ("on", "off", "full")


class ManifoldGradient(GradientAttribution):
    r"""Input gradient projected onto (or off) the data manifold's tangent space.

    With :math:`g = \nabla_x f_t(x)` and the tangent projector :math:`P_T(x) = B(x)^\top B(x)`
    of a :class:`~captum_pags.manifold.TangentSpace`,

    .. math::

        g_{\text{on}} = P_T(x)\, g, \qquad g_{\text{off}} = (I - P_T(x))\, g, \qquad
        g_{\text{on}} + g_{\text{off}} = g.

    Srinivas, Bordt & Lakkaraju (NeurIPS 2023) show that models whose gradients lie near the
    tangent space (robust off the manifold) have perceptually aligned gradients; ``"on"`` is the
    part of an explanation that moves along the data, ``"off"`` the part that does not.

    Parameters
    ----------
    forward_func : Callable
        The model, or any function returning ``(N, ...)`` outputs.
    tangent_space : TangentSpace
        Where the manifold is at each input. The basis is computed from the inputs inside
        :meth:`attribute`, so the method works unchanged under
        :class:`~captum.attr.NoiseTunnel` and :mod:`captum.metrics`.
    eval_mode : bool
        Evaluate a :class:`torch.nn.Module` model (or the module behind a bound method) in eval
        mode inside :meth:`attribute`, restoring every submodule's mode after, also after an error,
        as the metrics and the attacks do: a train-mode model's BatchNorm statistics are then
        neither used nor updated, and two identical calls agree. ``False`` runs the model as it
        is (e.g. to take batch statistics inside a training loss).

    Examples
    --------
    >>> from captum_pags.manifold import LinearSubspace
    >>> model = torch.nn.Linear(3, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]))
    >>> mg = ManifoldGradient(model, LinearSubspace(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])))
    >>> mg.attribute(torch.zeros(1, 3), target=0)
    tensor([[1., 2., 0.]])
    >>> mg.attribute(torch.zeros(1, 3), target=0, component="off")
    tensor([[0., 0., 3.]])
    """

    def __init__(
        self, forward_func: Callable[..., Tensor], tangent_space: TangentSpace, *, eval_mode: bool = True
    ) -> None:
        if not isinstance(tangent_space, TangentSpace):
            raise TypeError(
                f"Expected `tangent_space` to be a captum_pags TangentSpace but got {type(tangent_space).__name__}"
            )
        if not isinstance(eval_mode, bool):
            raise TypeError(f"Expected `eval_mode` to be a bool but got {type(eval_mode).__name__}")
        if not callable(forward_func):
            raise TypeError(f"Expected `forward_func` to be callable but got {type(forward_func).__name__}")
        super().__init__(forward_func)
        self.tangent_space = tangent_space
        self.eval_mode = eval_mode

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        component: Component = "on",
        abs: bool = False,
        create_graph: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""Attribute with the on-manifold, off-manifold or full input gradient.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            ``(N, *shape)`` inputs (a tuple for multi-input models; the tangent space then spans
            their concatenated features).
        target : int, tuple, Tensor or list, optional
            Output indices, as in Captum (one class per example, or one for all).
        additional_forward_args : Any, optional
            Extra arguments passed to ``forward_func`` after the inputs.
        component : {"on", "off", "full"}
            Tangent part, orthogonal part or the plain gradient.
        abs : bool
            Return absolute values.
        create_graph : bool
            Keep the autograd graph so that the attributions can be back-propagated (e.g. inside a
            training loss). Without it the result is detached.

        Returns
        -------
        Tensor or tuple of Tensor
            Same form and shapes as ``inputs``.
        """
        check_choice("component", component, COMPONENTS)
        if not isinstance(abs, bool):
            raise TypeError(f"Expected `abs` to be a bool but got {type(abs).__name__}")
        is_tuple = isinstance(inputs, tuple)
        inputs_t = check_tensor_or_tuple("inputs", inputs)
        check_batch("inputs", inputs_t)
        for x in inputs_t:
            if not x.is_floating_point():
                raise TypeError(f"Expected `inputs` to be floating-point tensors but got dtype {x.dtype}")
        check_model_dtype(self.forward_func, inputs_t)
        if component != "full":
            # validate shapes before the (possibly costly) backward pass
            self.tangent_space.check_inputs(inputs_t)
        module = owning_module(self.forward_func) if self.eval_mode else None
        with preserved_state(module, train=False if module is not None else None):
            grads = input_gradients(self.forward_func, inputs_t, target, additional_forward_args, create_graph)
        if component != "full":
            with torch.no_grad():
                geometry_inputs = tuple(x.detach() for x in inputs_t)
            # a class-conditional tangent space (DenoiserTangent(conditional=True)) reads the same target,
            # expanded by NoiseTunnel like every per-example argument
            space_target = target if self.tangent_space.takes_target else None
            on, off = self.tangent_space.components(geometry_inputs, grads, space_target)
            grads = on if component == "on" else off
        if abs:
            grads = tuple(g.abs() for g in grads)
        if not create_graph:
            grads = tuple(g.detach() for g in grads)
        return format_output(is_tuple, grads)

    def attribute_future(self) -> None:
        """Not implemented: ManifoldGradient has no asynchronous variant."""
        raise NotImplementedError("attribute_future is not implemented for ManifoldGradient")
