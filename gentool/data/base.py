"""The data contract: what a data source gives the engine, and what a model learns of its data.

Light module (no torch import): the CLI and the plugin registry use it at start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from gentool.errors import UserError

__all__ = [
    "DataInfo",
    "DataKind",
    "DataOptions",
    "DataSource",
    "DatasetEntry",
    "Direction",
    "Preprocessing",
    "MASKS",
    "cache_dir",
    "has_masks",
    "parse_direction",
]

#: ``Preprocessing.details["masks"]`` of a source whose test splits carry ground-truth masks.
MASKS = "ground_truth"


class DataKind(StrEnum):
    """The shape of the data a family trains on."""

    IMAGES = "images"  # single images, with optional class/anomaly labels (flows)
    UNPAIRED = "unpaired"  # two unaligned sets A and B (CycleGAN)
    PAIRED = "paired"  # aligned A -> B pairs (Pix2Pix)


class Direction(StrEnum):
    """Which side of translation data is the input: ``a2b`` (A in, B out) or ``b2a``."""

    A2B = "a2b"
    B2A = "b2a"


def parse_direction(text: str | None) -> Direction:
    """``--direction``: ``a2b`` or ``b2a`` in any case, or the reference's ``AtoB``/``BtoA``.

    None is the default, ``a2b``.
    """
    if text is None:
        return Direction.A2B
    value = str(text).lower().replace("to", "2")
    if value not in tuple(Direction):
        raise UserError(f"--direction: {text!r} is not a2b or b2a")
    return Direction(value)


def cache_dir() -> Path:
    """Where downloaded datasets live: ``$GENTOOL_HOME`` or ``~/.cache/gentool``."""
    home = os.environ.get("GENTOOL_HOME")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if home:
        path, named = Path(home).expanduser(), f"GENTOOL_HOME={home}"
    else:
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path, named = base / "gentool", f"the cache folder {base / 'gentool'}"
    # A file where the cache or a folder above it should be: one line, before a download.
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise UserError(f"{named} {what}; point GENTOOL_HOME at a folder")
    return path


@dataclass(frozen=True)
class Preprocessing:
    """How a source prepared its images for the model: ``DataInfo.preprocessing``.

    The fields that code reads are typed: ``channels`` (1 or 3), ``resize`` (the (height,
    width) fed to the model; None where the source describes its resizing per split, as
    translation folders do in ``details["train"]`` and ``details["test"]``),
    ``interpolation`` and ``direction`` (translation data only). ``details`` holds the rest
    of the description as written: ``layout``, ``scale`` or ``range``, ``antialias``,
    ``split``, the ``train``/``test`` augmentation, ``generated``, a plugin's own keys, and
    a typed key written as null. The JSON (:meth:`to_dict`) has the same keys and values as
    the plain dicts of checkpoints written before this class, which :meth:`from_dict` reads:
    a value that is not of a field's type stays in ``details``, so any dict round-trips.

    Example:
        >>> p = Preprocessing.from_dict({"channels": 1, "resize": [8, 8], "layout": "flat"})
        >>> p.resize, p.details, p.to_dict() == {"channels": 1, "resize": [8, 8], "layout": "flat"}
        ((8, 8), {'layout': 'flat'}, True)
    """

    channels: int | None = None
    resize: tuple[int, int] | None = None
    interpolation: str | None = None
    direction: Direction | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A typed value beside a details entry of the same key would make the JSON ambiguous.
        clash = [key for key in _TYPED if getattr(self, key) is not None and key in self.details]
        if clash:
            raise ValueError(f"preprocessing: {', '.join(clash)} both typed and in details")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """The description in a checkpoint's ``gentool.data`` JSON (or a plugin's dict)."""
        typed: dict[str, Any] = {}
        details: dict[str, Any] = {}
        for key, value in data.items():
            parsed = _TYPED[key](value) if key in _TYPED else None
            if parsed is None:
                details[key] = value
            else:
                typed[key] = parsed
        return cls(**typed, details=details)

    def to_dict(self) -> dict[str, Any]:
        """The description as JSON values, keys and values as checkpoints have always held."""
        typed = {
            "channels": self.channels,
            "resize": list(self.resize) if self.resize else None,
            "interpolation": self.interpolation,
            "direction": self.direction.value if self.direction else None,
        }
        return {**self.details, **{k: v for k, v in typed.items() if v is not None}}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


#: How each typed field of :class:`Preprocessing` reads its JSON value; None: not of its type.
_TYPED: dict[str, Callable[[Any], Any]] = {
    "channels": lambda v: v if _whole(v) else None,
    "resize": lambda v: (
        tuple(v) if isinstance(v, list | tuple) and len(v) == 2 and all(map(_whole, v)) else None
    ),
    "interpolation": lambda v: v if isinstance(v, str) else None,
    "direction": lambda v: Direction(v) if v in tuple(Direction) else None,
}


@dataclass
class DataOptions:
    """How the user asked to load data (CLI flags); ``None`` means the source's own value."""

    image_size: int | None = None  # final square size fed to the model
    # The exact (height, width) fed to the model; wins over image_size. Not a CLI option:
    # score and translate set it from a checkpoint, whose images need not be square.
    image_hw: tuple[int, int] | None = None
    channels: int | None = None  # 1 (grayscale) or 3 (RGB)
    load_size: int | None = None  # translation: resize to this before the random crop
    flip: bool = True  # translation: random horizontal flips in training
    normal_class: str | None = None  # anomaly detection: train on this class only
    direction: str = Direction.A2B  # paired data: which side is the input (parse_direction)
    seed: int = 0  # for the fixed train/validation split and augmentation

    @classmethod
    def from_info(cls, info: DataInfo, normal_class: str | None = None) -> DataOptions:
        """Options that read data the way the model described by ``info`` saw its own.

        Its (height, width), never squared, its channels and direction, and its normal class
        unless ``normal_class`` names another. A plugin's loader may read ``image_size``
        only: for a non-square model it then gives its own size, which the model resizes.
        """
        return cls(
            image_size=info.height if info.height == info.width else None,
            image_hw=(info.height, info.width),
            channels=info.channels,
            normal_class=normal_class if normal_class is not None else info.normal_class,
            direction=info.direction,
            seed=0,
        )


@dataclass
class DataInfo:
    """What a model knows about its data; saved in the checkpoint's metadata.

    ``levels`` is the number of quantisation levels of a pixel value (256 for 8-bit images,
    17 for scikit-learn digits), which flows need for dequantisation and bits/dim.
    ``preprocessing`` may be given as a plain dict (a plugin's own keys), read by
    :meth:`Preprocessing.from_dict`.
    """

    kind: DataKind
    channels: int
    height: int
    width: int
    levels: int = 256
    source: str = ""
    normal_class: str | None = None
    class_names: tuple[str, ...] = ()
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def __post_init__(self) -> None:
        if isinstance(self.preprocessing, Mapping):
            self.preprocessing = Preprocessing.from_dict(self.preprocessing)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width

    @property
    def direction(self) -> Direction:
        """Translation data: which side was the input, ``a2b`` unless the description says."""
        return parse_direction(self.preprocessing.direction)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["kind"] = self.kind.value
        data["preprocessing"] = self.preprocessing.to_dict()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DataInfo:
        data = json.loads(text)
        data["kind"] = DataKind(data["kind"])
        for name in ("channels", "height", "width", "levels"):  # a tampered file's too
            value = data.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, not {value!r}")
        data["class_names"] = tuple(data.get("class_names", ()))
        preprocessing = data.get("preprocessing", {})
        if not isinstance(preprocessing, dict):
            raise TypeError(f"preprocessing must be a JSON object, not {preprocessing!r}")
        data["preprocessing"] = Preprocessing.from_dict(preprocessing)
        return cls(**data)


class DataSource:
    """A resolved data set: its description and its splits as torch datasets.

    Items of ``split(...)`` follow the batch formats in :mod:`gentool.model`: ``(image,
    label)`` for images (label -1 when unknown), ``{"A": image, "B": image}`` otherwise,
    images as float tensors in [0, 1], ``[C, H, W]``. Translation splits may also carry
    ``"A_path"``/``"B_path"`` strings. A test split of a source with ground-truth masks
    (:func:`has_masks`) gives ``(image, label, mask)``: ``mask`` a float tensor ``[1, H, W]``
    of 0 and 1 (1: a defective pixel) at the image's own height and width, all 0 for a
    normal image; training splits never carry masks.
    """

    info: DataInfo

    def split(self, name: str) -> Any:
        """The ``"train"`` or ``"test"`` split; raise UserError for a split it lacks."""
        raise NotImplementedError

    def splits(self) -> tuple[str, ...]:
        return ("train", "test")

    def set_epoch(self, epoch: int) -> None:
        """Re-seed per-epoch randomness (augmentation, unpaired B choice) for ``epoch``."""

    def anomaly_labels(self, labels: Any) -> Any:
        """0 for normal, 1 for anomaly, given class labels; None when it cannot tell."""
        normal = self.info.normal_class
        if normal is None or normal not in self.info.class_names:
            return None
        index = self.info.class_names.index(normal)
        return (labels != index).long()


def has_masks(data: Any, split: str = "test") -> bool:
    """Whether the items of ``data`` are ``(image, label, mask)``, told without loading one.

    ``data`` is a split (a dataset whose class says ``masks = True``, or a torch ``Subset``
    of one) or a :class:`DataSource`, whose ``split`` is asked (False when it has none).

    Example:
        >>> from gentool.data.digits import load
        >>> has_masks(load(DataOptions())), has_masks(load(DataOptions()).split("train"))
        (False, False)
    """
    if isinstance(data, DataSource):
        if split not in data.splits():
            return False
        data = data.split(split)
    while not hasattr(data, "masks") and hasattr(data, "dataset"):  # Subset and the like
        data = data.dataset
    return getattr(data, "masks", False) is True


@dataclass(frozen=True)
class DatasetEntry:
    """A named dataset as registered by a plugin (``gentool datasets`` lists these).

    Arguments:
        name: what users type after ``--data``.
        kind: images, unpaired or paired.
        summary: one line: what it is and where it comes from.
        size: a human-readable size ("1,797 images", "75 MB download").
        load: ``load(options, root) -> DataSource``; ``root`` is this dataset's cache folder.
            It downloads on first use when the dataset is not cached.
        is_cached: ``is_cached(root) -> bool``; None means always available (built in).
    """

    name: str
    kind: DataKind
    summary: str
    size: str
    load: Callable[[DataOptions, Path], DataSource]
    is_cached: Callable[[Path], bool] | None = None
    plugin: str = ""

    def root(self) -> Path:
        return cache_dir() / "datasets" / self.name

    def cached(self) -> bool:
        return True if self.is_cached is None else bool(self.is_cached(self.root()))
