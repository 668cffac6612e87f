"""The error type of the main job: bad user input, reported as one line by the command."""

from __future__ import annotations

__all__ = ["AnalysisInputError"]


class AnalysisInputError(ValueError):
    """A problem with what the user gave the analysis: unknown dataset, missing file, unfit model.

    The ``captum-pags`` command prints its message on one line and exits with status 2.

    Examples
    --------
    >>> str(AnalysisInputError("Expected `--data` to be digits16 or a .pt/.npz file but got 'x'"))
    "Expected `--data` to be digits16 or a .pt/.npz file but got 'x'"
    """
