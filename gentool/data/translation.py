"""Translation data from folders: unaligned A/B sets (CycleGAN) and aligned pairs (pix2pix).

Layouts, as the CycleGAN/pix2pix authors ship them:

- unpaired: ``trainA/ trainB/`` (+ ``testA/ testB/``, ``valA/ valB/``); or plain ``A/ B/``.
  Each A image meets a random B image, re-drawn every epoch; an epoch has
  ``max(len(A), len(B))`` items, as in the reference.
- paired, side by side: ``train/ test/ val/`` of AB images, A the left half, B the right.
- paired, separate files: ``A/ B/`` matched by file name (without extension), split into
  ``A/train``, ``B/train``, ... or ``train/A``, ``train/B``, ... or not split at all.

An unsplit folder gets a fixed 80/20 split (seed 0); a train split alone is all training.
Training items go through the reference preprocessing
(:class:`gentool.data.augment.Augment`), with the same crop and flip for both images of a
pair; other splits are only resized. ``--direction b2a`` swaps the roles of A and B.
Items: ``{"A": image, "B": image, "A_path": str, "B_path": str}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gentool.data.augment import Augment, default_load_size, item_generator
from gentool.data.base import DataKind, DataOptions
from gentool.data.builders import PairShape, pair_source
from gentool.data.images import list_images, load_image, read_header, subfolders
from gentool.data.sources import FIXED_SPLIT, SplitSource, fixed_split
from gentool.errors import UserError

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "PairedImages",
    "UnalignedImages",
    "load_translation_folder",
    "scan_paired",
    "scan_unaligned",
]

DEFAULT_IMAGE_SIZE = 256  # the reference's crop size
SPLIT_NAMES = ("train", "test", "val")
Pair = tuple[Path, Path | None]  # (A, B) files, or (AB, None) for one side-by-side image


class UnalignedImages(Dataset):
    """Two unaligned image sets; item ``i`` is A image ``i % len(A)`` and a B image.

    In training the B image is drawn at random for every (epoch, item); otherwise it is
    ``i % len(B)``, so evaluation is repeatable.
    """

    def __init__(
        self, a_paths: list[Path], b_paths: list[Path], augment: Augment, channels: int, seed: int
    ) -> None:
        self.a_paths, self.b_paths = list(a_paths), list(b_paths)
        self.augment, self.channels, self.seed = augment, channels, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(len(self.a_paths), len(self.b_paths))

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = item_generator(self.seed, self.epoch, index)
        a_path = self.a_paths[index % len(self.a_paths)]
        if self.augment.train:
            b_index = int(torch.randint(len(self.b_paths), (), generator=generator))
        else:
            b_index = index % len(self.b_paths)
        b_path = self.b_paths[b_index]
        # A and B are unrelated images, so each gets its own crop and flip.
        a = self.augment.apply(load_image(a_path, self.channels), self.augment.draw(generator))
        b = self.augment.apply(load_image(b_path, self.channels), self.augment.draw(generator))
        return {"A": a, "B": b, "A_path": str(a_path), "B_path": str(b_path)}


class PairedImages(Dataset):
    """Aligned pairs, from side-by-side AB files or from two files; one crop/flip per pair."""

    def __init__(
        self, pairs: list[Pair], augment: Augment, channels: int, seed: int, swap: bool = False
    ) -> None:
        self.pairs = list(pairs)
        self.augment, self.channels, self.seed, self.swap = augment, channels, seed, swap
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        first, second = self.pairs[index]
        if second is None:
            ab = load_image(first, self.channels)
            half = ab.shape[-1] // 2
            a, b = ab[..., :half], ab[..., half:]
            a_path = b_path = str(first)
        else:
            a, b = load_image(first, self.channels), load_image(second, self.channels)
            a_path, b_path = str(first), str(second)
        params = self.augment.draw(item_generator(self.seed, self.epoch, index))
        a, b = self.augment.apply(a, params), self.augment.apply(b, params)
        if self.swap:
            a, b, a_path, b_path = b, a, b_path, a_path
        return {"A": a, "B": b, "A_path": a_path, "B_path": b_path}


def scan_unaligned(root: Path) -> tuple[str, dict[str, tuple[list[Path], list[Path]]]]:
    """The layout name and, per split, the A and B image files of an unpaired folder."""
    dirs = {d.name: d for d in subfolders(root)}
    for split in SPLIT_NAMES:  # half a split would be dropped without a word
        halves = [f"{split}{side}" for side in "AB"]
        if sum(name in dirs for name in halves) == 1:
            have, lack = halves if halves[0] in dirs else halves[::-1]
            raise UserError(f"{root} has {have}/ but no {lack}/; give both, or neither")
    splits = {
        split: (_images(dirs[f"{split}A"]), _images(dirs[f"{split}B"]))
        for split in SPLIT_NAMES
        if f"{split}A" in dirs and f"{split}B" in dirs
    }
    if "train" in splits:
        return "unaligned", splits
    if "A" in dirs and "B" in dirs:
        return "unaligned-ab-folders", {"all": (_images(dirs["A"]), _images(dirs["B"]))}
    if "train" in dirs or list_images(root):
        raise UserError(
            f"{root} is a paired layout (AB images in train/); unpaired families need "
            "trainA/ and trainB/ folders (add -unpaired to a named data set, e.g. "
            "facades-unpaired)"
        )
    raise UserError(
        f"{root} has no trainA/ and trainB/ folders (nor A/ and B/); "
        "unpaired data needs one folder of images per domain"
    )


def scan_paired(root: Path) -> tuple[str, dict[str, list[Pair]]]:
    """The layout name and, per split, the image pairs of a paired folder."""
    dirs = {d.name: d for d in subfolders(root)}
    if "trainA" in dirs and "trainB" in dirs:
        raise UserError(
            f"{root} is an unpaired layout (trainA/, trainB/); paired families need AB images "
            "in train/ and test/, or A/ and B/ folders with matching file names"
        )
    if "A" in dirs and "B" in dirs:
        a_splits = {d.name for d in subfolders(dirs["A"])} & set(SPLIT_NAMES)
        b_splits = {d.name for d in subfolders(dirs["B"])} & set(SPLIT_NAMES)
        if "train" in a_splits & b_splits:
            shared = [s for s in SPLIT_NAMES if s in a_splits & b_splits]
            return "paired-folders", {s: _match(dirs["A"] / s, dirs["B"] / s) for s in shared}
        return "paired-folders", {"all": _match(dirs["A"], dirs["B"])}
    splits: dict[str, list[Pair]] = {}
    layout = "aligned"
    for split in (s for s in SPLIT_NAMES if s in dirs):
        inner = {d.name for d in subfolders(dirs[split])}
        if {"A", "B"} <= inner:
            splits[split], layout = _match(dirs[split] / "A", dirs[split] / "B"), "paired-folders"
        elif files := list_images(dirs[split]):
            splits[split] = [(p, None) for p in files]
    if "train" in splits:
        return layout, splits
    if files := list_images(root):
        return "aligned", {"all": [(p, None) for p in files]}
    raise UserError(
        f"no paired images in {root}: expected AB side-by-side images in train/ (and test/), "
        "or A/ and B/ folders with matching file names"
    )


def load_translation_folder(
    path: Path,
    kind: DataKind,
    options: DataOptions,
    *,
    source: str | None = None,
    check_files: bool = True,
) -> SplitSource:
    """An ``unpaired`` or ``paired`` data source from a folder (see the module docstring)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    name = source or str(root)
    shape = PairShape.checked(options, DEFAULT_IMAGE_SIZE)
    size, channels = shape.size, shape.channels
    load_size = default_load_size(size) if options.load_size is None else options.load_size
    train_aug = Augment(size, load_size, train=True, flip=options.flip)
    eval_aug = Augment(size, load_size, train=False)

    pairs: dict[str, list[Pair]] = {}
    if kind is DataKind.UNPAIRED:
        layout, found = scan_unaligned(root)
        made_split = "all" in found
        if made_split:
            a_all, b_all = found.pop("all")
            a_train, a_test = fixed_split([-1] * len(a_all))
            b_train, b_test = fixed_split([-1] * len(b_all))
            found["train"] = ([a_all[i] for i in a_train], [b_all[i] for i in b_train])
            found["test"] = ([a_all[i] for i in a_test], [b_all[i] for i in b_test])
        if shape.swap:
            found = {s: (b, a) for s, (a, b) in found.items()}
        files = [p for a, b in found.values() for p in (*a, *b)]
        datasets = {
            split: UnalignedImages(
                a, b, train_aug if split == "train" else eval_aug, channels, options.seed
            )
            for split, (a, b) in found.items()
            if a and b
        }
    elif kind is DataKind.PAIRED:
        layout, pairs = scan_paired(root)
        made_split = "all" in pairs
        if made_split:
            everything = pairs.pop("all")
            train, test = fixed_split([-1] * len(everything))
            pairs["train"] = [everything[i] for i in train]
            pairs["test"] = [everything[i] for i in test]
        files = [p for split in pairs.values() for pair in split for p in pair if p is not None]
        datasets = {
            split: PairedImages(
                items,
                train_aug if split == "train" else eval_aug,
                channels,
                options.seed,
                swap=shape.swap,
            )
            for split, items in pairs.items()
            if items
        }
    else:
        raise UserError(f"{name}: translation folders hold unpaired or paired data, not {kind}")

    if check_files:
        # An AB image is split down the middle; one a pixel wide has no B half to split off.
        side_by_side = {a for split in pairs.values() for a, b in split if b is None}
        for file in files:
            header = read_header(file)
            if file in side_by_side and header.width < 2:
                raise UserError(
                    f"{file} is {header.width} pixel wide, too narrow to hold A and B side by "
                    "side (A the left half, B the right)"
                )
    return pair_source(
        kind,
        shape,
        datasets,
        source=name,
        layout=layout,
        train=train_aug.describe(),
        test=eval_aug.describe(),
        split=FIXED_SPLIT if made_split else None,
    )


def _images(folder: Path) -> list[Path]:
    files = list_images(folder)
    if not files:
        raise UserError(f"no images in {folder}")
    return files


def _match(a_dir: Path, b_dir: Path) -> list[tuple[Path, Path]]:
    """Pairs of files with the same name (extension aside) in ``a_dir`` and ``b_dir``."""
    a_files, b_files = _by_stem(a_dir), _by_stem(b_dir)
    only_a = sorted(a_files.keys() - b_files.keys())
    only_b = sorted(b_files.keys() - a_files.keys())
    if only_a or only_b:
        raise UserError(
            f"paired folders {a_dir} and {b_dir} do not match: {_names(only_a)} only in A, "
            f"{_names(only_b)} only in B; every A image needs a B image of the same name"
        )
    return [(a_files[stem], b_files[stem]) for stem in sorted(a_files)]


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in _images(folder):
        if path.stem in files:
            raise UserError(
                f"{folder} has two images named {path.stem!r} ({files[path.stem].name}, "
                f"{path.name}); paired files are matched by name, so names must be unique"
            )
        files[path.stem] = path
    return files


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:5])
    return f"{len(names)} ({shown}{', ...' if len(names) > 5 else ''})"
