"""The ``captum-pags`` command: a thin layer over :mod:`captum_pags.analysis`.

``captum-pags sweep`` trains models of growing robustness on the embedded ``digits16`` data and
reports the three regimes; ``captum-pags analyze`` measures one model of the user's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import analyze as _analyze
from . import report as _report
from . import sweep as _sweep
from ._common import Formatter

__all__ = ["build_parser", "main"]

# OpenMP reads these when torch is loaded; with busy-waiting threads a 2-core machine can run
# 10-30x slower when anything else is running, so the command sets them before torch starts.
_THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``captum-pags`` (exposed for the documentation and tests).

    Examples
    --------
    >>> build_parser().parse_args(["sweep", "--quick"]).quick
    True
    """
    parser = argparse.ArgumentParser(
        prog="captum-pags",
        description=(
            "Perceptually-aligned gradient analysis (Srinivas, Bordt & Lakkaraju, NeurIPS 2023).\n"
            "Nothing is downloaded: data and score model ship with the package."
        ),
        formatter_class=Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{sweep,analyze,report}")
    _sweep.add_parser(sub)
    _analyze.add_parser(sub)
    _report.add_parser(sub)
    return parser


_COMMANDS = {"sweep": _sweep.run, "analyze": _analyze.run, "report": _report.run}


def _run(args: argparse.Namespace) -> int:
    return _COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``captum-pags``; returns the exit status.

    Errors in the user's input (unknown dataset, missing file, a model whose output or input does
    not fit) print one line on stderr and return 2, without a traceback.

    Examples
    --------
    >>> main(["analyze", "--model", "no/such/file.pt", "--quiet"])
    2
    """
    if argv is None and any(k not in os.environ for k in _THREAD_ENV):
        os.environ.update({k: v for k, v in _THREAD_ENV.items() if k not in os.environ})
        if "torch" in sys.modules:  # its OpenMP runtime is loaded: start again with the settings in place
            os.execv(sys.executable, [sys.executable, "-m", "captum_pags.cli", *sys.argv[1:]])
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..analysis.errors import AnalysisInputError

    try:
        return _run(args)
    except (AnalysisInputError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"captum-pags: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("captum-pags: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
