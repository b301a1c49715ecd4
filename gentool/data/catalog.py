"""The CycleGAN and pix2pix authors' data sets: names, public URLs, and loading them once.

The URLs are those of the authors' download scripts (``datasets/download_cyclegan_dataset.sh``
and ``download_pix2pix_dataset.sh`` in junyanz/pytorch-CycleGAN-and-pix2pix):
``http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/<name>.zip`` (unpaired, ``trainA/
trainB/ testA/ testB/``) and ``http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/
<name>.tar.gz`` (paired, side-by-side AB images in ``train/ val/ test/``).

Names: ``facades``, ``maps`` and ``cityscapes`` exist in both collections. The plain name
is the paired pix2pix set (so ``gentool train pix2pix --data facades`` works) and the
CycleGAN set is ``<name>-unpaired``; an unpaired family given the plain name is pointed to
the ``-unpaired`` set by :func:`gentool.data.resolve.resolve_data`. Cityscapes cannot be
redistributed (its licence), so both cityscapes entries explain how to prepare it by hand.

Light at import (no torch): ``gentool datasets`` reads this table at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gentool.data.base import DataOptions, DataSource
from gentool.data.download import fetch_dataset, is_complete, mirror_url
from gentool.errors import UserError
from gentool.family import DataKind

__all__ = ["ARCHIVES", "ORIGIN", "Archive", "is_cached", "load"]

#: The authors' server; ``$GENTOOL_DATASET_MIRROR`` replaces it (see download.mirror_url).
ORIGIN = "http://efrosgans.eecs.berkeley.edu"


@dataclass(frozen=True)
class Archive:
    """One downloadable data set of the authors.

    ``train``, ``test`` and ``val`` count the images in the download's folders of that split:
    ``(A, B)`` for unpaired sets (``trainA/``, ``trainB/``), ``(pairs,)`` for paired ones.
    """

    name: str  # what users type after --data
    remote: str  # the file name on the authors' server, without extension
    kind: DataKind
    summary: str
    train: tuple[int, ...]
    test: tuple[int, ...] = ()
    val: tuple[int, ...] = ()
    manual: str | None = None  # why it cannot be downloaded, and how to prepare it instead

    @property
    def size(self) -> str:
        """The counts per split, for ``gentool datasets``: ``1,067 + 1,334 train, ...``."""
        splits = [
            f"{' + '.join(f'{n:,}' for n in counts)} {split}"
            for split, counts in (("train", self.train), ("test", self.test), ("val", self.val))
            if counts
        ]
        return ", ".join(splits) + (" pairs" if self.kind is DataKind.PAIRED else " images")

    @property
    def url(self) -> str:
        if self.kind is DataKind.UNPAIRED:
            return mirror_url(f"{ORIGIN}/cyclegan/datasets/{self.remote}.zip", ORIGIN)
        return mirror_url(f"{ORIGIN}/pix2pix/datasets/{self.remote}.tar.gz", ORIGIN)

    @property
    def expect(self) -> str:
        """A folder whose presence means the data is in place."""
        return "trainA" if self.kind is DataKind.UNPAIRED else "train"

    @property
    def train_folders(self) -> tuple[str, ...]:
        """The folders that must hold images for the data to be in place."""
        return ("trainA", "trainB") if self.kind is DataKind.UNPAIRED else ("train",)


_CITYSCAPES = (
    "cityscapes cannot be downloaded automatically (licence): get gtFine_trainvaltest.zip "
    "and leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com, prepare them "
    "with datasets/prepare_cityscapes_dataset.py of junyanz/pytorch-CycleGAN-and-pix2pix, "
    "and put the result in {root}"
)


def _cyclegan(
    name: str,
    summary: str,
    train: tuple[int, int],
    test: tuple[int, int],
    remote: str | None = None,
) -> Archive:
    return Archive(name, remote or name, DataKind.UNPAIRED, f"{summary} (CycleGAN)", train, test)


def _pix2pix(name: str, summary: str, train: int, test: int = 0, val: int = 0) -> Archive:
    counts = [(n,) if n else () for n in (train, test, val)]
    return Archive(name, name, DataKind.PAIRED, f"{summary} (pix2pix)", *counts)


# The counts are of the images in the downloaded archives, folder by folder (trainA + trainB,
# testA + testB; train, test, val), as gentool splits them. They are not the collection
# sizes in the authors' docs/datasets.md (939 horses + 1,177 zebras, 996 apples + 1,020
# oranges, ...), which differ from what the zip files hold.
ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        _cyclegan("apple2orange", "apples <-> oranges, ImageNet photos", (995, 1019), (266, 248)),
        _cyclegan("horse2zebra", "horses <-> zebras, ImageNet photos", (1067, 1334), (120, 140)),
        _cyclegan(
            "summer2winter_yosemite",
            "Yosemite in summer <-> winter, Flickr",
            (1231, 962),
            (309, 238),
        ),
        _cyclegan("monet2photo", "Monet paintings <-> landscape photos", (1072, 6287), (121, 751)),
        _cyclegan(
            "cezanne2photo", "Cezanne paintings <-> landscape photos", (525, 6287), (58, 751)
        ),
        _cyclegan("ukiyoe2photo", "Ukiyo-e prints <-> landscape photos", (562, 6287), (263, 751)),
        _cyclegan(
            "vangogh2photo", "Van Gogh paintings <-> landscape photos", (400, 6287), (400, 751)
        ),
        _cyclegan("iphone2dslr_flower", "iPhone <-> DSLR flower photos", (1812, 3325), (569, 480)),
        _cyclegan(
            "maps-unpaired", "Google Maps <-> aerial photos", (1096, 1096), (1098, 1098), "maps"
        ),
        _cyclegan(
            "facades-unpaired", "facade labels <-> photos, CMP", (400, 400), (106, 106), "facades"
        ),
        Archive(
            "cityscapes-unpaired",
            "cityscapes",
            DataKind.UNPAIRED,
            "street labels <-> photos, Cityscapes; prepared by hand (CycleGAN)",
            train=(2975, 2975),
            test=(500, 500),
            manual=_CITYSCAPES,
        ),
        _pix2pix("facades", "facade photo | label map pairs, CMP", 400, test=106, val=100),
        _pix2pix("maps", "aerial photo | Google map pairs", 1096, val=1098),
        _pix2pix("edges2shoes", "edge map | shoe photo pairs, UT Zappos50K", 49825, val=200),
        _pix2pix("edges2handbags", "edge map | handbag photo pairs, iGAN", 138567, val=200),
        _pix2pix(
            "night2day", "night | day pairs of the same webcam scene", 17823, test=2287, val=10
        ),
        Archive(
            "cityscapes",
            "cityscapes",
            DataKind.PAIRED,
            "street photo | label map pairs, Cityscapes; prepared by hand (pix2pix)",
            train=(2975,),
            test=(500,),  # the script writes Cityscapes' val split as test/
            manual=_CITYSCAPES,
        ),
    )
}


def is_cached(name: str, root: Path) -> bool:
    """True when the data set was downloaded, or placed by hand, in ``root``: by hand, its
    training folders each hold a file (an empty ``trainB/`` is not data)."""
    if is_complete(root):
        return True
    folders = [Path(root) / folder for folder in ARCHIVES[name].train_folders]
    return all(folder.is_dir() and _holds_a_file(folder) for folder in folders)


def _holds_a_file(folder: Path) -> bool:
    return any(path.is_file() for path in folder.rglob("*"))


def load(name: str, options: DataOptions, root: Path) -> DataSource:
    """The data source for a catalogued name, downloading and unpacking it on first use."""
    archive = ARCHIVES[name]
    root = Path(root)
    if not is_cached(name, root):
        if archive.manual:
            raise UserError(archive.manual.format(root=root))
        fetch_dataset(archive.url, root, name=name, expect=archive.expect)
    from gentool.data.translation import load_translation_folder

    # Files we unpacked ourselves were checked as an archive; hand-placed ones get checked.
    return load_translation_folder(
        root, archive.kind, options, source=name, check_files=not is_complete(root)
    )
