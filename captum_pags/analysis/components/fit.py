"""Checks that the pieces of an analysis fit together, made before any work from configs and one probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import AnalysisInputError

__all__ = ["check_classifier_fit", "check_output_folder", "check_score_fit"]


def check_output_folder(out: str) -> Path:
    """Refuse an output path that is a file, cannot be created, or holds a sweep's report.

    ``analyze`` writes its own report; mixing it with a sweep's (``models/``, a ``results.json``
    with a sweep's ``methods``) would make both unreadable.

    Examples
    --------
    >>> import tempfile
    >>> check_output_folder(tempfile.mkdtemp()).is_dir()
    True
    """
    p = Path(out).expanduser()
    if p.exists() and not p.is_dir():
        raise AnalysisInputError(f"Expected --out to be a folder but {out!r} is a file: choose another --out")
    parent = p if p.exists() else next((q for q in p.parents if q.exists()), Path("."))
    import os

    if not os.access(parent, os.W_OK):
        raise AnalysisInputError(f"cannot write the report to {out!r}: {str(parent)!r} is not writable")
    results = p / "results.json"
    sweep = (p / "models").is_dir()
    if results.is_file() and not sweep:
        try:
            sweep = "methods" in json.loads(results.read_text()).get("config", {})
        except (json.JSONDecodeError, AttributeError, OSError):
            sweep = False
    if sweep:
        raise AnalysisInputError(
            f"--out {out!r} holds a sweep's report; analyze writes its own report: choose another folder "
            "(default: analysis)"
        )
    return p


def _shape_text(shape: Any) -> str:
    return "x".join(str(int(s)) for s in shape)


def check_score_fit(data: Any, score_spec: Any) -> list[str]:
    """Compare the data with the score model's configs (spatial size, channels, classes, range).

    Returns notes (e.g. which measurements the models cannot give); raises
    :class:`~captum_pags.analysis.AnalysisInputError` for pieces that do not fit.
    """
    shape = tuple(data.shape)
    notes: list[str] = []
    infos = [("--score-model", score_spec.info()), ("--unconditional-score-model", score_spec.unconditional_info())]
    if score_spec.path == "shipped" and tuple(data.data_range) != (0.0, 1.0):
        raise AnalysisInputError(
            "the shipped score model takes images in [0, 1]: drop --data-range or rescale the data"
        )
    for option, info in infos:
        if info is None:
            continue
        if len(shape) != 3:
            raise AnalysisInputError(
                f"{option} is an image model but the data have per-example shape {shape}: give (N, C, H, W) images"
            )
        if info.in_channels is not None and shape[0] != info.in_channels:
            raise AnalysisInputError(
                f"the data have {shape[0]} channel(s) but {option} takes {info.in_channels}: use data with "
                f"{info.in_channels} channel(s) or another score model"
            )
        size = info.sample_size
        want = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
        if want is not None and tuple(shape[1:]) != want:
            raise AnalysisInputError(
                f"the data are {_shape_text(shape[1:])} images but {option} was trained on "
                f"{_shape_text(want)} (its sample_size): resize the data or use a score model of that size"
            )
        if option == "--score-model" and info.num_classes is not None and data.num_classes is not None:
            if data.num_classes > info.num_classes:
                raise AnalysisInputError(
                    f"the data have {data.num_classes} classes but {option} takes {info.num_classes}: use a score "
                    "model trained on these classes"
                )
    return notes


def check_classifier_fit(model: Any, data: Any, score_classes: int | None, device: Any = None) -> int:
    """Probe the classifier with two blank examples of the data's shape; returns its number of classes.

    Refuses a model that does not take the data's shape, returns no ``(N, classes)`` logits, or
    has another number of classes than the score model.
    """
    import torch

    from ..._kernel._model_state import preserved_state
    from .classifier import NormalizedClassifier

    if isinstance(model, NormalizedClassifier) and (len(data.shape) < 2 or model.channels != data.shape[0]):
        raise AnalysisInputError(
            f"the normalisation has {model.channels} channel(s) but the data have per-example shape "
            f"{tuple(data.shape)}: give one mean and std per channel"
        )

    param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    if device is not None and param is not None and param.device != torch.device(device):
        raise AnalysisInputError(
            f"the model is on {param.device} but the analysis runs on {torch.device(device)}: move the model "
            f"(model.to({str(device)!r})) or choose device={str(param.device)!r}"
        )
    kwargs = {} if param is None else {"device": param.device}
    lo, hi = data.data_range
    probe = torch.full((2, *data.shape), (lo + hi) / 2, **kwargs)
    try:
        with torch.no_grad(), preserved_state(model, train=False):
            out = model(probe)
    except (RuntimeError, AssertionError, ValueError, TypeError) as err:
        raise AnalysisInputError(
            f"the model does not take inputs of shape {tuple(data.shape)} in batches of 2 (a program exported with "
            f"a fixed batch size needs a dynamic batch dimension): {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise AnalysisInputError(f"Expected the model to return logits of shape (N, classes) but got {shape}")
    classes = int(out.shape[1])
    if score_classes is not None and score_classes != classes:
        raise AnalysisInputError(
            f"the classifier has {classes} classes but the score model {score_classes}: use a classifier and a "
            "score model of the same classes"
        )
    labels = data.label_range()
    if labels is not None and (labels[0] < 0 or labels[1] >= classes):
        raise AnalysisInputError(
            f"the data's labels go from {labels[0]} to {labels[1]} but the classifier returns {classes} classes: "
            "use a classifier of these classes or labels in [0, classes)"
        )
    if labels is not None and score_classes is not None and labels[1] >= score_classes:
        raise AnalysisInputError(
            f"the data's labels go up to {labels[1]} but the score model takes {score_classes} classes: use a "
            "score model of these classes"
        )
    return classes
