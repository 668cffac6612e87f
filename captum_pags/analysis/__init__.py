"""The main job: sweep, measure, classify regimes and report."""

from .config import METHODS, SweepConfig
from .errors import AnalysisInputError
from .executors import run_tasks
from .grid import SweepTask, sweep_tasks
from .measure import EvaluationData, measure_model, prepare_evaluation
from .report import write_report
from .sweep import ModelResult, SweepResult, assemble_report, run_sweep
from .tasks import run_task, train_model
from .user import AnalysisResult, analyze_model, load_user_data, load_user_model

__all__ = [
    "METHODS",
    "AnalysisInputError",
    "AnalysisResult",
    "EvaluationData",
    "ModelResult",
    "SweepConfig",
    "SweepResult",
    "SweepTask",
    "analyze_model",
    "assemble_report",
    "load_user_data",
    "load_user_model",
    "measure_model",
    "prepare_evaluation",
    "run_sweep",
    "run_task",
    "run_tasks",
    "sweep_tasks",
    "train_model",
    "write_report",
]
