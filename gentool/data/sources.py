"""Shared building blocks of data sources: named splits, image datasets, the fixed test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gentool.data.base import DataInfo, DataOptions, DataSource
from gentool.data.images import load_image, resize_image, to_channels
from gentool.errors import NoClasses, UserError

__all__ = [
    "FIXED_SPLIT",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "ImageFiles",
    "SplitSource",
    "TensorImages",
    "checked_channels",
    "checked_hw",
    "checked_size",
    "fixed_split",
    "normal_class_index",
]

#: Share of a data set held out as the test split when the data has no test split of its own.
TEST_FRACTION = 0.2
#: The held-out split never depends on ``--seed``: a model scored with another seed must see
#: the same test images it was not trained on.
SPLIT_SEED = 0
#: How :func:`fixed_split` held out a test split, in a data description.
FIXED_SPLIT = {"test_fraction": TEST_FRACTION, "seed": SPLIT_SEED}


class SplitSource(DataSource):
    """A data source made of named splits (``"train"``, ``"test"``, ...), each a torch dataset."""

    def __init__(self, info: DataInfo, splits: dict[str, Any]) -> None:
        self.info = info
        self._splits = dict(splits)

    def split(self, name: str) -> Any:
        if name not in self._splits:
            have = ", ".join(self._splits) or "none"
            where = self.info.source or "this data set"
            raise UserError(f"{where} has no {name!r} split; it has: {have}")
        return self._splits[name]

    def splits(self) -> tuple[str, ...]:
        return tuple(self._splits)

    def set_epoch(self, epoch: int) -> None:
        for dataset in self._splits.values():
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)


class TensorImages(Dataset):
    """Images held in memory (any dtype, divided by ``scale``) with integer labels.

    Items are ``(image [C, H, W] float in [0, 1], label int)``; conversion to ``channels``
    and resizing to ``size`` happen per item, so a uint8 set stays small in memory.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        scale: float = 1.0,
        channels: int | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.scale = float(scale)
        self.channels = channels
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].to(torch.float32) / self.scale
        if self.channels is not None:
            image = to_channels(image, self.channels)
        if self.size is not None:
            image = resize_image(image, self.size)
        return image, int(self.labels[index])


class ImageFiles(Dataset):
    """Image files loaded on demand: items ``(image [C, H, W], label int)``.

    ``paths`` stays public so a caller can name its outputs after the inputs.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int] | None = None,
        channels: int = 3,
        size: tuple[int, int] | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.labels = torch.as_tensor(
            list(labels) if labels is not None else [-1] * len(self.paths), dtype=torch.long
        )
        if len(self.labels) != len(self.paths):
            raise ValueError("paths and labels differ in length")
        self.channels = channels
        self.size = size
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.paths[index], self.channels)
        if self.size is not None:
            image = resize_image(image, self.size, self.interpolation)
        return image, int(self.labels[index])


def fixed_split(
    labels: Sequence[int], test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: a stratified split with a fixed seed (:data:`SPLIT_SEED`).

    Stratified by label when every class has at least two members and the test share can
    hold one of each; otherwise a plain shuffled split. Fewer than two items: all train.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    if len(labels) < 2:
        return indices, indices[:0]
    classes, counts = np.unique(labels, return_counts=True)
    n_test = int(np.ceil(test_fraction * len(labels)))
    stratify = (
        labels
        if len(classes) > 1
        and counts.min() >= 2
        and len(classes) <= min(n_test, len(labels) - n_test)
        else None
    )
    train, test = train_test_split(
        indices, test_size=test_fraction, random_state=SPLIT_SEED, stratify=stratify
    )
    return np.sort(train), np.sort(test)


def normal_class_index(
    normal_class: str | None, class_names: Sequence[str], source: str
) -> int | None:
    """Index of the ``--normal-class`` (a class name, or its index as text) in ``class_names``."""
    if normal_class is None:
        return None
    names = list(class_names)
    if not names:
        raise NoClasses(
            f"{source} has no classes, so --normal-class cannot apply; "
            "give a folder with one subfolder per class"
        )
    if normal_class in names:
        return names.index(normal_class)
    if normal_class.isdigit() and int(normal_class) < len(names):
        return int(normal_class)
    raise UserError(
        f"--normal-class {normal_class!r} is not a class of {source}; classes: {', '.join(names)}"
    )


def checked_channels(options: DataOptions, default: int) -> int:
    """``--channels`` (1 or 3), or ``default`` when not given."""
    channels = default if options.channels is None else options.channels
    if channels not in (1, 3):
        raise UserError(f"--channels must be 1 (grey) or 3 (RGB), not {channels}")
    return channels


def checked_size(options: DataOptions, default: int) -> int:
    """The side of a square data set: ``--image-size`` (or a square ``image_hw``), else
    ``default``; for sources that make square images only."""
    if options.image_hw is not None:
        height, width = checked_hw(options, (default, default))
        if height != width:
            raise UserError(f"this data set has square images only, not {height}x{width}")
        return height
    if options.image_size is None:
        return default
    if options.image_size < 1:
        raise UserError(
            f"--image-size must be a positive number of pixels, not {options.image_size}"
        )
    return options.image_size


def checked_hw(options: DataOptions, default: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) fed to the model: ``image_hw``, else an ``--image-size`` square,
    else ``default`` (the data's own)."""
    if options.image_hw is None:
        if options.image_size is None:
            return default
        side = checked_size(options, 0)
        return side, side
    height, width = (int(v) for v in options.image_hw)
    if height < 1 or width < 1:
        raise UserError(f"the image size must be positive, not {height}x{width}")
    return height, width
