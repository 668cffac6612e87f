"""The ``captum-pags`` command: a thin layer over :mod:`captum_pags.analysis`.

``captum-pags sweep`` trains models of growing robustness on the embedded ``digits16`` data and
reports the three regimes; ``captum-pags analyze`` measures one model of the user's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

# OpenMP reads these when torch is loaded; with busy-waiting threads a 2-core machine can run
# 10-30x slower when anything else is running, so the command sets them before torch starts.
_THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions and help; defaults are written into each option's help."""


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers but got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers but got {text!r}") from None


def _grid(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _common(p: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``captum-pags`` (exposed for the documentation and tests).

    Examples
    --------
    >>> build_parser().parse_args(["sweep", "--quick"]).quick
    True
    """
    from .analysis.config import DEFAULT_STRENGTHS, QUICK_STRENGTHS, SweepConfig

    parser = argparse.ArgumentParser(
        prog="captum-pags",
        description=(
            "Perceptually-aligned gradient analysis (Srinivas, Bordt & Lakkaraju, NeurIPS 2023).\n"
            "Nothing is downloaded: data and score model ship with the package."
        ),
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{sweep,analyze}")

    sweep = sub.add_parser(
        "sweep",
        help="train models of growing robustness on digits16 and report the three regimes",
        description=(
            "Train classifiers on digits16 over a grid of regularisation strengths for each training "
            "method, measure accuracy, perceptual alignment, tangent alignment and on-/off-manifold "
            "robustness, classify each model's regime and write a report. Trained models are cached "
            "under OUT/models, so an interrupted sweep resumes where it stopped."
        ),
        formatter_class=_Formatter,
    )
    _common(sweep)
    sweep.add_argument(
        "--methods",
        default="gradient_norm,noise",
        help="comma-separated training methods: gradient_norm, noise (randomized smoothing), pgd "
        "(default: gradient_norm,noise)",
    )
    sweep.add_argument(
        "--architecture",
        choices=["mlp", "cnn"],
        default="mlp",
        help="classifier to train: an MLP 256-128-128-10, or a small softplus CNN (slower; give it >= 20 epochs) "
        "(default: mlp)",
    )
    for method, what in (
        ("gradient_norm", "lambda grid for gradient_norm"),
        ("noise", "noise sigma grid for noise training"),
        ("pgd", "L2 epsilon grid for PGD training"),
    ):
        sweep.add_argument(
            f"--strengths-{method.replace('_', '-')}",
            type=_floats,
            default=None,
            help=f"{what}, comma-separated (default: {_grid(DEFAULT_STRENGTHS[method])}; "
            f"with --quick: {_grid(QUICK_STRENGTHS[method])})",
        )
    sweep.add_argument(
        "--epochs", type=int, default=None, help=f"training epochs per model (default: {SweepConfig.epochs})"
    )
    sweep.add_argument(
        "--seeds", type=_ints, default=None, help="comma-separated training seeds, one model per seed (default: 0)"
    )
    sweep.add_argument(
        "--quick", action="store_true", help="a reduced grid (3 strengths per method) that runs in about 20 s (for CI)"
    )
    sweep.add_argument("--retrain", action="store_true", help="ignore cached models and train again")

    analyze = sub.add_parser(
        "analyze",
        help="analyse one model of yours on embedded or your own data",
        description=(
            "Measure accuracy, perceptual alignment, tangent alignment and on-/off-manifold robustness "
            "of one classifier. The model is a TorchScript file (.pt), a torch.export archive (.pt2), "
            "or a state dict (.safetensors/.pt) "
            "together with --model-class. Data is digits16 or a .pt/.npz file holding images x (N, ...) and "
            "labels y (N,). Images shaped like digits16 (1x16x16 in [0, 1]) are measured against the shipped "
            "diffusion model and the exact digits16 subspace; other data get a PCA tangent space and no score "
            "model (alignment NaN)."
        ),
        formatter_class=_Formatter,
    )
    _common(analyze)
    analyze.add_argument(
        "--model",
        required=True,
        help="TorchScript (.pt) or torch.export (.pt2) file, or a state dict with --model-class",
    )
    analyze.add_argument(
        "--model-class", default=None, help="importable class for a state dict, e.g. captum_pags.models:MLP"
    )
    analyze.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for --model-class (default: {})")
    analyze.add_argument(
        "--data",
        default="digits16",
        help="digits16 (its test split), or a .pt/.npz file with x and y (default: digits16)",
    )
    analyze.add_argument(
        "--max-examples", type=int, default=360, help="analyse at most this many examples (default: 360)"
    )
    return parser


def _settings(args: argparse.Namespace) -> dict:
    out = {"out": args.out, "seed": args.seed, "device": args.device, "quiet": args.quiet}
    if args.sigma is not None:
        out["sigma"] = args.sigma
    return out


def _run(args: argparse.Namespace) -> int:
    from . import analysis

    if args.command == "sweep":
        overrides = _settings(args)
        overrides["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        overrides["architecture"] = args.architecture
        strengths = {}
        for method, grid in (
            ("gradient_norm", args.strengths_gradient_norm),
            ("noise", args.strengths_noise),
            ("pgd", args.strengths_pgd),
        ):
            if grid is not None:
                strengths[method] = tuple(grid)
        if strengths:
            overrides["strengths"] = strengths
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.seeds is not None:
            overrides["seeds"] = tuple(args.seeds)
        overrides["retrain"] = args.retrain
        config = analysis.SweepConfig.quick(**overrides) if args.quick else analysis.SweepConfig(**overrides)
        result = analysis.run_sweep(config)
        print(result.summary())
        print(f"report written to {result.files['html']}")
        return 0
    model = analysis.load_user_model(args.model, args.model_class, args.model_kwargs, device=args.device)
    images, labels = analysis.load_user_data(args.data, max_examples=args.max_examples)
    settings = _settings(args)
    result = analysis.analyze_model(model, images, labels, **settings)
    print(result.summary())
    print(f"report written to {result.files['html']}")
    return 0


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
    from .analysis.errors import AnalysisInputError

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
