"""Pieces shared by the subcommands: help formatting, list parsing, common options."""

from __future__ import annotations

import argparse

__all__ = ["Formatter", "add_common", "floats", "grid", "ints", "settings"]


class Formatter(argparse.HelpFormatter):
    """Wraps descriptions and help; defaults are written into each option's help."""


def floats(text: str) -> list[float]:
    """Comma-separated numbers, for ``type=`` of an option."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers but got {text!r}") from None


def ints(text: str) -> list[int]:
    """Comma-separated integers, for ``type=`` of an option."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers but got {text!r}") from None


def grid(values: tuple[float, ...]) -> str:
    """A grid written as the options take it."""
    return ",".join(f"{v:g}" for v in values)


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every subcommand has: ``--out --seed --device --sigma --quiet``."""
    p.add_argument(
        "--out",
        default="report",
        help="folder for the report: results.json/csv, PNG figures, report.html (default: report)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random perturbation directions of the measurements (default: 0)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument(
        "--sigma", type=float, default=None, help="noise level of the score model in [0, 1] pixel units (default: 0.3)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def settings(args: argparse.Namespace) -> dict:
    """The common options as keyword arguments of the analysis API."""
    out = {"out": args.out, "seed": args.seed, "device": args.device, "quiet": args.quiet}
    if args.sigma is not None:
        out["sigma"] = args.sigma
    return out
