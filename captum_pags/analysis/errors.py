"""The error type of the main job: bad user input, reported as one line by the command."""

from __future__ import annotations

__all__ = ["AnalysisInputError", "MissingMeasurementWarning"]


class AnalysisInputError(ValueError):
    """A problem with what the user gave the analysis: unknown dataset, missing file, unfit model.

    The ``captum-pags`` command prints its message on one line and exits with status 2.

    Examples
    --------
    >>> str(AnalysisInputError("Expected `--data` to be digits16 or a .pt/.npz file but got 'x'"))
    "Expected `--data` to be digits16 or a .pt/.npz file but got 'x'"
    """


class MissingMeasurementWarning(UserWarning):
    """Some measurements cannot be made with the given score models; they are reported as NaN.

    Given once per analysis, naming the columns and the reason (e.g. an unconditional-only model
    has no Bayes score difference).

    Examples
    --------
    >>> issubclass(MissingMeasurementWarning, UserWarning)
    True
    """
