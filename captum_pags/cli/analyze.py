"""``captum-pags analyze``: measure one classifier of the user's with their data, score model and tangent space."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ._common import ExampleFormatter, add_common, floats, positive_int

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Measure accuracy, perceptual alignment (gradient vs diffusion score), tangent alignment and
on-/off-manifold robustness of one classifier, and write a report (JSON, CSV, figures, HTML).
The data are read and measured in batches, so memory does not grow with --max-examples.
Every piece is checked against the others before any work starts.

examples:
  # your TorchScript model on the embedded digits16 data (shipped score model, exact manifold)
  captum-pags analyze --model model.pt

  # a torchvision ResNet-18 state dict on CIFAR-10 from disk, with its input normalisation,
  # a diffusers DDPM folder as score model and a PCA tangent space of the training split
  captum-pags analyze --model resnet18.safetensors --model-class torchvision.models:resnet18 \\
      --model-kwargs '{"num_classes": 10}' --normalize '0.4914,0.4822,0.4465;0.247,0.243,0.261' \\
      --data cifar10:~/data --score-model ddpm-cifar10/ --tangent pca:64

  # an image folder (ROOT/<class>/<image>.png), a class-conditional UNet without null label
  # paired with an unconditional one, and local PCA against a reference file
  captum-pags analyze --model model.pt2 --data images/ --score-model cond-unet/ \\
      --unconditional-score-model uncond-unet/ --tangent local-pca:16:reference.npz

  # a .npz file with x (N, C, H, W) in [0, 255] and y (N,); the tangent space of a VAE
  captum-pags analyze --model model.pt --data data.npz --data-range 0,255 \\
      --score-model edm_denoiser.pt2 --tangent decoder:vae/ --epsilons 0.5,1,2

  # the tangent space from the score model's own Jacobian (unconditional score at --sigma)
  captum-pags analyze --model model.pt --data cifar10:~/data --score-model ddpm-cifar10/ \\
      --tangent denoiser:32 --max-examples 256 --batch-size 32 --device cuda
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``analyze`` subcommand to ``sub``."""
    analyze = sub.add_parser(
        "analyze",
        help="analyse one model of yours with your data, diffusion model and tangent space",
        description=_DESCRIPTION,
        formatter_class=ExampleFormatter,
    )
    add_common(analyze, out="analysis")
    analyze.add_argument(
        "--model",
        required=True,
        help="TorchScript (.pt) or torch.export (.pt2) file, or a state dict (.safetensors/.pt) with --model-class",
    )
    analyze.add_argument(
        "--model-class",
        default=None,
        help="importable class or function for a state dict, e.g. captum_pags.models:MLP or "
        "torchvision.models:resnet18",
    )
    analyze.add_argument(
        "--model-kwargs", default="{}", help="JSON keyword arguments for --model-class, e.g. '{\"num_classes\": 10}'"
    )
    analyze.add_argument(
        "--normalize",
        default=None,
        metavar="MEAN;STD",
        help="per-channel input normalisation applied inside the model, so gradients are w.r.t. the image, e.g. "
        "'0.485,0.456,0.406;0.229,0.224,0.225' (default: none)",
    )
    analyze.add_argument("--mean", default=None, help="per-channel mean of the normalisation (with --std)")
    analyze.add_argument("--std", default=None, help="per-channel std of the normalisation (with --mean)")
    analyze.add_argument(
        "--data",
        default="digits16",
        help="digits16; cifar10:ROOT (torchvision dataset on disk, also cifar100, mnist, fashion-mnist); a "
        ".npz/.pt file with x (N, C, H, W) and y (N,); or an image folder ROOT/<class>/<image> (default: digits16)",
    )
    analyze.add_argument(
        "--data-range", default=None, metavar="LOW,HIGH", help="range of the data values (default: 0,1)"
    )
    analyze.add_argument(
        "--score-model",
        default="auto",
        help="shipped (digits16), none, a diffusers folder (saved DDPMPipeline or unet/ + scheduler/), or an "
        "EDM-style denoiser D(x, sigma[, class_labels]) as .pt/.pt2 (default: shipped for digits16, else none)",
    )
    analyze.add_argument(
        "--score-model-kwargs",
        default=None,
        help='JSON loading settings of the score model, e.g. \'{"num_classes": 10, "one_hot_labels": true, '
        '"model_range": [-1, 1]}\' for an EDM denoiser, or \'{"null_class": 10}\' (default: none)',
    )
    analyze.add_argument(
        "--unconditional-score-model",
        default=None,
        help="an unconditional model paired with a class-conditional --score-model that has no null label "
        "(default: none)",
    )
    analyze.add_argument(
        "--tangent",
        default="auto",
        help="exact (digits16), pca:K, local-pca:K[:FILE], decoder:PATH (AutoencoderKL folder or TorchScript "
        "with encode/decode; 'shipped' for digits16) or denoiser:K (default: exact for digits16, else pca:64)",
    )
    analyze.add_argument(
        "--extra-tangent",
        action="append",
        default=None,
        metavar="NAME=SPEC",
        help="a further tangent space measured beside --tangent, its columns suffixed _NAME; repeatable, e.g. "
        "--extra-tangent local=local-pca:16 (default: none)",
    )
    analyze.add_argument(
        "--epsilons", type=floats, default=None, help="perturbation sizes, comma-separated (default: 0.25,0.5,1,2)"
    )
    analyze.add_argument(
        "--n-samples", type=positive_int, default=10, help="random directions per example and size (default: 10)"
    )
    analyze.add_argument(
        "--batch-size", type=positive_int, default=64, help="examples read and measured at a time (default: 64)"
    )
    analyze.add_argument(
        "--max-examples", type=positive_int, default=None, help="analyse at most this many examples (default: all)"
    )
    analyze.add_argument(
        "--alignment-metrics",
        default=None,
        help="alignment metrics, comma-separated among cosine, pearson, ssim, lpips (the paper's; needs the "
        "AlexNet weights in the torch hub cache); the first also fills alignment_bayes (default: cosine,ssim; "
        "cosine for images below 11x11)",
    )
    analyze.add_argument(
        "--reference",
        default=None,
        metavar="RESULTS_JSON",
        help="a sweep's results.json: place the model against its unregularised accuracy and alignment peak "
        "(default: none; the regime is then undetermined)",
    )
    analyze.add_argument(
        "--reference-accuracy",
        type=float,
        default=None,
        help="or only the accuracy of an unregularised reference model, in [0, 1] (default: none)",
    )
    return analyze


def _components(args: argparse.Namespace) -> dict:
    """Parse every component string; raises AnalysisInputError naming the option."""
    from ..analysis.components.classifier import ClassifierSpec
    from ..analysis.components.parse import (
        parse_data,
        parse_data_range,
        parse_floats,
        parse_normalize,
        parse_score_model,
        parse_tangent,
    )
    from ..analysis.errors import AnalysisInputError

    data_range = (0.0, 1.0) if args.data_range is None else parse_data_range(args.data_range)
    mean = std = None
    if args.normalize is not None:
        if args.mean is not None or args.std is not None:
            raise AnalysisInputError("Expected either --normalize MEAN;STD or --mean/--std, not both")
        mean, std = parse_normalize(args.normalize)
    elif (args.mean is None) != (args.std is None):
        raise AnalysisInputError("Expected --mean and --std together")
    elif args.mean is not None:
        mean, std = parse_normalize(f"{args.mean};{args.std}")
    if args.reference_accuracy is not None and not 0 <= args.reference_accuracy <= 1:
        raise AnalysisInputError(f"Expected --reference-accuracy in [0, 1] but got {args.reference_accuracy}")
    if args.reference is not None and args.reference_accuracy is not None:
        raise AnalysisInputError("Expected either --reference or --reference-accuracy, not both")
    if args.reference is not None and not Path(args.reference).is_file():
        raise AnalysisInputError(f"--reference {args.reference!r} does not exist (a sweep's results.json)")
    metrics = None
    known = ("cosine", "pearson", "ssim", "lpips")
    if args.alignment_metrics is not None:
        metrics = tuple(m.strip() for m in args.alignment_metrics.split(",") if m.strip())
    if metrics is not None and (not metrics or any(m not in known for m in metrics)):
        raise AnalysisInputError(
            f"Expected --alignment-metrics among {', '.join(known)} but got {args.alignment_metrics!r}"
        )
    epsilons = (0.25, 0.5, 1.0, 2.0) if args.epsilons is None else parse_floats(",".join(map(str, args.epsilons)))
    classifier = ClassifierSpec(args.model, args.model_class, args.model_kwargs, mean, std)
    classifier.check()
    tangent = None if args.tangent == "auto" else parse_tangent(args.tangent)
    extra = {}
    for item in args.extra_tangent or ():
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier() or name in extra:
            raise AnalysisInputError(f"Expected --extra-tangent NAME=SPEC with a new identifier NAME but got {item!r}")
        extra[name] = parse_tangent(text)
    data = parse_data(args.data, data_range)
    score: object = "auto"
    if args.score_model != "auto" or args.unconditional_score_model is not None or args.score_model_kwargs:
        score = parse_score_model(
            None if args.score_model == "auto" else args.score_model,
            args.unconditional_score_model,
            data_range,
            args.score_model_kwargs,
        )
        if score.path is None:  # type: ignore[attr-defined]
            score = None
    return {
        "classifier": classifier,
        "data": data,
        "score": score,
        "tangent": tangent,
        "epsilons": epsilons,
        "metrics": metrics,
        "extra": extra,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``captum-pags analyze`` with parsed ``args``; returns the exit status."""
    from ..analysis.components.fit import check_output_folder
    from ..analysis.components.settings import AnalysisSettings
    from ..analysis.errors import MissingMeasurementWarning

    settings = AnalysisSettings(
        sigma=0.3 if args.sigma is None else args.sigma,
        batch_size=args.batch_size,
        max_examples=args.max_examples,
        n_samples=args.n_samples,
        seed=args.seed,
        device=args.device,
    )
    settings.check_device()
    check_output_folder(args.out)
    parts = _components(args)
    from ..analysis.user import analyze_model

    score = parts["score"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MissingMeasurementWarning)
        result = analyze_model(
            parts["classifier"],
            data=parts["data"],
            score_model=score,
            tangent=parts["tangent"],
            extra_tangents=parts["extra"],
            out=args.out,
            sigma=settings.sigma,
            epsilons=parts["epsilons"],
            n_samples=settings.n_samples,
            seed=settings.seed,
            device=settings.device,
            batch_size=settings.batch_size,
            max_examples=settings.max_examples,
            quiet=args.quiet,
            reference=args.reference,
            reference_accuracy=args.reference_accuracy,
            alignment_metrics=parts["metrics"],
        )
    for w in caught:
        if issubclass(w.category, MissingMeasurementWarning):
            print(f"captum-pags: note: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(result.summary())
    print(f"report written to {result.files['html']}")
    return 0
