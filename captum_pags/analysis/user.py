"""Analyse one model of the user's, built from components: check that they fit, stream, measure, report."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .components import (
    AnalysisSettings,
    DataSource,
    EmbeddedData,
    ScoreModels,
    ScoreSpec,
    TangentSpec,
    TensorData,
    check_classifier_fit,
    check_output_folder,
    check_score_fit,
    load_user_model,
    parse_data,
    parse_tangent,
)
from .errors import AnalysisInputError, MissingMeasurementWarning
from .measure import measure_batches
from .report import write_report

__all__ = ["AnalysisResult", "analyze_model", "load_user_data", "load_user_model"]

#: Default output folder of ``analyze`` (a sweep writes to ``report/``; the two never mix).
DEFAULT_OUT = "analysis"


def load_user_data(data: str, max_examples: int | None = None) -> tuple[Tensor, Tensor]:
    """Images and labels of a ``--data`` source (see :func:`~captum_pags.analysis.parse_data`) as two tensors.

    For small data; the analysis itself streams from the source in batches.

    Examples
    --------
    >>> x, y = load_user_data("digits16", max_examples=5)
    >>> x.shape, y.shape
    (torch.Size([5, 1, 16, 16]), torch.Size([5]))
    """
    source = parse_data(data)
    parts = list(source.batches(256, max_examples))
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


@dataclass
class AnalysisResult:
    """What :func:`analyze_model` returns: the measurements, the regime, notes and the report files.

    Examples
    --------
    >>> print(AnalysisResult({"accuracy": 0.5}, "weak").summary())
    accuracy: 0.5
    regime: weak
    """

    metrics: dict[str, Any]
    regime: str
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per figure."""
        lines = [
            f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
            for k, v in self.metrics.items()
            if not isinstance(v, list)
        ]
        return "\n".join([*lines, f"regime: {self.regime}"])


def _data_source(images: Tensor | None, labels: Tensor | None, data: Any) -> DataSource:
    if images is not None or labels is not None:
        if data is not None:
            raise AnalysisInputError("Expected either `images` and `labels` or `data`, not both")
        if images is None or labels is None:
            raise AnalysisInputError("Expected both `images` and `labels` (or `data`)")
        return TensorData(images, labels)
    if isinstance(data, DataSource):
        return data
    return parse_data("digits16" if data is None else data)


def _score_source(score_model: Any, unconditional: Any, data: DataSource) -> tuple[ScoreSpec | None, Any]:
    """A spec to load (strings) or ready score models (objects)."""
    if isinstance(score_model, ScoreModels):
        return None, score_model
    if isinstance(score_model, ScoreSpec):
        if unconditional is not None:
            raise AnalysisInputError("Expected the unconditional model inside the ScoreSpec, not beside it")
        return score_model, None
    if isinstance(score_model, str) and score_model == "auto":
        score_model = data.shipped_score() if isinstance(data, EmbeddedData) else None
    if isinstance(score_model, (str, type(None))) and isinstance(unconditional, (str, type(None))):
        if score_model is None and unconditional is None:
            return None, None
        from .components import parse_score_model

        return parse_score_model(score_model, unconditional, data.data_range), None
    if isinstance(score_model, str) or isinstance(unconditional, str):
        raise AnalysisInputError(
            "Expected `score_model` and `unconditional_score_model` both as paths or both as objects"
        )
    return None, ScoreModels(score_model, unconditional)


def _tangent_spec(tangent: Any, data: DataSource) -> Any:
    if tangent is None or tangent == "auto":
        if isinstance(data, EmbeddedData) and data.spec.exact_tangent is not None:
            return TangentSpec("exact")
        d = 1
        for s in data.shape:
            d *= int(s)
        return TangentSpec("pca", dim=max(1, min(64, d - 1)))
    return parse_tangent(tangent) if isinstance(tangent, str) else tangent


def _alignment_metrics(metrics: Sequence[str] | None, data: DataSource) -> tuple[str, ...]:
    from .measure import _check_metrics

    shape = tuple(data.shape)
    image = len(shape) == 3
    if metrics is None:
        return ("cosine", "ssim") if image and min(shape[1:]) >= 11 else ("cosine",)
    metrics = _check_metrics(metrics)
    if "ssim" in metrics and not (image and min(shape[1:]) >= 11):
        raise AnalysisInputError(
            f"Expected images of at least 11x11 pixels for the ssim alignment metric (its window) but the data have "
            f"per-example shape {shape}: choose other --alignment-metrics"
        )
    if "lpips" in metrics and not (image and shape[0] in (1, 3)):
        raise AnalysisInputError(
            f"Expected grey or RGB images for the lpips alignment metric but the data have per-example shape {shape}"
        )
    return metrics


def _regime(metrics: Mapping[str, Any], reference: Any) -> tuple[str, str]:
    """The regime through the one placement rule of :func:`~captum_pags.metrics.place_model`, and why."""
    from ..metrics import place_model

    try:
        decision = place_model(metrics, reference)
    except (ValueError, TypeError) as err:
        raise AnalysisInputError(f"cannot place the model against the reference: {err}") from None
    return str(decision.regime), str(getattr(decision, "reason", ""))


def analyze_model(
    model: nn.Module | Any,
    images: Tensor | None = None,
    labels: Tensor | None = None,
    *,
    data: str | DataSource | None = None,
    score_model: Any = "auto",
    unconditional_score_model: Any = None,
    tangent: str | TangentSpec | Any = None,
    extra_tangents: Mapping[str, str | TangentSpec | Any] | None = None,
    out: str = DEFAULT_OUT,
    sigma: float = 0.3,
    epsilons: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    n_samples: int = 10,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    max_examples: int | None = None,
    quiet: bool = False,
    reference: Any = None,
    reference_accuracy: float | None = None,
    alignment_metrics: Sequence[str] | None = None,
) -> AnalysisResult:
    r"""Measure one classifier on data, score model(s) and a tangent space of your choice; write a report.

    Every piece is checked against the others before any work (shapes vs the UNet's
    ``sample_size``, channel and class counts, the data range, the device, the output folder).
    The data are then streamed in batches of ``batch_size``: each batch is scored, its tangent
    bases, gradients and random perturbations are computed and added to running sums, so memory
    does not grow with the number of examples. Measurements the score models cannot give (e.g. the
    Bayes score difference of an unconditional-only model) are NaN, and a
    :class:`~captum_pags.analysis.MissingMeasurementWarning` says so once.

    Parameters
    ----------
    model : nn.Module or ClassifierSpec
        Classifier taking images in data units (wrap a normalisation with
        :class:`~captum_pags.analysis.NormalizedClassifier`), or a spec to load.
    images, labels : Tensor, optional
        Your data as tensors (a ``1x16x16`` tensor is your data, not ``digits16``).
    data : str or DataSource, optional
        Or a data source / ``--data`` string (default: ``"digits16"``).
    score_model : str, ScoreSpec, ScoreModel or ScoreModels, optional
        ``"auto"`` (the model shipped for embedded data such as ``digits16``, none otherwise), ``"shipped"``, a
        diffusers folder, a denoiser file, a :class:`~captum_pags.analysis.ScoreSpec` (with
        loading settings), a :class:`~captum_pags.scores.ScoreModel`, or None.
    unconditional_score_model : str or ScoreModel, optional
        An unconditional model paired with a conditional ``score_model`` without a null label.
    tangent : str, TangentSpec or TangentSpace, optional
        ``exact`` (default for embedded data), ``pca:K`` (default ``pca:64`` otherwise),
        ``local-pca:K[:FILE]``, ``decoder:PATH``, ``denoiser:K``, or a built tangent space.
    extra_tangents : mapping, optional
        Further tangent spaces by name; each adds ``*_<name>`` columns.
    out : str
        Report folder (default ``analysis``; never a sweep's folder).
    sigma, epsilons, n_samples, seed, device, batch_size, max_examples :
        See :class:`~captum_pags.analysis.AnalysisSettings`.
    quiet : bool
        No progress bar.
    reference : str, mapping or RegimeReference, optional
        A sweep's ``results.json`` (its unregularised accuracy and alignment peak) to place the
        model against (:func:`~captum_pags.metrics.place_model`); without a reference the regime
        is ``"undetermined"``.
    reference_accuracy : float, optional
        Or only the accuracy of an unregularised reference model.
    alignment_metrics : sequence of str, optional
        See :func:`~captum_pags.analysis.measure_batches`; default ``("cosine", "ssim")`` for images
        of at least 11x11 pixels (SSIM's window), else ``("cosine",)``.

    Returns
    -------
    AnalysisResult

    Examples
    --------
    >>> import tempfile
    >>> from captum_pags.models import MLP
    >>> res = analyze_model(MLP(), data="digits16", max_examples=16, out=tempfile.mkdtemp(), n_samples=2, quiet=True)
    >>> sorted(res.files)[:2], -1 <= res.metrics["alignment_bayes"] <= 1
    (['alignment', 'csv'], True)
    """
    start = time.perf_counter()
    if reference is not None and reference_accuracy is not None:
        raise AnalysisInputError("Expected either `reference` or `reference_accuracy`, not both")
    if reference is None and reference_accuracy is not None:
        reference = float(reference_accuracy)
    if isinstance(reference, (str, Path)) and not Path(reference).is_file():
        raise AnalysisInputError(f"reference results {str(reference)!r} do not exist (a sweep's results.json)")
    settings = AnalysisSettings(sigma, tuple(epsilons), n_samples, batch_size, max_examples, seed, device)
    settings.check_device()
    check_output_folder(out)
    source = _data_source(images, labels, data)
    alignment_metrics = _alignment_metrics(alignment_metrics, source)
    dev = torch.device(settings.device)
    spec, scores = _score_source(score_model, unconditional_score_model, source)
    notes: list[str] = []
    if spec is not None:
        notes += check_score_fit(source, spec)
    tangent_spec = _tangent_spec(tangent, source)
    extra = {name: (parse_tangent(t) if isinstance(t, str) else t) for name, t in (extra_tangents or {}).items()}
    score_given = spec is not None or scores is not None
    known = scores if scores is not None else (spec.capabilities() if spec is not None else None)
    for t in (tangent_spec, *extra.values()):
        if isinstance(t, TangentSpec):
            t.check(source, known, score_given=score_given)
    if not isinstance(model, nn.Module) and hasattr(model, "load"):
        model = model.load(dev)
    score_classes = spec.info().num_classes if spec is not None and spec.info() is not None else None
    if scores is not None:
        score_classes = scores.num_classes
    check_classifier_fit(model, source, score_classes, dev)
    # ------------------------------------------------------------------ loading (the pieces fit)
    if spec is not None:
        scores = spec.load(dev)
    used_sigma = settings.sigma
    if scores is not None:
        used_sigma = scores.check_sigma(settings.sigma)
        missing = scores.missing()
        if missing:
            warnings.warn("; ".join(missing), MissingMeasurementWarning, stacklevel=2)
            notes += missing
    else:
        notes.append("no score model: perceptual alignment is NaN (give a score model)")
    spaces: dict[str, Any] = {}
    for name, t in {"": tangent_spec, **extra}.items():
        if isinstance(t, TangentSpec):
            t.check(source, scores)
            space, what = t.build(
                source,
                scores=scores,
                sigma=settings.sigma,
                max_examples=settings.max_examples,
                batch_size=settings.batch_size,
                device=dev,
            )
            notes.append(what if not name else f"{what} (columns *_{name})")
        else:
            space = t
        spaces[name] = space
    n_total = source.count(settings.max_examples)
    bar = None
    if not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_total, desc="analyse", unit="image")

    def progress(_: int, n: int) -> None:
        if bar is not None:
            bar.update(n - bar.n)

    try:
        metrics = measure_batches(
            model,
            source.batches(settings.batch_size, settings.max_examples),
            spaces,
            scores=scores,
            sigma=settings.sigma,
            epsilons=settings.epsilons,
            n_samples=settings.n_samples,
            seed=settings.seed,
            device=dev,
            alignment_metrics=alignment_metrics,
            on_batch=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    regime, why = _regime(metrics, reference)
    if why:
        notes.append(f"regime {regime}: {why}")
    config = {
        "command": "analyze",
        "data": source.to_config(),
        "score_model": None if spec is None else spec.to_config(),
        "tangent": {
            name: (t.to_config() if isinstance(t, TangentSpec) else repr(t))
            for name, t in {"": tangent_spec, **extra}.items()
        },
        "settings": settings.to_config(),
        "alignment_metrics": list(alignment_metrics),
        "reference": reference if isinstance(reference, (str, float, int, type(None))) else repr(reference),
        "sigma_evaluated": used_sigma,
        "n": metrics["n"],
    }
    row = {"method": "user", "strength": 0.0, "seed": settings.seed, **metrics, "regime": regime}
    files = write_report(
        out,
        [row],
        config=config,
        title="captum_pags analysis of one model",
        notes=[*notes, f"measured {metrics['n']} examples in {time.perf_counter() - start:.1f} s"],
    )
    return AnalysisResult(metrics, regime, files, notes, config)
