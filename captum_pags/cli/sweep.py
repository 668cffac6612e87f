"""``captum-pags sweep``: train models of growing robustness and report the three regimes."""

from __future__ import annotations

import argparse

from ._common import Formatter, add_common, floats, grid, ints

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to ``sub``."""
    from ..analysis.config import DATA_RECIPES

    sweep = sub.add_parser(
        "sweep",
        help="train models of growing robustness on digits16 or shapes32 and report the three regimes",
        description=(
            "Train classifiers on an embedded dataset (digits16, shapes32) over a grid of regularisation "
            "strengths for each training method, measure accuracy, perceptual alignment, tangent alignment and "
            "on-/off-manifold "
            "robustness, classify each model's regime and write a report. Trained models are cached "
            "under OUT/models, so an interrupted sweep resumes where it stopped."
        ),
        formatter_class=Formatter,
    )
    add_common(sweep)
    sweep.add_argument(
        "--methods",
        default="gradient_norm,noise",
        help="comma-separated training methods: gradient_norm, noise (randomized smoothing), pgd "
        "(default: gradient_norm,noise)",
    )
    sweep.add_argument(
        "--data",
        default="digits16",
        help="data whose training split trains the models and whose test split is measured: digits16 or shapes32 "
        "(3x32x32 colour shapes on a curved manifold; its report adds the principal angles of the decoder, "
        "local-PCA and denoiser tangent spaces to the exact one), a torchvision dataset on disk (cifar10:ROOT), "
        "or a .npz/.pt file or image folder of yours (measured; give --train-data and --tangent), "
        "e.g. --data shapes32 (default: digits16)",
    )
    sweep.add_argument(
        "--train-data",
        default=None,
        help="training images for --data of your own: a .npz/.pt file with x, y or an image folder "
        "(cifar10:ROOT trains on its own training split), e.g. --train-data train.npz (default: none)",
    )
    sweep.add_argument(
        "--score-model",
        default="auto",
        help="score model of perceptual alignment: auto (the one shipped for --data), none, a diffusers folder "
        "(unet/ + scheduler/) or a denoiser file, e.g. --score-model ./ddpm (default: auto)",
    )
    sweep.add_argument(
        "--tangent",
        default="exact",
        help="tangent space of tangent alignment and on-/off-manifold robustness: exact, pca:K, local-pca:K[:FILE], "
        "decoder:PATH or denoiser:K, e.g. --tangent local-pca:8; the data's shipped estimators are measured "
        "next to it (default: exact)",
    )
    sweep.add_argument(
        "--architecture",
        default=None,
        help="classifier to train: mlp (256-128-128), cnn (a small softplus CNN; slower, give it >= 20 epochs), "
        "convnet (a pooled ReLU CNN for 3x32x32 images) or a class module:Name, e.g. --architecture "
        "torchvision.models:resnet18 (default: the data's; digits16 and your own data: mlp, shapes32: convnet)",
    )
    sweep.add_argument(
        "--architecture-kwargs",
        default=None,
        metavar="JSON",
        help="keyword arguments of the architecture's class as a JSON object, e.g. --architecture-kwargs "
        "'{\"num_classes\": 10}' (default: none; mlp, cnn and convnet get the data's shape and class count)",
    )
    for method, what in (
        ("gradient_norm", "lambda grid for gradient_norm"),
        ("noise", "noise sigma grid for noise training"),
        ("pgd", "L2 epsilon grid for PGD training"),
    ):
        sweep.add_argument(
            f"--strengths-{method.replace('_', '-')}",
            type=floats,
            default=None,
            help=f"{what}, comma-separated (default: the data's; "
            + "; ".join(
                f"{data}: {grid(recipe.strengths[method])}, with --quick: {grid(recipe.quick_strengths[method])}"
                for data, recipe in DATA_RECIPES.items()
            )
            + ")",
        )
    sweep.add_argument(
        "--strength-units",
        choices=["ours", "paper"],
        default="ours",
        help="units of the strength grids: ours, or the paper's (its training script's --reg-constant, --epsilon, "
        "--noise-std at this sweep's batch size), converted for training (default: ours)",
    )

    def per_data(setting: str) -> str:
        values = ", ".join(f"{data}: {getattr(recipe, setting):g}" for data, recipe in DATA_RECIPES.items())
        return f"(default: the data's; {values})"

    for flag, kind, what, setting in (
        ("--epochs", int, "training epochs per model", "epochs"),
        ("--lr", float, "Adam learning rate", "lr"),
    ):
        sweep.add_argument(flag, type=kind, default=None, help=f"{what} {per_data(setting)}")
    schedules = ", ".join(f"{data}: {recipe.lr_schedule}" for data, recipe in DATA_RECIPES.items())
    sweep.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default=None,
        help=f"learning rate over the epochs: constant or cosine annealing to 0 (default: the data's; {schedules})",
    )
    sweep.add_argument(
        "--seeds",
        type=ints,
        default=None,
        help="comma-separated training seeds, one model per seed; the report shows mean +- sd over them "
        "(default: the data's; digits16: 0,1,2, shapes32: 0; with --quick: 0)",
    )
    sweep.add_argument(
        "--quick",
        action="store_true",
        help="a reduced grid (3 strengths per method, one seed) for a first look or CI: about 20 s on digits16, "
        "3 minutes on shapes32",
    )
    sweep.add_argument("--retrain", action="store_true", help="ignore cached models and train again")
    sweep.add_argument(
        "--executor",
        choices=["serial", "ray"],
        default="serial",
        help="serial: one model after another in this process; ray: one Ray task per model, on a local "
        "cluster or the one at --address (pip install 'captum-pags[ray]') (default: serial)",
    )
    sweep.add_argument(
        "--address",
        default=None,
        help="address of a running Ray cluster to join, e.g. auto or ray://head:10001 (default: start a local one)",
    )
    sweep.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="Ray tasks at once; each uses cores/N torch threads (default: every core of the cluster)",
    )
    sweep.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N of the grid (e.g. one task of a Slurm array) and write its per-model "
        "results; then assemble the report with 'captum-pags report OUT' (default: the whole grid)",
    )

    return sweep


def _json_object(text: str) -> dict:
    """``--architecture-kwargs`` as a dict."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(
            f"Expected --architecture-kwargs to be a JSON object such as '{{\"num_classes\": 10}}' but got {text!r}"
        )
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``captum-pags sweep`` with parsed ``args``; returns the exit status."""
    from .. import analysis
    from ._common import settings

    overrides = settings(args)
    overrides["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    for name in ("architecture", "lr", "lr_schedule"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    overrides["data"], overrides["score_model"], overrides["tangent"] = args.data, args.score_model, args.tangent
    if args.train_data is not None:
        overrides["train_data"] = args.train_data
    if args.architecture_kwargs is not None:
        overrides["architecture_kwargs"] = _json_object(args.architecture_kwargs)
    overrides["strength_units"] = args.strength_units
    strengths = {}
    for method, values in (
        ("gradient_norm", args.strengths_gradient_norm),
        ("noise", args.strengths_noise),
        ("pgd", args.strengths_pgd),
    ):
        if values is not None:
            strengths[method] = tuple(values)
    if strengths:
        overrides["strengths"] = strengths
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    overrides["retrain"] = args.retrain
    config = analysis.SweepConfig.quick(**overrides) if args.quick else analysis.SweepConfig(**overrides)
    if args.executor != "ray" and (args.address is not None or args.num_workers is not None):
        raise ValueError("Expected --address and --num-workers only with --executor ray")
    if args.num_workers is not None and args.num_workers < 1:
        raise ValueError(f"Expected --num-workers to be >= 1 but got {args.num_workers}")
    if args.shard is not None:
        from ..analysis.grid import parse_shard

        parse_shard(args.shard)
    result = analysis.run_sweep(
        config, executor=args.executor, address=args.address, num_workers=args.num_workers, shard=args.shard
    )
    print(result.summary())
    if args.shard is not None:
        print(
            f"shard {args.shard}: per-model results written to {config.out}/results; "
            f"assemble the report with: captum-pags report {config.out}"
        )
    else:
        print(f"report written to {result.files['html']}")
    return 0
