"""``digits``: scikit-learn's 8x8 handwritten digits, built in and offline.

1,797 grey images with integer values 0..16 (so ``levels = 17``), loaded as value / 16 in
[0, 1]. The test split is fixed: ``train_test_split(test_size=0.2, stratify=labels,
random_state=0)`` gives 1,437 train and 360 test images, the same whatever ``--seed`` is.
``--normal-class K`` keeps only digit K in the train split (the test split keeps all ten,
for anomaly scoring); ``--image-size`` other than 8 resizes (bilinear, antialiased).

Example:
    >>> from gentool.data.base import DataOptions
    >>> source = load(DataOptions(normal_class="3"))
    >>> source.info.shape, source.info.levels, len(source.split("test"))
    ((1, 8, 8), 17, 360)
"""

from __future__ import annotations

from pathlib import Path

import torch

from gentool.data.base import DataInfo, DataOptions
from gentool.data.sources import (
    SPLIT_SEED,
    TEST_FRACTION,
    SplitSource,
    TensorImages,
    checked_channels,
    checked_hw,
    normal_class_index,
)
from gentool.family import DataKind

__all__ = ["CLASS_NAMES", "LEVELS", "load"]

CLASS_NAMES = tuple(str(d) for d in range(10))
LEVELS = 17  # pixel values are the integers 0..16


def load(options: DataOptions, root: Path | None = None) -> SplitSource:
    """The ``digits`` data source; ``root`` is unused (the data ships with scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.uint8)  # [1797, 8, 8], 0..16
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    train, test = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=TEST_FRACTION,
        stratify=digits.target,
        random_state=SPLIT_SEED,
    )
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    normal = normal_class_index(options.normal_class, CLASS_NAMES, "digits")
    if normal is not None:
        train = train[labels[train] == normal]

    channels = checked_channels(options, 1)
    size = checked_hw(options, (8, 8))
    resize = None if size == (8, 8) else size
    preprocessing = {
        "scale": "value / 16",
        "resize": list(size),
        "interpolation": "bilinear" if resize else None,
        "antialias": bool(resize),
        "channels": channels,
        "split": {"test_fraction": TEST_FRACTION, "seed": SPLIT_SEED, "stratified": True},
    }
    info = DataInfo(
        kind=DataKind.IMAGES,
        channels=channels,
        height=size[0],
        width=size[1],
        levels=LEVELS,
        source="digits",
        normal_class=CLASS_NAMES[normal] if normal is not None else None,
        class_names=CLASS_NAMES,
        preprocessing=preprocessing,
    )
    splits = {
        name: TensorImages(images[index], labels[index], LEVELS - 1, channels, resize)
        for name, index in (("train", train), ("test", test))
    }
    return SplitSource(info, splits)
