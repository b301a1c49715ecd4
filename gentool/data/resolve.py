"""What ``--data NAME|DIR`` means: a folder, read in the layout the family needs, or a name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gentool.data.base import DataOptions, DatasetEntry, DataSource
from gentool.errors import UserError
from gentool.family import DataKind
from gentool.progress import note

__all__ = ["load_path", "resolve_data", "resolve_images"]

_KIND_WORDS = {
    DataKind.IMAGES: "images (one set, with optional classes)",
    DataKind.UNPAIRED: "unpaired A and B sets",
    DataKind.PAIRED: "paired A -> B images",
}


def resolve_data(
    text: str, kind: DataKind, options: DataOptions, datasets: dict[str, DatasetEntry]
) -> DataSource:
    """The data source for ``--data text``, for a family that trains on ``kind`` data.

    An existing folder is read by the loader for ``kind`` (layouts detected, see
    :mod:`gentool.data.folders` and :mod:`gentool.data.translation`); otherwise ``text``
    must name a registered dataset of that kind. A folder wins over a dataset of the same
    name, as a local folder does in Hugging Face's ``load_dataset``: ``--data mydir`` must
    never turn into a download because a plugin registered ``mydir``. The shadowing is
    never silent: a note on stderr when the folder is used, and an error naming both
    readings when the folder holds no images. A file is never data, so a file named like a
    dataset does not shadow it. A paired name given to an unpaired family resolves to its
    ``<name>-unpaired`` twin when one is registered (the CycleGAN version of ``facades``,
    ``maps``, ``cityscapes``).
    """
    path = Path(text).expanduser()
    if path.is_dir():
        if text in datasets:
            return _load_shadowing_folder(path, text, kind, options)
        return load_path(path, kind, options)
    if path.exists() and text not in datasets:
        raise UserError(f"--data {text}: a file; give a folder of images or a dataset name")
    entry = datasets.get(text)
    if entry is None:
        named = ", ".join(sorted(datasets)) or "none registered"
        # A name in a family of datasets (mvtec-ad/bottle) has a slash too: a mistyped one,
        # or the family's own name, lists its members rather than sounding like a folder.
        family = text.split("/", 1)[0] + "/"
        kin = sorted(n for n in datasets if n.startswith(family))
        if kin:
            raise UserError(f"unknown dataset {text!r}; {family}... datasets: {', '.join(kin)}")
        looks_like_path = any(sep in text for sep in ("/", "\\")) or text.startswith((".", "~"))
        if looks_like_path:
            raise UserError(f"no folder {text}; give an existing folder or a dataset name")
        raise UserError(f"unknown dataset {text!r}; named datasets: {named}; or give a folder")
    if entry.kind is not kind:
        twin = datasets.get(f"{text}-{kind.value}")
        if twin is not None and twin.kind is kind:
            note(f"note: using {twin.name}, the {kind.value} version of {text}")
            entry = twin
        else:
            fitting = ", ".join(sorted(n for n, e in datasets.items() if e.kind is kind))
            raise UserError(
                f"dataset {text!r} is {_KIND_WORDS[entry.kind]}, but this family needs "
                f"{_KIND_WORDS[kind]}; {kind.value} datasets: {fitting or 'none'}"
            )
    source = entry.load(options, entry.root())
    if source.info.kind is not kind:  # a plugin's loader disagreeing with its own entry
        raise UserError(
            f"dataset {entry.name!r} (plugin {entry.plugin or '?'}) loaded "
            f"{source.info.kind.value} data, but this family needs {kind.value} data"
        )
    return source


def _load_shadowing_folder(
    path: Path, text: str, kind: DataKind, options: DataOptions
) -> DataSource:
    """The folder ``text``, which a dataset also names: loaded with a note, or explained."""
    here = os.path.join(os.curdir, text)
    try:
        source = load_path(path, kind, options)
    except UserError as err:
        if _has_images(path):
            raise
        raise UserError(
            f"{text!r} is a folder here with no images, and also the name of a dataset; "
            f"to use the dataset, run from another folder or remove or rename {here}"
        ) from err
    note(
        f"note: using the folder {here}, not the dataset {text!r}; to use the dataset, "
        f"run from another folder or rename {here}"
    )
    return source


def _has_images(folder: Path) -> bool:
    from gentool.data.images import is_image_file

    return any(is_image_file(p) and p.is_file() for p in folder.rglob("*"))


def load_path(path: Path, kind: DataKind, options: DataOptions) -> DataSource:
    """A folder read as ``kind`` data: image layouts for images, A/B layouts otherwise."""
    if kind is DataKind.IMAGES:
        from gentool.data.folders import load_folder

        return load_folder(Path(path), options)
    from gentool.data.translation import load_translation_folder

    return load_translation_folder(Path(path), kind, options)


def resolve_images(path: Path, options: DataOptions) -> tuple[Any, DataSource]:
    """``--images DIR`` for scoring: every image in the folder, and the source describing them.

    Returns the dataset (items ``(image, label)``, a ``paths`` attribute) and its source,
    whose ``anomaly_labels`` works when the folder has class subfolders that include
    ``options.normal_class`` (an MVTec ``test/`` folder: ``good/``, ``crack/``, ...).
    """
    from gentool.data.folders import load_all_images

    source = load_all_images(Path(path), options)
    return source.split("all"), source
