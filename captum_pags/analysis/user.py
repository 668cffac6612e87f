"""Analyse one model of the user's: load it and its data safely, measure, report."""

from __future__ import annotations

import importlib
import json
import pickle
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..datasets import DIGITS16_SHAPE, digits16_subspace, load_digits16
from ..manifold.subspace import LinearSubspace
from ..models import load_digits16_score_model
from .errors import AnalysisInputError
from .measure import measure_model, prepare_evaluation
from .report import write_report

__all__ = ["AnalysisResult", "analyze_model", "load_user_data", "load_user_model"]


def load_user_model(
    path: str, model_class: str | None = None, model_kwargs: str | dict[str, Any] = "{}", device: str = "cpu"
) -> nn.Module:
    """Load a classifier: a TorchScript file, a ``torch.export`` archive (``.pt2``), or a state dict plus a class.

    State dicts are read with safetensors or ``torch.load(weights_only=True)``, never plain pickle.

    Parameters
    ----------
    path : str
        ``.pt``/``.pth`` TorchScript archive, ``.pt2`` exported program (:func:`torch.export.save`),
        or a ``.safetensors``/``.pt`` state dict. Export programs with a dynamic batch dimension
        (``dynamic_shapes``): the analysis evaluates batches of several sizes.
    model_class : str, optional
        ``"package.module:ClassName"`` (or dotted) for state dicts.
    model_kwargs : str or dict
        Keyword arguments for the class (JSON text or a dict).
    device : str
        Where to put the model.

    Examples
    --------
    >>> load_user_model("missing.pt")
    Traceback (most recent call last):
    ...
    captum_pags.analysis.errors.AnalysisInputError: model file 'missing.pt' does not exist
    """
    p = Path(path)
    if not p.is_file():
        raise AnalysisInputError(f"model file {path!r} does not exist")
    if model_class is None and p.suffix == ".pt2":
        try:
            return torch.export.load(str(p)).module().to(device)
        except (RuntimeError, ValueError, OSError) as err:
            raise AnalysisInputError(f"cannot load the exported program {path!r}: {str(err).splitlines()[0]}") from None
    if model_class is None:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)  # TorchScript files stay supported
                return torch.jit.load(str(p), map_location=device).eval()
        except RuntimeError:
            raise AnalysisInputError(
                f"{path!r} is not a TorchScript file; for a state dict also give --model-class"
            ) from None
    module_name, _, class_name = model_class.replace(":", ".").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise AnalysisInputError(f"cannot import model class {model_class!r}") from None
    kwargs = json.loads(model_kwargs) if isinstance(model_kwargs, str) else dict(model_kwargs)
    model = cls(**kwargs)
    try:
        state = load_file(p) if p.suffix == ".safetensors" else torch.load(p, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise AnalysisInputError(
            f"cannot load weights from {path!r} into {model_class}: {str(err).splitlines()[0]}"
        ) from None
    return model.to(device).eval()


def load_user_data(data: str, max_examples: int | None = None) -> tuple[Tensor, Tensor]:
    """Images and labels: ``"digits16"`` (its test split) or a ``.pt``/``.npz`` file with ``x`` and ``y``.

    Examples
    --------
    >>> x, y = load_user_data("digits16", max_examples=5)
    >>> x.shape, y.shape
    (torch.Size([5, 1, 16, 16]), torch.Size([5]))
    """
    if data == "digits16":
        split = load_digits16("test")
        x, y = split.images, split.labels
    else:
        p = Path(data)
        if p.suffix not in (".pt", ".npz"):
            raise AnalysisInputError(f"Expected --data to be 'digits16' or a .pt/.npz file but got {data!r}")
        if not p.is_file():
            raise AnalysisInputError(f"data file {data!r} does not exist")
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                if "x" not in f or "y" not in f:
                    raise AnalysisInputError(f"Expected {data!r} to hold arrays 'x' and 'y' but got {sorted(f.files)}")
                x, y = torch.as_tensor(f["x"]), torch.as_tensor(f["y"])
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
                raise AnalysisInputError(f"Expected {data!r} to hold a dict with tensors 'x' and 'y'")
            x, y = torch.as_tensor(obj["x"]), torch.as_tensor(obj["y"])
        x, y = x.float(), y.long()
        if x.dim() < 2 or y.shape != (x.shape[0],):
            raise AnalysisInputError(
                f"Expected x of shape (N, ...) and y of shape (N,) but got {tuple(x.shape)} and {tuple(y.shape)}"
            )
    if max_examples is not None:
        x, y = x[:max_examples], y[:max_examples]
    return x, y


@dataclass
class AnalysisResult:
    """What :func:`analyze_model` returns: the measurements and the report files.

    Examples
    --------
    >>> print(AnalysisResult({"accuracy": 0.5}, "weak").summary())
    accuracy: 0.5
    regime: weak
    """

    metrics: dict[str, Any]
    regime: str
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per figure."""
        lines = [
            f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
            for k, v in self.metrics.items()
            if not isinstance(v, list)
        ]
        return "\n".join([*lines, f"regime: {self.regime}"])


def analyze_model(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    out: str = "report",
    sigma: float = 0.3,
    epsilons: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0),
    n_samples: int = 10,
    seed: int = 0,
    device: str = "cpu",
    quiet: bool = False,
    reference_accuracy: float | None = None,
) -> AnalysisResult:
    """Measure one classifier and write the same report as the sweep, for one model.

    On ``digits16``-shaped data (``1x16x16`` in [0, 1]) the shipped diffusion model gives the scores
    and the exact ``digits16`` subspace the tangent space. For other data no score model is known
    (alignment is reported as NaN) and the tangent space is the leading principal subspace of the
    data (PCA, up to 64 directions).

    Examples
    --------
    >>> import tempfile
    >>> from captum_pags.models import MLP
    >>> x, y = load_user_data("digits16", max_examples=16)
    >>> res = analyze_model(MLP(), x, y, out=tempfile.mkdtemp(), n_samples=2, quiet=True)
    >>> sorted(res.files)[:2], res.regime in ("weak", "bayes_aligned", "excessive")
    (['alignment', 'csv'], True)
    """
    from ..metrics import robustness_regime

    start = time.perf_counter()
    torch.manual_seed(seed)
    dev = torch.device(device)
    x, y = images.to(dev), labels.to(dev)
    if tuple(x.shape[1:]) == DIGITS16_SHAPE:
        tangent = digits16_subspace()
        score_model = load_digits16_score_model(device=dev)
        note = "tangent space: the exact digits16 subspace; scores: the shipped diffusion model"
    else:
        dim = max(1, min(64, x.shape[0] - 1, int(x[0].numel()) - 1))
        tangent = LinearSubspace.from_data(x, dim)
        score_model = None
        note = f"tangent space: PCA of the data ({dim} directions); no score model for this data shape"
    data = prepare_evaluation(x, y, tangent, score_model, sigma, epsilons, n_samples, seed)
    metrics = measure_model(model, data)
    regime = str(
        robustness_regime(
            relative_robustness=metrics["relative_robustness"],
            accuracy=metrics["accuracy"] if reference_accuracy is not None else None,
            reference_accuracy=reference_accuracy,
        )
    )
    row = {"method": "user", "strength": 0.0, "seed": seed, **metrics, "regime": regime}
    files = write_report(
        out,
        [row],
        config={"sigma": sigma, "epsilons": list(epsilons), "n_samples": n_samples, "seed": seed, "n": int(x.shape[0])},
        title="captum_pags analysis of one model",
        notes=[note, f"measured in {time.perf_counter() - start:.1f} s"],
    )
    return AnalysisResult(metrics, regime, files)
