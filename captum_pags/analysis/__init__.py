"""The main job: sweep, measure, classify regimes and report."""

from .config import METHODS, SweepConfig
from .errors import AnalysisInputError
from .measure import EvaluationData, measure_model, prepare_evaluation
from .report import write_report
from .sweep import ModelResult, SweepResult, run_sweep, train_model
from .user import AnalysisResult, analyze_model, load_user_data, load_user_model

__all__ = [
    "METHODS",
    "AnalysisInputError",
    "AnalysisResult",
    "EvaluationData",
    "ModelResult",
    "SweepConfig",
    "SweepResult",
    "analyze_model",
    "load_user_data",
    "load_user_model",
    "measure_model",
    "prepare_evaluation",
    "run_sweep",
    "train_model",
    "write_report",
]
