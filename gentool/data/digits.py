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

from gentool.data.base import DataOptions
from gentool.data.builders import image_source
from gentool.data.sources import FIXED_SPLIT, SPLIT_SEED, TEST_FRACTION, SplitSource

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
    splits = {
        name: (images[index], labels[index])
        for name, index in (("train", torch.as_tensor(train)), ("test", torch.as_tensor(test)))
    }
    return image_source(
        options,
        splits,
        source="digits",
        levels=LEVELS,
        class_names=CLASS_NAMES,
        split={**FIXED_SPLIT, "stratified": True},
    )
