"""The ``captum-pags`` command: a thin layer over :mod:`captum_pags.analysis`.

``captum-pags sweep`` trains models of growing robustness on the embedded ``digits16`` data and
reports the three regimes; ``captum-pags analyze`` measures one model of the user's.

Nothing here imports torch at import time: arguments are read and checked first, and the thread
settings below are in the environment before torch (and its OpenMP runtime) is loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import analyze as _analyze
from ._common import ArgumentParser, Formatter, fail

__all__ = ["build_parser", "main"]

# OpenMP reads these when torch is loaded; with busy-waiting threads a 2-core machine can run
# 10-30x slower when anything else is running, so the command sets them before torch starts.
_THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}

#: One-line help of each subcommand (what the top-level ``--help`` shows without building them).
_HELP = {
    "sweep": "train models of growing robustness on digits16 and report the three regimes",
    "analyze": "analyse one model of yours with your data, diffusion model and tangent space",
    "report": "assemble a sweep's report from the per-model results in its folder (after shards)",
}


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from . import sweep as _sweep  # its defaults come from the sweep's configuration module

    _sweep.add_parser(sub)


def _add_report(sub: argparse._SubParsersAction) -> None:
    from . import report as _report

    _report.add_parser(sub)


_BUILDERS = {"sweep": _add_sweep, "analyze": _analyze.add_parser, "report": _add_report}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``captum-pags`` (exposed for the documentation and tests).

    Parameters
    ----------
    only : str, optional
        Build only this subcommand's options (the others get their one-line help); all when None.

    Examples
    --------
    >>> build_parser().parse_args(["sweep", "--quick"]).quick
    True
    """
    parser = ArgumentParser(
        prog="captum-pags",
        description=(
            "Perceptually-aligned gradient analysis (Srinivas, Bordt & Lakkaraju, NeurIPS 2023).\n"
            "Nothing is downloaded: data and score model ship with the package, or are your local files."
        ),
        formatter_class=Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{sweep,analyze,report}")
    for name, build in _BUILDERS.items():
        if only is None or only == name:
            build(sub)
        else:
            sub.add_parser(name, help=_HELP[name])
    return parser


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in _BUILDERS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``captum-pags``; returns the exit status.

    Every error in the user's input (unknown dataset, missing file, bad number, unavailable
    device, a model or score model that does not fit the data) prints one line on stderr and
    returns 2, without a traceback, before any costly work.

    Examples
    --------
    >>> main(["analyze", "--model", "no/such/file.pt", "--quiet"])
    2
    """
    if "torch" not in sys.modules:  # without a re-exec: only effective before torch is loaded
        for key, value in _THREAD_ENV.items():
            os.environ.setdefault(key, value)
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command(args_list) or "")
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    from ..analysis.errors import AnalysisInputError

    runner = {"analyze": _analyze.run, "sweep": _sweep_run, "report": _report_run}[args.command]
    try:
        _check_common(args)
        return runner(args)
    except (AnalysisInputError, FileNotFoundError, ValueError, TypeError) as err:
        return fail(str(err))
    except KeyboardInterrupt:
        print("captum-pags: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _check_common(args: argparse.Namespace) -> None:
    """What every subcommand needs, checked before it starts: an available device and an output folder."""
    from ..analysis.components.settings import AnalysisSettings
    from ..analysis.errors import AnalysisInputError

    device = getattr(args, "device", None)
    if device is not None:
        AnalysisSettings(device=device).check_device()
    out = getattr(args, "out", None)
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise AnalysisInputError(f"Expected --out to be a folder but {out!r} is a file: choose another --out")


def _sweep_run(args: argparse.Namespace) -> int:
    from . import sweep as _sweep

    return _sweep.run(args)


def _report_run(args: argparse.Namespace) -> int:
    from . import report as _report

    return _report.run(args)


if __name__ == "__main__":
    sys.exit(main())
