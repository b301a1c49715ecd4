"""MVTec AD as named datasets, one per category (``mvtec-ad/bottle``, ...), with their masks.

MVTec AD (Bergmann et al., CVPR 2019 and IJCV 2021, https://www.mvtec.com/company/research/
datasets/mvtec-ad) is released under CC BY-NC-SA 4.0: non-commercial use only. Each
category downloads once, on first use, as its own archive (``<category>.tar.xz``, 104 to
705 MB) from MVTec's file host, into ``$GENTOOL_HOME/datasets/mvtec-ad/<category>``, and
reads as an MVTec AD folder (:mod:`gentool.data.folders`): ``train/good``, ``test/<defect>``
and masks from ``ground_truth/<defect>``.

The per-category archives have no published checksum. They are checked as they unpack:
the xz format's own integrity check (corruption or a truncated file is refused) and the
image counts of the paper (train, test and masks) of the category; anything else removes
the archive and unpacks nothing. The whole 4.9 GB archive has one, which anomalib's
``DOWNLOAD_INFO`` pins (sha256 below): placed by hand as ``datasets/mvtec-ad/`` +
:data:`WHOLE`, it is checked and every category unpacked from it at once (and removed
once all are in place). The categories unpacked by hand as ``datasets/mvtec-ad/<category>``
(the whole archive's layout) are used as they are.

Light at import (no torch): ``gentool datasets`` reads this table at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gentool.data.base import DataOptions, DataSource
from gentool.data.download import check_archive, fetch_dataset, is_complete, mirror_path

__all__ = ["CATEGORIES", "LICENCE", "PAGE", "WHOLE", "WHOLE_SHA256", "Category", "load"]

LICENCE = "CC BY-NC-SA 4.0"
PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
#: MVTec's file host, as its download page links it (the links listed by anomalib and
#: others); ``$GENTOOL_DATASET_MIRROR`` replaces the whole URL by ``<mirror>/mvtec-ad/<file>``.
ORIGIN = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f283/download"
#: The whole data set in one archive, and its sha256 (anomalib's ``mvtecad.py``).
WHOLE = "mvtec_anomaly_detection.tar.xz"
WHOLE_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"


@dataclass(frozen=True)
class Category:
    """One MVTec AD category: its file on MVTec's host and what its archive holds."""

    name: str
    kind: str  # "object" or "texture", as the paper groups them
    file_id: str  # the host's id of the category's archive
    megabytes: int  # the archive's size
    train: int  # train/good images
    test_good: int  # test/good images
    test_defects: int  # test/<defect> images, one mask each in ground_truth/

    @property
    def dataset(self) -> str:
        return f"mvtec-ad/{self.name}"

    @property
    def url(self) -> str:
        own = f"{ORIGIN}/{self.file_id}/{self.name}.tar.xz"
        return mirror_path(own, f"mvtec-ad/{self.name}.tar.xz")

    @property
    def size(self) -> str:
        """For ``gentool datasets``: ``209 train, 83 test images (63 defective), 148 MB``."""
        test = self.test_good + self.test_defects
        return (
            f"{self.train:,} train, {test:,} test images ({self.test_defects:,} defective), "
            f"{self.megabytes:,} MB download"
        )

    @property
    def summary(self) -> str:
        words = self.name.replace("_", " ")
        return (
            f"MVTec AD {words}: industrial {self.kind} photos, defects with pixel masks; "
            f"{LICENCE}, non-commercial"
        )


# Counts: the MVTec AD paper's table (IJCV 2021), 3,629 train and 1,725 test images in all;
# sizes and file ids: the per-category links of MVTec's download page.
CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category("bottle", "object", "420937370-1629958698", 148, 209, 20, 63),
        Category("cable", "object", "420937413-1629958794", 481, 224, 58, 92),
        Category("capsule", "object", "420937454-1629958872", 385, 219, 23, 109),
        Category("carpet", "texture", "420937484-1629959013", 705, 280, 28, 89),
        Category("grid", "texture", "420937487-1629959044", 153, 264, 21, 57),
        Category("hazelnut", "object", "420937545-1629959162", 588, 391, 40, 70),
        Category("leather", "texture", "420937607-1629959262", 500, 245, 32, 92),
        Category("metal_nut", "object", "420937637-1629959294", 157, 220, 22, 93),
        Category("pill", "object", "420938129-1629960351", 262, 267, 26, 141),
        Category("screw", "object", "420938130-1629960389", 186, 320, 41, 119),
        Category("tile", "texture", "420938133-1629960456", 335, 230, 33, 84),
        Category("toothbrush", "object", "420938134-1629960477", 104, 60, 12, 30),
        Category("transistor", "object", "420938166-1629960554", 384, 213, 60, 40),
        Category("wood", "texture", "420938383-1629960649", 474, 247, 19, 60),
        Category("zipper", "object", "420938385-1629960680", 152, 240, 32, 119),
    )
}


def is_cached(name: str, root: Path) -> bool:
    """True when the category was downloaded, or placed by hand, in ``root`` (its
    ``train/`` holding a file)."""
    train = Path(root) / "train"
    return is_complete(root) or (train.is_dir() and any(p.is_file() for p in train.rglob("*")))


def load(name: str, options: DataOptions, root: Path) -> DataSource:
    """The data source of the category ``name``, downloading it on first use."""
    from gentool.data.folders import load_folder

    category = CATEGORIES[name]
    root = Path(root)
    if not is_cached(name, root):
        whole = root.parent / WHOLE
        if whole.is_file():
            _unpack_whole(whole)
        if not is_cached(name, root):
            hint = f"or save MVTec AD's whole archive ({PAGE}) as {whole}"
            fetch_dataset(
                category.url,
                root,
                name=category.dataset,
                expect="train",
                check=lambda folder: count_problem(category, folder),
                hint=hint,
            )
    return load_folder(root, options, source=category.dataset)


def count_problem(category: Category, folder: Path) -> str | None:
    """What differs between an unpacked category folder and the paper's counts, if anything."""
    from gentool.data.images import list_images, subfolders

    def count(split: str, only: str | None = None) -> int:
        where = folder / split
        kinds = [where / only] if only else (subfolders(where) if where.is_dir() else [])
        return sum(len(list_images(d)) for d in kinds if d.is_dir())

    found = (
        count("train", "good"),
        count("test", "good"),
        count("test") - count("test", "good"),
        count("ground_truth"),
    )
    expected = (category.train, category.test_good, category.test_defects, category.test_defects)
    if found == expected:
        return None
    what = ("train/good", "test/good", "defective test", "mask")
    rows = zip(found, expected, what, strict=True)
    wrong = [f"{n:,} {w} images, not {e:,}" for n, e, w in rows if n != e]
    return f"{category.dataset} holds {'; '.join(wrong)}"


def _unpack_whole(whole: Path) -> None:
    """Every category from the whole archive placed by hand, checked against its sha256."""
    from gentool.data.archives import unpack_collection

    check_archive(whole, name="MVTec AD", sha256=WHOLE_SHA256)
    unpack_collection(
        whole,
        whole.parent,
        list(CATEGORIES),
        name="MVTec AD",
        source=str(whole),
        check=lambda name, folder: count_problem(CATEGORIES[name], folder),
        placed=True,
    )
