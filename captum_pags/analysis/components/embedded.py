"""Embedded datasets (``digits16``; others registered by name) and their known manifolds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..errors import AnalysisInputError
from .data import DataSource

__all__ = ["EMBEDDED_DATASETS", "EmbeddedData", "EmbeddedDataset", "register_embedded_dataset"]


@dataclass(frozen=True)
class EmbeddedDataset:
    """An embedded dataset: how to load a split, and its exact tangent space if known.

    Attributes
    ----------
    load : Callable
        ``load(split) -> (images, labels)`` for ``split`` in ``splits``.
    splits : tuple of str
        Available splits (the first is the training split, used as a reference set).
    exact_tangent : Callable, optional
        ``exact_tangent(split)`` returning the :class:`~captum_pags.manifold.TangentSpace` of the
        known data manifold.
    num_classes : int
        Number of classes.
    shape : tuple of int
        Per-example shape.
    shipped_score : Callable, optional
        ``shipped_score()`` returning the ``--score-model`` string of the score model that ships
        for this dataset (the default score model of ``score_model="auto"``), or None.

    Examples
    --------
    >>> spec = EMBEDDED_DATASETS["digits16"]
    >>> spec.splits, spec.num_classes, spec.shape
    (('train', 'test'), 10, (1, 16, 16))
    """

    load: Callable[[str], tuple[Tensor, Tensor]]
    splits: tuple[str, ...]
    exact_tangent: Callable[[str], Any] | None
    num_classes: int
    shape: tuple[int, ...]
    shipped_score: Callable[[], str | None] | None = None


def _load_digits16(split: str) -> tuple[Tensor, Tensor]:
    from ...datasets import load_digits16

    d = load_digits16(split)  # type: ignore[arg-type]
    return d.images, d.labels


def _digits16_tangent(split: str) -> Any:
    from ...datasets import digits16_subspace

    return digits16_subspace()


class _Registry(dict):
    """A dict of embedded datasets whose every lookup sees the package's own ones.

    ``shapes32`` is registered on the first lookup (its module is imported only then), so a
    membership test such as ``"shapes32" in EMBEDDED_DATASETS`` is true from the start: code that
    branches on it cannot take the path for data of your own by mistake.
    """

    _known_added = False

    def _ensure(self) -> None:
        if not self._known_added:
            self._known_added = True
            _register_known(self)

    def __contains__(self, key: object) -> bool:
        self._ensure()
        return super().__contains__(key)

    def __getitem__(self, key: str) -> EmbeddedDataset:
        self._ensure()
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return super().__iter__()

    def __len__(self) -> int:
        self._ensure()
        return super().__len__()

    def get(self, key: str, default: Any = None) -> Any:
        self._ensure()
        return super().get(key, default)

    def keys(self) -> Any:
        self._ensure()
        return super().keys()

    def items(self) -> Any:
        self._ensure()
        return super().items()

    def values(self) -> Any:
        self._ensure()
        return super().values()


#: Embedded datasets by name; :func:`register_embedded_dataset` adds one.
EMBEDDED_DATASETS: dict[str, EmbeddedDataset] = _Registry(
    digits16=EmbeddedDataset(
        _load_digits16, ("train", "test"), _digits16_tangent, 10, (1, 16, 16), shipped_score=lambda: "shipped"
    ),
)


def register_embedded_dataset(name: str, dataset: EmbeddedDataset) -> None:
    """Make ``name`` usable as ``--data name`` (and ``--tangent exact`` when it knows its manifold).

    Examples
    --------
    >>> sorted(EMBEDDED_DATASETS)[:1]
    ['digits16']
    """
    if not name.isidentifier():
        raise ValueError(f"Expected `name` to be a plain identifier but got {name!r}")
    EMBEDDED_DATASETS[name] = dataset


def _register_known(registry: dict[str, EmbeddedDataset]) -> None:
    """Add the embedded datasets that exist in this version of the package (shapes32 when present)."""
    from ... import datasets

    load, tangent = getattr(datasets, "load_shapes32", None), getattr(datasets, "shapes32_tangent", None)
    if load is None or dict.__contains__(registry, "shapes32"):
        return
    from ...datasets.shapes32_render import SHAPES32_CLASSES, SHAPES32_SHAPE

    def _load(split: str) -> tuple[Tensor, Tensor]:
        d = load(split)
        return d.images, d.labels

    def _score() -> str | None:
        from ...models import shapes32 as shapes32_models

        folder = getattr(shapes32_models, "SHAPES32_SCORE_WEIGHTS", None)
        return str(folder) if folder is not None and folder.is_dir() else None

    dict.__setitem__(
        registry,
        "shapes32",
        EmbeddedDataset(_load, ("train", "test"), tangent, len(SHAPES32_CLASSES), tuple(SHAPES32_SHAPE), _score),
    )


class EmbeddedData(DataSource):
    """An embedded dataset (``digits16``; others registered in :data:`EMBEDDED_DATASETS`).

    Parameters
    ----------
    name : str
        Registered name.
    split : str
        Which split to analyse (default ``"test"``); the first registered split is the reference.

    Examples
    --------
    >>> data = EmbeddedData("digits16")
    >>> len(data), data.shape, data.num_classes
    (360, (1, 16, 16), 10)
    >>> x, y = next(data.batches(4))
    >>> x.shape, y.dtype
    (torch.Size([4, 1, 16, 16]), torch.int64)
    """

    kind = "embedded"

    def __init__(self, name: str = "digits16", split: str = "test") -> None:
        if name not in EMBEDDED_DATASETS:
            raise AnalysisInputError(f"Expected an embedded dataset among {sorted(EMBEDDED_DATASETS)} but got {name!r}")
        self.name, self.split = name, split
        self.spec = EMBEDDED_DATASETS[name]
        if split not in self.spec.splits:
            raise AnalysisInputError(f"Expected `split` among {list(self.spec.splits)} for {name} but got {split!r}")
        self._data: tuple[Tensor, Tensor] | None = None

    def _loaded(self) -> tuple[Tensor, Tensor]:
        if self._data is None:
            self._data = self.spec.load(self.split)
        return self._data

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "embedded", "name": ..., "split": ...}``."""
        return {"kind": self.kind, "name": self.name, "split": self.split}

    def __len__(self) -> int:
        return int(self._loaded()[0].shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape."""
        return tuple(self.spec.shape)

    @property
    def num_classes(self) -> int | None:
        """Number of classes."""
        return self.spec.num_classes

    def batches(self, batch_size: int, max_examples: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches (the embedded data are small and held in memory)."""
        x, y = self._loaded()
        n = self.count(max_examples)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield x[start:stop], y[start:stop]

    def reference(self, max_examples: int) -> Tensor | None:
        """Images of the training split (the first registered split)."""
        train = self.spec.splits[0]
        if train == self.split:
            return None
        return self.spec.load(train)[0][:max_examples]

    def shipped_score(self) -> str | None:
        """The ``--score-model`` of the score model shipped for this dataset, or None."""
        return None if self.spec.shipped_score is None else self.spec.shipped_score()

    def exact_tangent(self) -> Any:
        """The known tangent space of this dataset, or None."""
        return None if self.spec.exact_tangent is None else self.spec.exact_tangent(self.split)
