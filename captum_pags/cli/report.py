"""``captum-pags report``: assemble a sweep's report from the per-model results present."""

from __future__ import annotations

import argparse

from ._common import Formatter

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``sub``."""
    report = sub.add_parser(
        "report",
        help="assemble a sweep's report from the per-model results in its folder (after shards)",
        description=(
            "Read OUT/sweep_config.json and the per-model result files OUT/results/*.json that the "
            "shards of a sweep (captum-pags sweep --shard I/N) wrote, decide the regimes on the means "
            "over seeds and write the report into OUT. Grid points without results are listed as missing. "
            "Example: captum-pags report report"
        ),
        formatter_class=Formatter,
    )
    report.add_argument("out", metavar="OUT", help="the sweep's output folder (its --out)")
    report.add_argument("--no-maps", action="store_true", help="skip the gradient-map figure (needs OUT/models)")
    return report


def run(args: argparse.Namespace) -> int:
    """Run ``captum-pags report`` with parsed ``args``; returns the exit status."""
    from ..analysis import assemble_report

    result = assemble_report(args.out, maps=not args.no_maps)
    print(result.summary())
    print(f"report written to {result.files['html']}")
    return 0
