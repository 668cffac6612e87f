"""``captum-pags analyze``: measure one classifier of the user's."""

from __future__ import annotations

import argparse

from ._common import Formatter, add_common

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``analyze`` subcommand to ``sub``."""
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
        formatter_class=Formatter,
    )
    add_common(analyze)
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
    return analyze


def run(args: argparse.Namespace) -> int:
    """Run ``captum-pags analyze`` with parsed ``args``; returns the exit status."""
    from .. import analysis
    from ._common import settings

    model = analysis.load_user_model(args.model, args.model_class, args.model_kwargs, device=args.device)
    images, labels = analysis.load_user_data(args.data, max_examples=args.max_examples)
    result = analysis.analyze_model(model, images, labels, **settings(args))
    print(result.summary())
    print(f"report written to {result.files['html']}")
    return 0
