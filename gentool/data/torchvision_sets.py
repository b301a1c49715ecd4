"""``mnist`` and ``fashion-mnist`` through torchvision, downloaded once into the cache.

Both are 28x28 grey, 8-bit (``levels = 256``), with their own 60,000 / 10,000 train/test
splits. ``--normal-class`` takes a class name or index (``3`` or ``Dress``) and keeps that
class only in the train split. Light at import: torch and torchvision load on first use.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from gentool.data.base import DataOptions
from gentool.errors import UserError

__all__ = ["FASHION_MNIST", "MNIST", "TorchvisionSet", "is_cached", "load"]


@dataclass(frozen=True)
class TorchvisionSet:
    """One torchvision dataset class and what a user needs to place its files by hand."""

    name: str  # gentool's name
    class_name: str  # attribute of torchvision.datasets; also its folder under the root
    class_names: tuple[str, ...]
    mirror: str  # where the files come from, for the offline message

    @property
    def files(self) -> tuple[str, ...]:
        return (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )

    def raw_folder(self, root: Path) -> Path:
        return Path(root) / self.class_name / "raw"


MNIST = TorchvisionSet(
    "mnist",
    "MNIST",
    tuple(str(d) for d in range(10)),
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
FASHION_MNIST = TorchvisionSet(
    "fashion-mnist",
    "FashionMNIST",
    (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
SETS = {s.name: s for s in (MNIST, FASHION_MNIST)}


def is_cached(name: str, root: Path) -> bool:
    """True when the four idx files (or their .gz archives) are in place."""
    raw = SETS[name].raw_folder(root)
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in SETS[name].files)


def load(name: str, options: DataOptions, root: Path) -> object:
    """The ``mnist`` or ``fashion-mnist`` data source, downloading it on first use."""
    import torchvision

    from gentool.data.builders import image_source

    spec = SETS[name]
    dataset_class = getattr(torchvision.datasets, spec.class_name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    train = _open(dataset_class, spec, root, train=True)
    test = _open(dataset_class, spec, root, train=False)
    splits = {"train": (train.data, train.targets), "test": (test.data, test.targets)}
    return image_source(options, splits, source=name, levels=256, class_names=spec.class_names)


def _open(dataset_class: type, spec: TorchvisionSet, root: Path, train: bool):
    try:
        # torchvision prints its download messages on stdout, which carries our results.
        with contextlib.redirect_stdout(sys.stderr):
            # download=True fetches only what is missing: files already in place (even the
            # .gz archives placed by hand) are checked and extracted without the network.
            return dataset_class(str(root), train=train, download=True)
    except Exception as err:  # network failures surface as URLError, RuntimeError, OSError...
        files = ", ".join(f"{f}.gz" for f in spec.files)
        # torchvision lists one error per mirror; the last line holds the network's answer.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[-1].rstrip(":") if lines else type(err).__name__
        raise UserError(
            f"cannot get {spec.name} ({reason}); to install it by hand, download {files} "
            f"from {spec.mirror} into {spec.raw_folder(root)}"
        ) from err
