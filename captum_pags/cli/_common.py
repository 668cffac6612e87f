"""Pieces shared by the subcommands: help formatting, one-line errors, number parsing, common options.

Nothing here imports torch: ``captum-pags --help`` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

__all__ = [
    "ArgumentParser",
    "ExampleFormatter",
    "Formatter",
    "add_common",
    "fail",
    "finite_float",
    "floats",
    "grid",
    "ints",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "settings",
]


class Formatter(argparse.HelpFormatter):
    """Wraps descriptions and help; defaults are written into each option's help."""


class ExampleFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of a description with examples."""


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``captum-pags: error: <message>`` and exit with status 2."""
        self.exit(2, f"captum-pags: error: {message.splitlines()[0]}\n")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number but got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number but got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite number, for ``type=`` of an option."""
    return _float(text)


def positive_float(text: str) -> float:
    """A finite number > 0, for ``type=`` of an option."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0 but got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer but got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1, for ``type=`` of an option."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 but got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0, for ``type=`` of an option."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 but got {text!r}")
    return value


def floats(text: str) -> list[float]:
    """Comma-separated finite numbers, for ``type=`` of an option."""
    values = [_float(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers but got {text!r}")
    return values


def ints(text: str) -> list[int]:
    """Comma-separated integers, for ``type=`` of an option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers but got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers but got {text!r}")
    return values


def grid(values: tuple[float, ...]) -> str:
    """A grid written as the options take it."""
    return ",".join(f"{v:g}" for v in values)


def add_common(p: argparse.ArgumentParser, *, out: str = "report") -> None:
    """Options every subcommand has: ``--out --seed --device --sigma --quiet``."""
    p.add_argument(
        "--out",
        default=out,
        help=f"folder for the report: results.json/csv, PNG figures, report.html (default: {out})",
    )
    p.add_argument(
        "--seed",
        type=nonnegative_int,
        default=0,
        help="seed of the random perturbation directions of the measurements (default: 0)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda or cuda:1 (default: cpu)")
    p.add_argument(
        "--sigma",
        type=positive_float,
        default=None,
        help="noise level of the score model in data units ([0, 1] pixels) (default: 0.3)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def settings(args: argparse.Namespace) -> dict:
    """The common options as keyword arguments of the analysis API."""
    out = {"out": args.out, "seed": args.seed, "device": args.device, "quiet": args.quiet}
    if args.sigma is not None:
        out["sigma"] = args.sigma
    return out


def fail(message: str) -> int:
    """Print one error line on stderr; returns the exit status 2."""
    print(f"captum-pags: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return 2
