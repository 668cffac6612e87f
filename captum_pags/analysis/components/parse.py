"""The one reading of the command line's component strings: ``--data``, ``--tangent``, ``--normalize``, lists.

Each function turns one string into a component (or plain values) or raises
:class:`~captum_pags.analysis.AnalysisInputError` naming the option and what it takes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import AnalysisInputError

__all__ = [
    "parse_data",
    "parse_data_range",
    "parse_floats",
    "parse_normalize",
    "parse_score_model",
    "parse_tangent",
]


def parse_floats(text: str, option: str = "--epsilons", *, positive: bool = True) -> tuple[float, ...]:
    """Comma-separated finite numbers (each > 0 when ``positive``).

    Examples
    --------
    >>> parse_floats("0.5,1,2")
    (0.5, 1.0, 2.0)
    >>> parse_floats("0.5,nan")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_pags.analysis.errors.AnalysisInputError: Expected --epsilons to be ... but got '0.5,nan'
    """
    what = "finite numbers > 0" if positive else "finite numbers"
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise AnalysisInputError(f"Expected {option} to be comma-separated {what} but got {text!r}") from None
    if not values or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
        raise AnalysisInputError(f"Expected {option} to be comma-separated {what} but got {text!r}")
    return values


def parse_data_range(text: str) -> tuple[float, float]:
    """``LOW,HIGH`` of the data values.

    Examples
    --------
    >>> parse_data_range("0,255")
    (0.0, 255.0)
    """
    values = parse_floats(text, "--data-range", positive=False)
    if len(values) != 2 or not values[0] < values[1]:
        raise AnalysisInputError(f"Expected --data-range to be LOW,HIGH with LOW < HIGH but got {text!r}")
    return (values[0], values[1])


def parse_normalize(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``MEAN;STD``, each comma-separated per channel, e.g. ``0.4914,0.4822,0.4465;0.247,0.243,0.261``.

    Examples
    --------
    >>> parse_normalize("0.5,0.5,0.5;0.25,0.25,0.25")
    ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    """
    parts = text.split(";")
    if len(parts) != 2:
        raise AnalysisInputError(
            f"Expected --normalize to be MEAN;STD (e.g. 0.5,0.5,0.5;0.25,0.25,0.25) but got {text!r}"
        )
    mean = parse_floats(parts[0], "--normalize MEAN", positive=False)
    std = parse_floats(parts[1], "--normalize STD", positive=True)
    if len(mean) != len(std):
        raise AnalysisInputError(
            f"Expected --normalize to give as many MEAN as STD values (one per channel) but got {len(mean)} and "
            f"{len(std)}"
        )
    return mean, std


def parse_data(text: str, data_range: tuple[float, float] = (0.0, 1.0)) -> Any:
    """A :class:`~captum_pags.analysis.DataSource` from ``--data``.

    - ``digits16`` (or another embedded name): its test split;
    - ``NAME:ROOT`` with ``NAME`` in :data:`~captum_pags.analysis.TORCHVISION_DATASETS`, e.g.
      ``cifar10:~/data``: that torchvision dataset's test split on disk (``download=False``);
    - a ``.npz`` / ``.pt`` file with ``x`` and ``y``;
    - a folder: images in the ``ImageFolder`` layout ``ROOT/<class>/<image>``.

    Examples
    --------
    >>> parse_data("digits16").to_config()
    {'kind': 'embedded', 'name': 'digits16', 'split': 'test'}
    """
    from .data import ArrayFileData
    from .embedded import EMBEDDED_DATASETS, EmbeddedData
    from .images import TORCHVISION_DATASETS, ImageFolderData, TorchvisionData

    if not isinstance(text, str) or not text:
        raise AnalysisInputError(f"Expected --data to be a dataset name, file or folder but got {text!r}")
    name, sep, root = text.partition(":")
    if sep and name.lower() in TORCHVISION_DATASETS:
        return TorchvisionData(name.lower(), str(Path(root).expanduser()), data_range=data_range)
    if text in EMBEDDED_DATASETS:
        if data_range != (0.0, 1.0):
            raise AnalysisInputError(f"--data {text} is embedded data in [0, 1]; drop --data-range")
        return EmbeddedData(text)
    p = Path(text).expanduser()
    if p.suffix in (".npz", ".pt"):
        return ArrayFileData(str(p), data_range)
    if p.is_dir():
        return ImageFolderData(str(p), data_range)
    choices = ", ".join([*sorted(EMBEDDED_DATASETS), *(f"{k}:ROOT" for k in TORCHVISION_DATASETS)])
    raise AnalysisInputError(
        f"Expected --data to be one of {choices}, a .npz/.pt file with x and y, or an image folder but got {text!r}"
    )


def parse_tangent(text: str) -> Any:
    """A :class:`~captum_pags.analysis.TangentSpec` from ``--tangent``.

    ``exact``, ``pca:K``, ``local-pca:K``, ``local-pca:K:FILE``, ``decoder:PATH`` or ``denoiser:K``.

    Examples
    --------
    >>> parse_tangent("local-pca:8:ref.npz")
    TangentSpec(kind='local-pca', dim=8, path='ref.npz')
    >>> parse_tangent("pca:-3")
    Traceback (most recent call last):
    ...
    captum_pags.analysis.errors.AnalysisInputError: Expected --tangent pca:K with an integer K >= 1 but got 'pca:-3'
    """
    from .tangent import TANGENT_KINDS, TangentSpec

    kind, _, rest = text.partition(":")
    if kind not in TANGENT_KINDS:
        raise AnalysisInputError(
            f"Expected --tangent to be exact, pca:K, local-pca:K[:FILE], decoder:PATH or denoiser:K but got {text!r}"
        )
    if kind == "exact":
        if rest:
            raise AnalysisInputError(f"Expected --tangent exact without arguments but got {text!r}")
        return TangentSpec("exact")
    if kind == "decoder":
        if not rest:
            raise AnalysisInputError(f"Expected --tangent decoder:PATH with the autoencoder's path but got {text!r}")
        return TangentSpec("decoder", path=rest)
    k_text, _, path = rest.partition(":")
    if not k_text.strip().isdigit() or int(k_text) < 1:
        raise AnalysisInputError(f"Expected --tangent {kind}:K with an integer K >= 1 but got {text!r}")
    if path and kind != "local-pca":
        raise AnalysisInputError(f"Expected --tangent {kind}:K (a reference FILE only for local-pca) but got {text!r}")
    return TangentSpec(kind, dim=int(k_text), path=path or None)


def parse_score_model(
    text: str | None,
    unconditional: str | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    kwargs: str | dict[str, Any] | None = None,
) -> Any:
    """A :class:`~captum_pags.analysis.ScoreSpec` from ``--score-model`` / ``--unconditional-score-model``.

    ``shipped`` (the ``digits16`` model), ``none``, a diffusers folder, or a denoiser file;
    ``kwargs`` (``--score-model-kwargs``, JSON) are loading settings of
    :func:`~captum_pags.scores.load_score_model`, e.g. ``{"num_classes": 10, "one_hot_labels": true}``
    for an EDM denoiser.

    Examples
    --------
    >>> parse_score_model("shipped").to_config()["path"]
    'shipped'
    """
    from .score import ScoreSpec

    path = None if text in (None, "", "none") else text
    uncond = None if unconditional in (None, "", "none") else unconditional
    for option, value in (("--score-model", path), ("--unconditional-score-model", uncond)):
        if value not in (None, "shipped") and not Path(str(value)).expanduser().exists():
            raise AnalysisInputError(
                f"{option} {value!r} does not exist (a diffusers folder with unet/ and scheduler/, or a denoiser file)"
            )
    if uncond == "shipped":
        raise AnalysisInputError("Expected --unconditional-score-model to be a folder or file, not 'shipped'")
    expand = lambda v: v if v in (None, "shipped") else str(Path(v).expanduser())  # noqa: E731
    if isinstance(kwargs, str):
        import json

        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as err:
            raise AnalysisInputError(
                f"Expected --score-model-kwargs to be a JSON object but got {kwargs!r}: {err}"
            ) from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise AnalysisInputError(f"Expected --score-model-kwargs to be a JSON object but got {kwargs!r}")
    return ScoreSpec(expand(path), expand(uncond), data_range, kwargs)
