"""Registers gentool's named datasets: digits, MNIST, the CycleGAN/pix2pix sets, toy shapes,
the ``defects`` set and MVTec AD's categories.

Light: loaders are named as ``"module:function"`` and imported on first call, so listing
the datasets never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gentool
from gentool.data import catalog, mvtec
from gentool.data.base import DatasetEntry
from gentool.family import DataKind

__all__ = ["register_datasets"]


class _Lazy:
    """Calls ``module:function`` (imported on first call) with fixed leading arguments."""

    def __init__(self, target: str, *args: Any) -> None:
        self.target, self.args = target, args
        self._function: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        if self._function is None:
            module, _, attr = self.target.partition(":")
            self._function = getattr(importlib.import_module(module), attr)
        return self._function(*self.args, *args)

    def __repr__(self) -> str:
        bound = ", ".join(map(repr, self.args))
        return f"<lazy {self.target}({bound}{', ' if bound else ''}...)>"


def _builtin_entries() -> list[DatasetEntry]:
    return [
        DatasetEntry(
            "digits",
            DataKind.IMAGES,
            "8x8 handwritten digits from scikit-learn (UCI), built in, 10 classes",
            "1,797 images",
            _Lazy("gentool.data.digits:load"),
        ),
        DatasetEntry(
            "mnist",
            DataKind.IMAGES,
            "28x28 handwritten digits through torchvision, 10 classes",
            "70,000 images, 12 MB download",
            _Lazy("gentool.data.torchvision_sets:load", "mnist"),
            _Lazy("gentool.data.torchvision_sets:is_cached", "mnist"),
        ),
        DatasetEntry(
            "fashion-mnist",
            DataKind.IMAGES,
            "28x28 Zalando clothing images through torchvision, 10 classes",
            "70,000 images, 30 MB download",
            _Lazy("gentool.data.torchvision_sets:load", "fashion-mnist"),
            _Lazy("gentool.data.torchvision_sets:is_cached", "fashion-mnist"),
        ),
        DatasetEntry(
            "toy-shapes",
            DataKind.UNPAIRED,
            "red discs <-> blue squares, drawn on the fly (offline demo)",
            "256 + 256 images",
            _Lazy("gentool.data.procedural:load"),
        ),
        DatasetEntry(
            "toy-shapes-paired",
            DataKind.PAIRED,
            "shape outline -> filled shape pairs, drawn on the fly (offline demo)",
            "256 pairs",
            _Lazy("gentool.data.procedural:load_paired"),
        ),
        DatasetEntry(
            "defects",
            DataKind.IMAGES,
            "woven textures with scratches, holes and stains, exact defect masks, drawn on "
            "the fly (offline anomaly demo)",
            "200 train, 120 test images (60 defective)",
            _Lazy("gentool.data.defects:load"),
        ),
    ]


def _mvtec_entries() -> list[DatasetEntry]:
    return [
        DatasetEntry(
            category.dataset,
            DataKind.IMAGES,
            category.summary,
            category.size,
            _Lazy("gentool.data.mvtec:load", category.name),
            _Lazy("gentool.data.mvtec:is_cached", category.name),
        )
        for category in mvtec.CATEGORIES.values()
    ]


def _catalog_entries() -> list[DatasetEntry]:
    return [
        DatasetEntry(
            archive.name,
            archive.kind,
            archive.summary,
            archive.size,
            _Lazy("gentool.data.catalog:load", archive.name),
            _Lazy("gentool.data.catalog:is_cached", archive.name),
        )
        for archive in catalog.ARCHIVES.values()
    ]


@gentool.hookimpl
def register_datasets(register: Callable[[DatasetEntry], None]) -> None:
    """Register every named dataset that ships with gentool."""
    for entry in (*_builtin_entries(), *_catalog_entries(), *_mvtec_entries()):
        register(entry)
