"""Data sources of the analysis: embedded data, array files, image folders, torchvision datasets.

Every source yields batches of ``(x, y)``: float ``(n, C, H, W)`` images in the source's
``data_range`` (``[0, 1]`` unless stated) and ``(n,)`` integer labels. Nothing loads all ``N``
images into one tensor: files are memory-mapped where the format allows it, image folders and
torchvision datasets are read one batch at a time.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import AnalysisInputError

__all__ = ["ArrayFileData", "DataSource", "TensorData"]


def _range(value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise AnalysisInputError(
            f"Expected `data_range` to be a pair of numbers (low, high) but got {value!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise AnalysisInputError(f"Expected `data_range` to be finite with low < high but got ({low}, {high})")
    return (low, high)


class DataSource(ABC):
    """Where the analysed images and labels come from; streams them in batches.

    Subclasses set :attr:`kind` and implement :meth:`to_config`, :meth:`__len__`, :attr:`shape`
    and :meth:`batches`. :meth:`DataSource.from_config` rebuilds any source from its config.

    Attributes
    ----------
    data_range : tuple of float
        Range of the image values (``(0.0, 1.0)`` unless stated).
    name : str or None
        Name of an embedded dataset (its exact manifold is known), else None.

    Examples
    --------
    >>> data = DataSource.from_config({"kind": "embedded", "name": "digits16"})
    >>> [x.shape[0] for x, _ in data.batches(128, max_examples=300)]
    [128, 128, 44]
    """

    kind: ClassVar[str]
    data_range: tuple[float, float] = (0.0, 1.0)
    name: str | None = None

    @abstractmethod
    def to_config(self) -> dict[str, Any]:
        """A plain JSON-serialisable dict; :meth:`from_config` rebuilds the source from it."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DataSource:
        """Rebuild a data source from :meth:`to_config`'s dict (dispatched on ``config["kind"]``).

        Examples
        --------
        >>> DataSource.from_config({"kind": "embedded", "name": "digits16", "split": "test"}).shape
        (1, 16, 16)
        """
        from .embedded import EmbeddedData
        from .images import ImageFolderData, TorchvisionData

        kinds = {c.kind: c for c in (EmbeddedData, ArrayFileData, ImageFolderData, TorchvisionData)}
        config = dict(config)
        kind = config.pop("kind", None)
        if kind == TensorData.kind:
            return TensorData.from_config(config)
        if kind not in kinds:
            raise AnalysisInputError(f"Expected a data config with `kind` among {sorted(kinds)} but got {kind!r}")
        return kinds[kind](**config)

    @abstractmethod
    def __len__(self) -> int:
        """Number of examples."""

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """Per-example shape ``(C, H, W)`` (read from the first example or the file header)."""

    @property
    def num_classes(self) -> int | None:
        """Number of classes if the source knows it (folders, torchvision datasets), else None."""
        return None

    @abstractmethod
    def batches(self, batch_size: int, max_examples: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches of at most ``batch_size`` examples, the first ``max_examples`` in all."""

    def reference(self, max_examples: int) -> Tensor | None:
        """Up to ``max_examples`` training images for tangent estimators, or None without a training split."""
        return None

    def label_range(self) -> tuple[int, int] | None:
        """Smallest and largest label, when known without reading the images (else None)."""
        return None if self.num_classes is None else (0, self.num_classes - 1)

    def count(self, max_examples: int | None) -> int:
        """Number of examples analysed with ``max_examples``."""
        return len(self) if max_examples is None else min(len(self), max_examples)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "kind")
        return f"{type(self).__name__}({args})"


def _scaled(x: Tensor, data_range: tuple[float, float]) -> Tensor:
    """[0, 1] images (what torchvision's ``ToTensor`` gives) in ``data_range``."""
    low, high = data_range
    return x if (low, high) == (0.0, 1.0) else x * (high - low) + low


# ------------------------------------------------------------------------------------- array files
class ArrayFileData(DataSource):
    """Images ``x`` and labels ``y`` from a ``.npz`` (NumPy) or ``.pt`` (``torch.save`` of a dict) file.

    ``x`` is ``(N, C, H, W)`` (or ``(N, D)`` for flat features) in ``data_range``; ``.pt`` files
    are memory-mapped (``torch.load(mmap=True, weights_only=True)``), so only the batches in use
    are read. Arrays that look channels-last (``(N, H, W, C)``), integer images 0..255 declared as
    [0, 1], values outside ``data_range`` and non-integer labels are refused before any work.

    Parameters
    ----------
    path : str
        The file.
    data_range : tuple of float
        Range of the values of ``x`` (default ``(0, 1)``).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> f = tempfile.mkdtemp() + "/d.npz"
    >>> np.savez(f, x=np.zeros((3, 1, 4, 4), np.float32), y=np.array([0, 1, 2]))
    >>> ArrayFileData(f).shape
    (1, 4, 4)
    """

    kind = "file"

    def __init__(self, path: str, data_range: Any = (0.0, 1.0)) -> None:
        p = Path(path)
        if p.suffix not in (".npz", ".pt"):
            raise AnalysisInputError(f"Expected a data file ending in .npz or .pt but got {path!r}")
        if not p.is_file():
            raise AnalysisInputError(f"data file {path!r} does not exist")
        self.path, self.data_range = str(path), _range(data_range)
        self._x, self._y = self._open(p)
        self._check()

    def _open(self, p: Path) -> tuple[Tensor, Tensor]:
        if p.suffix == ".npz":
            import numpy as np

            try:
                with np.load(p, allow_pickle=False) as f:
                    if "x" not in f or "y" not in f:
                        raise AnalysisInputError(
                            f"Expected {self.path!r} to hold arrays 'x' and 'y' but got {sorted(f.files)}"
                        )
                    return torch.from_numpy(np.ascontiguousarray(f["x"])), torch.from_numpy(np.asarray(f["y"]))
            except (ValueError, OSError) as err:
                raise AnalysisInputError(f"cannot read {self.path!r}: {str(err).splitlines()[0]}") from None
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            raise AnalysisInputError(f"cannot read {self.path!r}: {str(err).splitlines()[0]}") from None
        if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
            raise AnalysisInputError(f"Expected {self.path!r} to hold a dict with tensors 'x' and 'y'")
        return torch.as_tensor(obj["x"]), torch.as_tensor(obj["y"])

    def _check(self) -> None:
        x, y = self._x, self._y
        if x.dim() < 2 or y.shape != (x.shape[0],):
            raise AnalysisInputError(
                f"Expected x of shape (N, ...) and y of shape (N,) in {self.path!r} but got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise AnalysisInputError(f"Expected integer labels y in {self.path!r} but got dtype {y.dtype}")
        if x.dim() == 3:
            raise AnalysisInputError(
                f"Expected x of shape (N, C, H, W) in {self.path!r} but got {tuple(x.shape)}: add a channel axis "
                "(x[:, None])"
            )
        if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            raise AnalysisInputError(
                f"Expected x in NCHW layout (N, C, H, W) but {self.path!r} holds {tuple(x.shape)}, which looks "
                "channels-last (N, H, W, C): save x.transpose(0, 3, 1, 2) (NumPy) or x.permute(0, 3, 1, 2) (torch)"
            )
        if x.is_complex() or x.dtype == torch.bool:
            raise AnalysisInputError(f"Expected real-valued images x in {self.path!r} but got dtype {x.dtype}")
        if x.numel() == 0:
            raise AnalysisInputError(f"Expected at least one example in {self.path!r} but x is empty")
        lo, hi = self.data_range
        # one pass over the (memory-mapped) file; cheap next to the analysis, and decided before it
        x_min, x_max = float(x.min()), float(x.max())
        if not (math.isfinite(x_min) and math.isfinite(x_max)):
            raise AnalysisInputError(f"Expected finite values in x of {self.path!r} but it holds NaN or inf")
        if not x.is_floating_point() and x_max > hi and (lo, hi) == (0.0, 1.0):
            raise AnalysisInputError(
                f"x in {self.path!r} holds integers up to {x_max:g} (0..255 images?) but data_range is [0, 1]: "
                "store x / 255 as floats, or state the range (--data-range 0,255)"
            )
        tol = 1e-6 * (hi - lo)
        if x_min < lo - tol or x_max > hi + tol:
            raise AnalysisInputError(
                f"x in {self.path!r} holds values in [{x_min:g}, {x_max:g}], outside data_range [{lo:g}, {hi:g}]: "
                "rescale the images or state their range (--data-range LOW,HIGH)"
            )

    def label_range(self) -> tuple[int, int] | None:
        """Smallest and largest label in the file."""
        return int(self._y.min()), int(self._y.max())

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "file", "path": ..., "data_range": [lo, hi]}``."""
        return {"kind": self.kind, "path": self.path, "data_range": list(self.data_range)}

    def __len__(self) -> int:
        return int(self._x.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape."""
        return tuple(int(s) for s in self._x.shape[1:])

    def batches(self, batch_size: int, max_examples: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield float ``(x, y)`` batches read from the file (integers converted exactly, never truncated)."""
        n = self.count(max_examples)
        dtype = self._x.dtype if self._x.is_floating_point() else torch.get_default_dtype()
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield self._x[start:stop].to(dtype), self._y[start:stop].long()


class TensorData(DataSource):
    """Images and labels the caller already holds as tensors (the Python API's ``images, labels``).

    They are the user's own data: a ``1x16x16`` tensor is not taken to be ``digits16`` (use
    :class:`EmbeddedData` for that). Integer images are converted to floats exactly.

    Parameters
    ----------
    images : Tensor
        ``(N, *shape)`` in ``data_range``.
    labels : Tensor
        ``(N,)`` integer labels.
    data_range : tuple of float
        Range of the images (default ``(0, 1)``).

    Examples
    --------
    >>> data = TensorData(torch.rand(5, 3, 4, 4), torch.arange(5))
    >>> [x.shape[0] for x, _ in data.batches(2)]
    [2, 2, 1]
    """

    kind = "tensors"

    def __init__(self, images: Tensor, labels: Tensor, data_range: Any = (0.0, 1.0)) -> None:
        if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
            raise AnalysisInputError(
                f"Expected `images` and `labels` to be tensors but got {type(images).__name__} and "
                f"{type(labels).__name__}"
            )
        if images.dim() < 2 or labels.shape != (images.shape[0],):
            raise AnalysisInputError(
                f"Expected images of shape (N, ...) and labels of shape (N,) but got {tuple(images.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise AnalysisInputError(f"Expected integer `labels` but got dtype {labels.dtype}")
        if images.shape[0] == 0:
            raise AnalysisInputError("Expected at least one example but `images` is empty")
        self.images, self.labels, self.data_range = images, labels, _range(data_range)

    def label_range(self) -> tuple[int, int] | None:
        """Smallest and largest label."""
        return int(self.labels.min()), int(self.labels.max())

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "tensors", "n": N, "shape": [...]}``: in-memory data are described, not stored."""
        return {"kind": self.kind, "n": len(self), "shape": list(self.shape), "data_range": list(self.data_range)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DataSource:
        """In-memory tensors cannot be rebuilt from a config."""
        raise AnalysisInputError("in-memory tensors cannot be rebuilt from a config: save them to a .pt file first")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape."""
        return tuple(int(s) for s in self.images.shape[1:])

    def batches(self, batch_size: int, max_examples: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield float ``(x, y)`` batches."""
        n = self.count(max_examples)
        dtype = self.images.dtype if self.images.is_floating_point() else torch.get_default_dtype()
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield self.images[start:stop].to(dtype), self.labels[start:stop].long()
