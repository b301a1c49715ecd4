"""Image folders as ``images`` data: flat, class subfolders, train/test splits, MVTec AD.

Layouts, detected in this order:

- ``train/`` (+ ``test/``, ``val/``) whose ``train/`` holds only ``good/``: MVTec AD style.
  Classes are ``good`` (index 0) then the defect folders of ``test/`` in name order; the
  normal class is ``good`` unless ``--normal-class`` says otherwise.
- ``train/`` (+ ``test/``, ``val/``) with class subfolders, or with images directly (no
  labels).
- images directly in the folder: one unlabelled set (labels -1).
- one subfolder per class: ``dir/<class>/*.png``, classes in name order.

Without a ``test/`` folder, a fixed stratified 80/20 split holds out the test images
(:func:`gentool.data.sources.fixed_split`, seed 0, independent of ``--seed``). With
``--normal-class`` the train split keeps that class only; other splits keep every class.

An MVTec AD folder with a ``ground_truth/`` folder gives ``(image, label, mask)`` items in
its test split (:mod:`gentool.data.masks`); without one it reads as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from gentool.data.base import DataOptions
from gentool.data.builders import image_source
from gentool.data.images import list_images, subfolders
from gentool.data.masks import GROUND_TRUTH, mask_files
from gentool.data.sources import FIXED_SPLIT, SplitSource, fixed_split
from gentool.errors import UserError

__all__ = ["FolderScan", "load_all_images", "load_folder", "scan_folder"]

SPLIT_NAMES = ("train", "test", "val")
_TRANSLATION_DIRS = ("trainA", "trainB", "testA", "testB")


@dataclass
class FolderScan:
    """What :func:`scan_folder` found: the layout, class names and labelled files per split."""

    layout: str  # "mvtec", "split-classes", "split-flat", "flat" or "classes"
    class_names: tuple[str, ...] = ()
    splits: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)

    @property
    def has_test(self) -> bool:
        return "test" in self.splits


def scan_folder(root: Path) -> FolderScan:
    """Detect the layout of an image folder and list its files with class labels."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    dirs = {d.name: d for d in subfolders(root)}
    if "trainA" in dirs and "trainB" in dirs:
        raise UserError(
            f"{root} is an unpaired translation set (trainA/, trainB/); image families need "
            f"one set of images: give one of its folders, e.g. {root / 'trainA'}"
        )
    if "train" in dirs:
        return _scan_splits(root, {s: dirs[s] for s in SPLIT_NAMES if s in dirs})
    flat = list_images(root)
    if flat:
        return FolderScan("flat", (), {"all": [(p, -1) for p in flat]})
    classes = [(d.name, list_images(d)) for d in dirs.values()]
    classes = [(name, files) for name, files in classes if files]
    if classes:
        names = tuple(name for name, _ in classes)
        files = [(p, i) for i, (_, paths) in enumerate(classes) for p in paths]
        return FolderScan("classes", names, {"all": files})
    nested = [d.name for d in dirs.values() if (d / "train").is_dir()]
    if nested:
        raise UserError(
            f"{root} holds several data sets ({', '.join(nested[:5])}); give one of them, "
            f"e.g. {root / nested[0]}"
        )
    raise UserError(
        f"no images in {root} or its subfolders "
        "(looked for .png .jpg .jpeg .bmp .tif .tiff .webp .ppm .pgm files)"
    )


def _scan_splits(root: Path, split_dirs: dict[str, Path]) -> FolderScan:
    class_dirs = {s: {d.name: d for d in subfolders(p)} for s, p in split_dirs.items()}
    train_classes = {n for n, d in class_dirs["train"].items() if list_images(d)}
    if train_classes == {"good"}:
        defects = sorted(
            {n for s, ds in class_dirs.items() if s != "train" for n in ds if n != "good"}
        )
        names = ("good", *defects)
        return FolderScan("mvtec", names, _label_splits(class_dirs, names))
    if train_classes:
        names = tuple(sorted({n for ds in class_dirs.values() for n in ds}))
        return FolderScan("split-classes", names, _label_splits(class_dirs, names))
    splits = {s: [(p, -1) for p in list_images(d)] for s, d in split_dirs.items()}
    if not splits["train"]:
        raise UserError(f"no images in {root / 'train'} or its subfolders")
    return FolderScan("split-flat", (), splits)


def _label_splits(
    class_dirs: dict[str, dict[str, Path]], names: tuple[str, ...]
) -> dict[str, list[tuple[Path, int]]]:
    return {
        split: [
            (p, names.index(name)) for name, folder in dirs.items() for p in list_images(folder)
        ]
        for split, dirs in class_dirs.items()
    }


def load_folder(path: Path, options: DataOptions, *, source: str | None = None) -> SplitSource:
    """An ``images`` data source from a folder in any layout :func:`scan_folder` knows.

    Items are ``(image, label)``, and ``(image, label, mask)`` in the test split of an
    MVTec AD folder with ``ground_truth/``; the image size defaults to the first training
    image's size (others are resized to it) and the channels to its own (1 for grey, else 3).
    Every file's header is read now, so a bad file is named before training, and the
    quantisation levels are those of the deepest image (see
    :func:`gentool.data.builders.file_levels`).
    """
    root = Path(path).expanduser()
    scan = scan_folder(root)
    splits = dict(scan.splits)
    made_split = False
    if "all" in splits:
        files = splits.pop("all")
        train, test = fixed_split([label for _, label in files])
        splits = {"train": [files[i] for i in train], "test": [files[i] for i in test]}
        made_split = True
    elif "test" not in splits:
        files = splits["train"]
        train, test = fixed_split([label for _, label in files])
        splits["train"], splits["test"] = [files[i] for i in train], [files[i] for i in test]
        made_split = True
    ground_truth = root / GROUND_TRUTH
    masks = {}
    if scan.layout == "mvtec" and "test" in scan.splits and ground_truth.is_dir():
        masks["test"] = mask_files([path for path, _ in splits["test"]], ground_truth)
    return image_source(
        options,
        {split: _unzipped(files) for split, files in splits.items()},
        source=source or str(root),
        class_names=scan.class_names,
        normal_class="good" if scan.layout == "mvtec" else None,
        layout=scan.layout,
        split=FIXED_SPLIT if made_split else None,
        masks=masks,
    )


def load_all_images(path: Path, options: DataOptions) -> SplitSource:
    """Every image in a folder as one ``"all"`` split, labelled when the layout has classes.

    For ``gentool score --images DIR``: no test split is held out and ``--normal-class``
    never filters; it only says which class is normal when the folder's classes include it
    (then :meth:`DataSource.anomaly_labels` works), and is ignored otherwise. The items
    carry masks where there is ground truth: an MVTec AD folder with ``ground_truth/``, or
    the ``test/`` folder of one (its class folders, with ``../ground_truth/``).
    """
    root = Path(path).expanduser()
    scan = scan_folder(root)
    files = [item for split in scan.splits.values() for item in split]
    normal = options.normal_class if options.normal_class in scan.class_names else None
    ground_truth = _ground_truth(root, scan.layout)
    masks = {"all": mask_files([p for p, _ in files], ground_truth)} if ground_truth else {}
    return image_source(
        replace(options, normal_class=normal),
        {"all": _unzipped(files)},
        source=str(root),
        class_names=scan.class_names,
        layout=scan.layout,
        masks=masks,
    )


def _ground_truth(root: Path, layout: str) -> Path | None:
    """The ``ground_truth/`` folder of an MVTec AD folder, or of the one whose ``test/`` this is."""
    if layout == "mvtec" and (root / GROUND_TRUTH).is_dir():
        return root / GROUND_TRUTH
    beside = root.resolve().parent
    if layout == "classes" and root.resolve().name == "test" and (beside / GROUND_TRUTH).is_dir():
        return beside / GROUND_TRUTH
    return None


def _unzipped(files: list[tuple[Path, int]]) -> tuple[list[Path], list[int]]:
    return [path for path, _ in files], [label for _, label in files]
