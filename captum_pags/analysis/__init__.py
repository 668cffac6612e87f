"""The main job: sweep, measure, classify regimes and report; one model's analysis from components.

Names are imported on first use (PEP 562), so that the command line can read its arguments and
refuse bad ones before torch is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "METHODS": ".config",
    "SweepConfig": ".config",
    "AnalysisInputError": ".errors",
    "MissingMeasurementWarning": ".errors",
    "EvaluationData": ".measure",
    "MeasureSums": ".measure",
    "measure_batches": ".measure",
    "measure_model": ".measure",
    "prepare_evaluation": ".measure",
    "write_report": ".report",
    "ModelResult": ".results",
    "SweepResult": ".results",
    "run_sweep": ".sweep",
    "assemble_report": ".sweep",
    "SweepTask": ".grid",
    "sweep_tasks": ".grid",
    "run_tasks": ".executors",
    "run_task": ".tasks",
    "train_model": ".tasks",
    "AnalysisResult": ".user",
    "analyze_model": ".user",
    "load_user_data": ".user",
    "load_user_model": ".user",
    **{
        name: ".components"
        for name in (
            "EMBEDDED_DATASETS",
            "TANGENT_KINDS",
            "TORCHVISION_DATASETS",
            "AnalysisSettings",
            "ArrayFileData",
            "ClassifierSpec",
            "DataSource",
            "EmbeddedData",
            "EmbeddedDataset",
            "ImageFolderData",
            "NormalizedClassifier",
            "ScoreModels",
            "ScoreSpec",
            "TangentSpec",
            "TensorData",
            "TorchvisionData",
            "parse_data",
            "parse_data_range",
            "parse_floats",
            "parse_normalize",
            "parse_score_model",
            "parse_tangent",
            "register_embedded_dataset",
        )
    },
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
