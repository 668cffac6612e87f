"""Offline intersphinx inventories.

The docs build must not reach the network, so the few external objects our pages link to are
written into small local ``objects.inv`` files; the links still point to the real online docs.
"""

from __future__ import annotations

import zlib
from pathlib import Path

PROJECTS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "python": (
        "https://docs.python.org/3/",
        {
            "ValueError": ("py:exception", "library/exceptions.html#ValueError"),
            "TypeError": ("py:exception", "library/exceptions.html#TypeError"),
            "RuntimeError": ("py:exception", "library/exceptions.html#RuntimeError"),
            "int": ("py:class", "library/functions.html#int"),
            "float": ("py:class", "library/functions.html#float"),
            "str": ("py:class", "library/stdtypes.html#str"),
            "bool": ("py:class", "library/functions.html#bool"),
            "tuple": ("py:class", "library/stdtypes.html#tuple"),
            "list": ("py:class", "library/stdtypes.html#list"),
            "dict": ("py:class", "library/stdtypes.html#dict"),
            "dataclasses.dataclass": ("py:function", "library/dataclasses.html#dataclasses.dataclass"),
            "pathlib.Path": ("py:class", "library/pathlib.html#pathlib.Path"),
            "os.PathLike": ("py:class", "library/os.html#os.PathLike"),
            "os.replace": ("py:function", "library/os.html#os.replace"),
            "abc.ABC": ("py:class", "library/abc.html#abc.ABC"),
            "argparse.ArgumentParser": ("py:class", "library/argparse.html#argparse.ArgumentParser"),
            "collections.abc.Callable": ("py:class", "library/collections.abc.html#collections.abc.Callable"),
            # glossary terms that parameter types name ("sequence of int", "mapping of str to Tensor")
            "sequence": ("std:term", "glossary.html#term-sequence"),
            "mapping": ("std:term", "glossary.html#term-mapping"),
        },
    ),
    "torch": (
        "https://docs.pytorch.org/docs/stable/",
        {
            "torch.Tensor": ("py:class", "tensors.html#torch.Tensor"),
            "torch.nn.Module": ("py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
            # the name autodoc gives the base class of every module
            "torch.nn.modules.module.Module": ("py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
            "torch.nn.CrossEntropyLoss": (
                "py:class",
                "generated/torch.nn.CrossEntropyLoss.html#torch.nn.CrossEntropyLoss",
            ),
            "torch.Size": ("py:class", "size.html#torch.Size"),
            "torch.optim.Optimizer": ("py:class", "optim.html#torch.optim.Optimizer"),
            "torch.distributions.Normal": ("py:class", "distributions.html#torch.distributions.normal.Normal"),
            "torch.distributed.all_reduce": ("py:function", "distributed.html#torch.distributed.all_reduce"),
            "torch.device": ("py:class", "tensor_attributes.html#torch.device"),
            "torch.dtype": ("py:class", "tensor_attributes.html#torch.dtype"),
            "torch.Generator": ("py:class", "generated/torch.Generator.html#torch.Generator"),
            "torch.autograd.grad": ("py:function", "generated/torch.autograd.grad.html#torch.autograd.grad"),
            "torch.func.jvp": ("py:function", "generated/torch.func.jvp.html#torch.func.jvp"),
            "torch.func.vjp": ("py:function", "generated/torch.func.vjp.html#torch.func.vjp"),
            "torch.func.vmap": ("py:function", "generated/torch.func.vmap.html#torch.func.vmap"),
            "torch.utils.data.DataLoader": ("py:class", "data.html#torch.utils.data.DataLoader"),
            "torch.utils.data.TensorDataset": ("py:class", "data.html#torch.utils.data.TensorDataset"),
            "torch.utils.data.distributed.DistributedSampler": (
                "py:class",
                "data.html#torch.utils.data.distributed.DistributedSampler",
            ),
            "torch.nn.parallel.DistributedDataParallel": (
                "py:class",
                "generated/torch.nn.parallel.DistributedDataParallel.html#torch.nn.parallel.DistributedDataParallel",
            ),
        },
    ),
    "numpy": (
        "https://numpy.org/doc/stable/",
        {"numpy.ndarray": ("py:class", "reference/generated/numpy.ndarray.html#numpy.ndarray")},
    ),
    "matplotlib": (
        "https://matplotlib.org/stable/",
        {
            "matplotlib.figure.Figure": (
                "py:class",
                "api/_as_gen/matplotlib.figure.Figure.html#matplotlib.figure.Figure",
            ),
            "matplotlib.axes.Axes": ("py:class", "api/_as_gen/matplotlib.axes.Axes.html#matplotlib.axes.Axes"),
        },
    ),
    "captum": (
        "https://captum.ai/api/",
        {
            "captum.attr.Attribution": ("py:class", "base_classes.html#captum.attr.Attribution"),
            "captum.attr.GradientAttribution": ("py:class", "base_classes.html#captum.attr.GradientAttribution"),
            # the names autodoc gives the base classes of the attribution methods
            "captum.attr._utils.attribution.Attribution": ("py:class", "base_classes.html#captum.attr.Attribution"),
            "captum.attr._utils.attribution.GradientAttribution": (
                "py:class",
                "base_classes.html#captum.attr.GradientAttribution",
            ),
            "captum.attr.NoiseTunnel": ("py:class", "noise_tunnel.html#captum.attr.NoiseTunnel"),
            "captum.attr.Saliency": ("py:class", "saliency.html#captum.attr.Saliency"),
            "captum.attr.IntegratedGradients": (
                "py:class",
                "integrated_gradients.html#captum.attr.IntegratedGradients",
            ),
            "captum.metrics": ("py:module", "metrics.html#module-captum.metrics"),
            "captum.metrics.infidelity": ("py:function", "metrics.html#captum.metrics.infidelity"),
            "captum.metrics.sensitivity_max": ("py:function", "metrics.html#captum.metrics.sensitivity_max"),
            "captum.attr.visualization.visualize_image_attr": (
                "py:function",
                "utilities.html#captum.attr.visualization.visualize_image_attr",
            ),
        },
    ),
}


def write_inventories(folder: Path) -> dict[str, tuple[str, str]]:
    """Write one ``<project>.inv`` per project and return a ready ``intersphinx_mapping``."""
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (url, objects) in PROJECTS.items():
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {project}\n"
            "# Version: \n"
            "# The remainder of this file is compressed using zlib.\n"
        )
        body = "".join(f"{name} {role} 1 {uri} -\n" for name, (role, uri) in sorted(objects.items()))
        path = folder / f"{project}.inv"
        path.write_bytes(header.encode() + zlib.compress(body.encode()))
        mapping[project] = (url, str(path))
    return mapping
