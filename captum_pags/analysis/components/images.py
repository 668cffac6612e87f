"""Image folders and torchvision datasets on disk, read one batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import AnalysisInputError
from .data import DataSource, _range, _scaled

__all__ = ["TORCHVISION_DATASETS", "ImageFolderData", "TorchvisionData"]


def _to_tensor() -> Any:
    from torchvision import transforms

    return transforms.ToTensor()


class _TorchDatasetSource(DataSource):
    """A data source over a map-style torchvision dataset ``self.dataset`` (read by a single-process ``DataLoader``)."""

    dataset: Any

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape of the first image."""
        return tuple(int(s) for s in self.dataset[0][0].shape)

    @property
    def num_classes(self) -> int | None:
        """Number of classes (of class folders, for an image folder)."""
        return len(self.dataset.classes)

    def batches(self, batch_size: int, max_examples: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches decoded from the dataset, in data units."""
        from torch.utils.data import DataLoader, Subset

        n = self.count(max_examples)
        loader = DataLoader(Subset(self.dataset, range(n)), batch_size=batch_size, shuffle=False, num_workers=0)
        try:
            for x, y in loader:
                yield _scaled(x, self.data_range), torch.as_tensor(y).long()
        except RuntimeError as err:
            if "stack expects each tensor to be equal size" in str(err):
                raise AnalysisInputError(
                    "the images do not all have the same size: resize them to one size first"
                ) from None
            raise


class ImageFolderData(_TorchDatasetSource):
    """Images in torchvision's ``ImageFolder`` layout, ``root/<class name>/<image>``, read a batch at a time.

    Classes are the sub-folder names in sorted order (label 0 is the first), as
    :class:`torchvision.datasets.ImageFolder` assigns them; pixels become ``[0, 1]`` floats
    (``ToTensor``), then ``data_range``. All images must have the same size.

    Parameters
    ----------
    root : str
        The folder.
    data_range : tuple of float
        Range the images are mapped to (default ``(0, 1)``).

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for c in ("cat", "dog"):
    ...     (root / c).mkdir()
    ...     Image.new("RGB", (8, 8)).save(root / c / "a.png")
    >>> data = ImageFolderData(str(root))
    >>> len(data), data.shape, data.num_classes
    (2, (3, 8, 8), 2)
    """

    kind = "image_folder"

    def __init__(self, root: str, data_range: Any = (0.0, 1.0)) -> None:
        if not Path(root).is_dir():
            raise AnalysisInputError(f"image folder {root!r} does not exist")
        from torchvision.datasets import ImageFolder

        try:
            self.dataset = ImageFolder(root, transform=_to_tensor())
        except (FileNotFoundError, RuntimeError) as err:
            raise AnalysisInputError(
                f"cannot read {root!r} as an image folder (root/<class>/<image>): {str(err).splitlines()[0]}"
            ) from None
        self.root, self.data_range = str(root), _range(data_range)

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "image_folder", "root": ..., "data_range": [lo, hi]}``."""
        return {"kind": self.kind, "root": self.root, "data_range": list(self.data_range)}


# ------------------------------------------------------------------------------------- torchvision
#: Datasets of ``torchvision.datasets`` that ``--data NAME:ROOT`` reads from disk, by name.
TORCHVISION_DATASETS: dict[str, str] = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
}


class TorchvisionData(_TorchDatasetSource):
    """A torchvision dataset already on disk, opened with ``download=False`` (nothing is downloaded).

    ``cifar10`` is :class:`torchvision.datasets.CIFAR10` ``(root, train=False)``; its training split
    is the reference set of tangent estimators.

    Parameters
    ----------
    name : str
        Key of :data:`TORCHVISION_DATASETS`.
    root : str
        The folder the dataset was downloaded to (e.g. holding ``cifar-10-batches-py``).
    split : {"test", "train"}
        Which split to analyse.
    data_range : tuple of float
        Range the images are mapped to (default ``(0, 1)``).

    Examples
    --------
    >>> TorchvisionData("cifar10", "no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_pags.analysis.errors.AnalysisInputError: cannot open cifar10 in 'no/such/folder' ...
    """

    kind = "torchvision"

    def __init__(self, name: str, root: str, split: str = "test", data_range: Any = (0.0, 1.0)) -> None:
        if name not in TORCHVISION_DATASETS:
            raise AnalysisInputError(
                f"Expected a torchvision dataset among {sorted(TORCHVISION_DATASETS)} but got {name!r}"
            )
        if split not in ("train", "test"):
            raise AnalysisInputError(f"Expected `split` to be 'train' or 'test' but got {split!r}")
        self.name_, self.root, self.split, self.data_range = name, str(root), split, _range(data_range)
        self.dataset = self._open(split == "train")

    def _open(self, train: bool) -> Any:
        import torchvision.datasets as tvd

        cls = getattr(tvd, TORCHVISION_DATASETS[self.name_])
        try:
            return cls(self.root, train=train, download=False, transform=_to_tensor())
        except (RuntimeError, FileNotFoundError, OSError) as err:
            raise AnalysisInputError(
                f"cannot open {self.name_} in {self.root!r} (download=False; is the dataset there?): "
                f"{str(err).splitlines()[0]}"
            ) from None

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "torchvision", "name": ..., "root": ..., "split": ..., "data_range": [lo, hi]}``."""
        return {
            "kind": self.kind,
            "name": self.name_,
            "root": self.root,
            "split": self.split,
            "data_range": list(self.data_range),
        }

    def reference(self, max_examples: int) -> Tensor | None:
        """Images of the training split when it is on disk, else None."""
        if self.split == "train":
            return None
        try:
            train = TorchvisionData(self.name_, self.root, "train", self.data_range)
        except AnalysisInputError:
            return None
        return torch.cat([x for x, _ in train.batches(256, min(len(train), max_examples))])
