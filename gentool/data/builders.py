"""One builder per data kind: what every loader of images, or of translation pairs, does
besides reading its pixels (checks, the normal class, the data description, the splits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gentool.data.base import (
    MASKS,
    DataInfo,
    DataKind,
    DataOptions,
    Direction,
    Preprocessing,
    parse_direction,
)
from gentool.data.images import read_header
from gentool.data.masks import MaskedImageFiles
from gentool.data.sources import (
    ImageFiles,
    SplitSource,
    TensorImages,
    checked_channels,
    checked_hw,
    checked_size,
    normal_class_index,
)
from gentool.errors import UserError

__all__ = ["ImageSplit", "PairShape", "file_levels", "image_source", "pair_source"]


def file_levels(files: Sequence[Path]) -> int:
    """The quantisation levels of a set of image files: those of the deepest one.

    Reads every header, so a bad file is named now. The maximum loses nothing: pixels load
    as ``value / (2**bits - 1)``, and ``2**a - 1`` divides ``2**b - 1`` when ``a`` divides
    ``b``, so 1-bit and 8-bit values lie exactly on the 16-bit grid (8-bit ``v`` is
    ``257 v``) and on float's 2**24 levels. Beside a float image (2**24: float32's own
    resolution, in effect continuous) 16-bit values are kept to within float32 rounding.
    """
    return max((read_header(file).levels for file in files), default=256)


#: One split before loading: its images (integer pixel values ``[N, H, W]`` or
#: ``[N, C, H, W]``, or image files) and each image's class label (-1: none).
ImageSplit = tuple[torch.Tensor | Sequence[Path], Sequence[int] | torch.Tensor]


def image_source(
    options: DataOptions,
    splits: Mapping[str, ImageSplit],
    *,
    source: str,
    levels: int | None = None,
    class_names: tuple[str, ...] = (),
    normal_class: str | None = None,
    layout: str | None = None,
    split: Mapping[str, Any] | None = None,
    masks: Mapping[str, Sequence[Path | None]] | None = None,
) -> SplitSource:
    """An ``images`` source from its splits: what every image loader does but read pixels.

    ``--normal-class`` (else ``normal_class``, MVTec's ``good``) keeps that class only in
    the ``"train"`` split. ``--channels`` and the size default to the first training
    image's. In-memory images hold the integers ``0 .. levels - 1`` and are resized only
    when the size asked differs; files are resized whenever theirs differs (any of them
    may), and their ``levels`` are those of the deepest (:func:`file_levels`). ``layout``
    and ``split`` (how a test split was held out, if it was) go into the description.
    ``masks`` gives, for test-like splits of files, each image's ground-truth mask file
    (None: a normal image); those splits give ``(image, label, mask)`` items, and the
    description says ``"masks": "ground_truth"``.
    """
    masks = dict(masks or {})
    if "train" in masks:
        raise ValueError("training splits carry no masks")
    normal_name = normal_class if options.normal_class is None else options.normal_class
    normal = normal_class_index(normal_name, class_names, source)
    in_memory = isinstance(next(iter(splits.values()))[0], torch.Tensor)
    if levels is None:  # every file, filtered-out classes too: --normal-class keeps levels
        levels = file_levels([file for files, _ in splits.values() for file in files])
    splits = dict(splits)
    if normal is not None and "train" in splits:
        splits["train"] = _of_class(*splits["train"], normal)
        if not len(splits["train"][1]):
            raise UserError(f"{source}: no training images of class {class_names[normal]!r}")
    first = splits.get("train", next(iter(splits.values())))[0]
    if in_memory:
        native = (1 if first.dim() == 3 else first.shape[1], *first.shape[-2:])
    else:
        header = read_header(first[0])
        native = (header.channels, header.height, header.width)
    channels = checked_channels(options, native[0])
    size = checked_hw(options, tuple(native[1:]))
    resampled = not in_memory or size != tuple(native[1:])
    details: dict[str, Any] = {"antialias": resampled}
    if not resampled:
        details["interpolation"] = None  # nothing is resampled: written as null, as ever
    if in_memory:
        details["scale"] = f"value / {levels - 1}"
    else:
        details["range"] = [0.0, 1.0]
    if layout is not None:
        details["layout"] = layout
    if split is not None:
        details["split"] = dict(split)
    if masks:
        details["masks"] = MASKS
    preprocessing = Preprocessing(
        channels=channels,
        resize=size,
        interpolation="bilinear" if resampled else None,
        details=details,
    )
    info = DataInfo(
        kind=DataKind.IMAGES,
        channels=channels,
        height=size[0],
        width=size[1],
        levels=levels,
        source=source,
        normal_class=class_names[normal] if normal is not None else None,
        class_names=class_names,
        preprocessing=preprocessing,
    )
    return SplitSource(
        info, {name: _images(*items, info, masks.get(name)) for name, items in splits.items()}
    )


def _of_class(images: Any, labels: Any, label: int) -> ImageSplit:
    labels = torch.as_tensor(labels, dtype=torch.long)
    keep = torch.nonzero(labels == label).flatten()
    if isinstance(images, torch.Tensor):
        return images[keep], labels[keep]
    return [images[i] for i in keep.tolist()], labels[keep].tolist()


def _images(
    images: Any, labels: Any, info: DataInfo, masks: Sequence[Path | None] | None = None
) -> Dataset:
    """The dataset of one split, prepared as ``info.preprocessing`` says."""
    prep = info.preprocessing
    if isinstance(images, torch.Tensor):
        if masks is not None:
            raise ValueError("masks are read beside image files, not in-memory images")
        resize = prep.resize if prep.interpolation else None
        return TensorImages(images, labels, info.levels - 1, prep.channels, resize)
    if masks is not None:
        return MaskedImageFiles(
            images, labels, masks, prep.channels, prep.resize, prep.interpolation
        )
    return ImageFiles(images, labels, prep.channels, prep.resize, prep.interpolation)


@dataclass(frozen=True)
class PairShape:
    """What a translation loader was asked for, checked: square side, channels, direction."""

    size: int
    channels: int
    direction: Direction

    @property
    def swap(self) -> bool:
        """Whether A and B trade places (``--direction b2a``)."""
        return self.direction is Direction.B2A

    @classmethod
    def checked(cls, options: DataOptions, default_size: int) -> PairShape:
        """``--direction``, ``--channels`` (RGB by default) and ``--image-size``, checked."""
        direction = parse_direction(options.direction)
        channels = checked_channels(options, 3)
        return cls(checked_size(options, default_size), channels, direction)


def pair_source(
    kind: DataKind,
    shape: PairShape,
    splits: Mapping[str, Any],
    *,
    source: str,
    resize: tuple[int, int] | None = None,
    **details: Any,
) -> SplitSource:
    """An ``unpaired`` or ``paired`` source: ``splits`` (items ``{"A", "B", ...}`` in [0, 1])
    described by ``shape``, ``resize`` and the ``details`` not None (layout, augmentation)."""
    described = {key: value for key, value in details.items() if value is not None}
    preprocessing = Preprocessing(
        channels=shape.channels,
        resize=resize,
        direction=shape.direction,
        details={**described, "range": [0.0, 1.0]},
    )
    info = DataInfo(
        kind=kind,
        channels=shape.channels,
        height=shape.size,
        width=shape.size,
        levels=256,
        source=source,
        preprocessing=preprocessing,
    )
    return SplitSource(info, dict(splits))
