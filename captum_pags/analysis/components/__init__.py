"""Components of the analysis: data, classifier, score model(s), tangent space and settings.

Each is a small object with a plain config (``to_config`` / ``from_config``); the command line's
strings become components in one place, :mod:`captum_pags.analysis.components.parse`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ClassifierSpec": ".classifier",
    "NormalizedClassifier": ".classifier",
    "load_user_model": ".classifier",
    "EMBEDDED_DATASETS": ".embedded",
    "TORCHVISION_DATASETS": ".images",
    "ArrayFileData": ".data",
    "DataSource": ".data",
    "EmbeddedData": ".embedded",
    "EmbeddedDataset": ".embedded",
    "ImageFolderData": ".images",
    "TensorData": ".data",
    "TorchvisionData": ".images",
    "register_embedded_dataset": ".embedded",
    "check_classifier_fit": ".fit",
    "check_output_folder": ".fit",
    "check_score_fit": ".fit",
    "parse_data": ".parse",
    "parse_data_range": ".parse",
    "parse_floats": ".parse",
    "parse_normalize": ".parse",
    "parse_score_model": ".parse",
    "parse_tangent": ".parse",
    "ScoreCapabilities": ".score",
    "ScoreModels": ".score",
    "ScoreSpec": ".score",
    "read_score_config": ".score",
    "AnalysisSettings": ".settings",
    "TANGENT_KINDS": ".tangent",
    "TangentSpec": ".tangent",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # imported on first use (PEP 562): the command line parses its strings before torch is loaded
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
