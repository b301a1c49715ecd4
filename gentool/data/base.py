"""The data contract: what a data source gives the engine, and what a model learns of its data.

Light module (no torch import): the CLI and the plugin registry use it at start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gentool.family import DataKind

__all__ = [
    "DataInfo",
    "DataOptions",
    "DataSource",
    "DatasetEntry",
    "cache_dir",
]


def cache_dir() -> Path:
    """Where downloaded datasets live: ``$GENTOOL_HOME`` or ``~/.cache/gentool``."""
    home = os.environ.get("GENTOOL_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gentool"


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
    direction: str = "a2b"  # paired data: which side is the input
    seed: int = 0  # for the fixed train/validation split and augmentation


@dataclass
class DataInfo:
    """What a model knows about its data; saved in the checkpoint's metadata.

    ``levels`` is the number of quantisation levels of a pixel value (256 for 8-bit images,
    17 for scikit-learn digits), which flows need for dequantisation and bits/dim.
    """

    kind: DataKind
    channels: int
    height: int
    width: int
    levels: int = 256
    source: str = ""
    normal_class: str | None = None
    class_names: tuple[str, ...] = ()
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width

    def to_json(self) -> str:
        data = asdict(self)
        data["kind"] = self.kind.value
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
        return cls(**data)


class DataSource:
    """A resolved data set: its description and its splits as torch datasets.

    Items of ``split(...)`` follow the batch formats in :mod:`gentool.model`: ``(image,
    label)`` for images (label -1 when unknown), ``{"A": image, "B": image}`` otherwise,
    images as float tensors in [0, 1], ``[C, H, W]``. Translation splits may also carry
    ``"A_path"``/``"B_path"`` strings.
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
