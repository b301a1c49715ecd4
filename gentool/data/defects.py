"""``defects``: woven textures with scratches, holes and stains and their exact masks, drawn
on the fly (the offline anomaly-detection demo, and what the tests train on).

Normal images are one plain-weave fabric: two sets of threads crossing over and under in a
checkerboard, each image with its own thread count (6 to 8 across), slant (up to 10
degrees), phase, colour (around a denim blue), slow warp of the threads and fine grain, so
no two are alike but all come from one distribution. A defective test image is a fresh
normal one with one localised defect, whose mask is exactly the pixels it changed:

- ``scratch``: a thin straight line, bright or dark, 25 to 50 % of the image long;
- ``hole``: a dark disc, 4 to 8 % of the image in radius;
- ``stain``: a brownish, reddish or greenish blob of irregular outline, half transparent.

``train`` holds 200 normal images (label ``good``); ``test`` holds 60 normal and 60
defective ones, 20 of each defect, with classes ``good``, ``scratch``, ``hole``, ``stain``
(``good`` is the normal class, as in MVTec AD). Image ``i`` of a split depends only on
(split, i), never on ``--seed``: every run, and a model scored with another seed, sees the
same images. Drawn at the final size (``--image-size``, 64 px by default; at least 16),
RGB unless ``--channels 1``, and rounded to 8-bit values (256 levels).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gentool.data.augment import item_generator
from gentool.data.base import MASKS, DataInfo, DataKind, DataOptions, Preprocessing
from gentool.data.images import to_channels
from gentool.data.sources import SplitSource, checked_channels, checked_size, normal_class_index
from gentool.errors import UserError

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_IMAGE_SIZE",
    "SIZES",
    "DefectImages",
    "draw",
    "label_of",
    "load",
]

CLASS_NAMES = ("good", "scratch", "hole", "stain")
DEFAULT_IMAGE_SIZE = 64
MIN_IMAGE_SIZE = 16
SIZES = {"train": 200, "test": 120}
TEST_NORMAL = 60  # test images 0..59 are normal; 60.. cycle scratch, hole, stain
_SEED_BASE = 2000  # the content streams, apart from toy shapes' (1000 + ...)
_STAINS = ((0.45, 0.28, 0.1), (0.55, 0.12, 0.1), (0.3, 0.4, 0.12))


def draw(
    split: str, index: int, size: int, defect: bool = True
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Image ``index`` of ``split``: ``(image [3, size, size], label, mask [1, size, size])``.

    ``defect=False`` draws the same image without its defect (and an empty mask): the
    pixels where the two differ are the mask's.
    """
    generator = item_generator(_SEED_BASE + list(SIZES).index(split), 0, index)
    image = _fabric(size, generator)
    mask = torch.zeros(size, size, dtype=torch.bool)
    label = label_of(split, index)
    if label and defect:
        image, mask = (_scratch, _hole, _stain)[label - 1](image, size, generator)
    image = image.clamp(0, 1).mul(255).round().div(255)  # 8-bit values, as a photo's
    return image, label, mask[None].to(torch.float32)


def label_of(split: str, index: int) -> int:
    """The class index of image ``index`` of ``split`` (0: good)."""
    if split == "train" or index < TEST_NORMAL:
        return 0
    return 1 + (index - TEST_NORMAL) % 3


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in [0, 1]: ``y`` as a column, ``x`` as a row."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return t.view(-1, 1), t.view(1, -1)


def _smooth_noise(size: int, cells: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth noise in about [0, 1] with ``cells`` bumps across, the same at every size."""
    coarse = torch.rand(1, 1, cells + 1, cells + 1, generator=generator)
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    return fine[0, 0]


def _fabric(size: int, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(9, generator=generator)
    threads = 6.0 + 2.0 * u[0]
    angle = math.radians(20.0 * (float(u[1]) - 0.5))
    y, x = _grid(size)
    warp = 0.25 * (_smooth_noise(size, 3, generator) - 0.5)
    along = threads * (x * math.cos(angle) + y * math.sin(angle)) + u[2] + warp
    across = threads * (-x * math.sin(angle) + y * math.cos(angle)) + u[3] - warp
    # Plain weave: in each cell one thread lies on top, alternately the one running
    # along and the one running across; its bulge is brightest on the thread's middle.
    on_top = (torch.floor(along) + torch.floor(across)) % 2 == 0
    bulge_along = torch.sin(math.pi * (across - torch.floor(across)))
    bulge_across = torch.sin(math.pi * (along - torch.floor(along)))
    relief = torch.where(on_top, bulge_along, bulge_across).sqrt()
    grain = 0.12 * (_smooth_noise(size, 9, generator) - 0.5)
    shade = 0.55 + 0.4 * relief + grain
    colour = torch.tensor([0.25, 0.38, 0.62]) + 0.08 * (u[4:7] - 0.5)
    speckle = 0.02 * torch.randn(3, size, size, generator=generator)
    return colour.view(3, 1, 1) * shade * (1.1 + 0.2 * u[7]) + speckle


def _point(generator: torch.Generator, size: int) -> tuple[float, float]:
    """A defect's centre in pixels, away from the border."""
    u = torch.rand(2, generator=generator)
    return float(size * (0.2 + 0.6 * u[0])), float(size * (0.2 + 0.6 * u[1]))


def _pixels(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = _grid(size)
    return y * size, x * size


def _scratch(image: torch.Tensor, size: int, generator: torch.Generator) -> tuple:
    cy, cx = _point(generator, size)
    u = torch.rand(3, generator=generator)
    half = size * (0.125 + 0.125 * float(u[0]))
    angle = math.pi * float(u[1])
    dy, dx = math.sin(angle), math.cos(angle)
    py, px = _pixels(size)
    # Distance to the segment: along its direction clamped to its ends, then across.
    t = ((py - cy) * dy + (px - cx) * dx).clamp(-half, half)
    distance = torch.sqrt((py - cy - t * dy) ** 2 + (px - cx - t * dx) ** 2)
    mask = distance <= max(0.75, 0.012 * size)
    tone = 0.95 if u[2] < 0.5 else 0.08
    scratched = 0.15 * image + 0.85 * tone
    return torch.where(mask, scratched, image), mask


def _hole(image: torch.Tensor, size: int, generator: torch.Generator) -> tuple:
    cy, cx = _point(generator, size)
    radius = max(1.5, size * (0.04 + 0.04 * float(torch.rand(1, generator=generator))))
    py, px = _pixels(size)
    distance = torch.sqrt((py - cy) ** 2 + (px - cx) ** 2)
    mask = distance <= radius
    depth = 0.04 + 0.1 * (distance / radius)  # a rim a little lighter than its middle
    return torch.where(mask, depth.expand_as(image), image), mask


def _stain(image: torch.Tensor, size: int, generator: torch.Generator) -> tuple:
    cy, cx = _point(generator, size)
    u = torch.rand(6, generator=generator)
    radius = size * (0.07 + 0.06 * float(u[0]))
    py, px = _pixels(size)
    theta = torch.atan2(py - cy, px - cx)
    outline = radius * (
        1 + 0.25 * torch.sin(3 * theta + 6.28 * u[1]) + 0.12 * torch.sin(5 * theta + 6.28 * u[2])
    )
    mask = torch.sqrt((py - cy) ** 2 + (px - cx) ** 2) <= outline
    colour = torch.tensor(_STAINS[int(u[3] * len(_STAINS)) % len(_STAINS)]).view(3, 1, 1)
    alpha = 0.5 + 0.15 * float(u[4])
    stained = (1 - alpha) * image + alpha * colour
    return torch.where(mask, stained, image), mask


class DefectImages(Dataset):
    """One split of ``defects``: ``(image, label)`` in train, ``(image, label, mask)`` in test.

    ``paths`` names each image (``defects/test/hole/061``) for score's rows and map files.
    """

    def __init__(self, split: str, size: int, channels: int) -> None:
        self.split, self.size, self.channels = split, size, channels
        self.masks = split != "train"
        self.labels = torch.tensor([label_of(split, i) for i in range(SIZES[split])])
        self.paths = [
            f"defects/{split}/{CLASS_NAMES[int(label)]}/{i:03d}"
            for i, label in enumerate(self.labels)
        ]

    def __len__(self) -> int:
        return SIZES[self.split]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        image, label, mask = draw(self.split, index, self.size)
        image = to_channels(image, self.channels)
        return (image, label, mask) if self.masks else (image, label)


def load(options: DataOptions, root: Any = None) -> SplitSource:
    """The ``defects`` data source; ``root`` is unused (the images are drawn)."""
    size = checked_size(options, DEFAULT_IMAGE_SIZE)
    if size < MIN_IMAGE_SIZE:
        raise UserError(f"--image-size must be at least {MIN_IMAGE_SIZE} for defects, not {size}")
    channels = checked_channels(options, 3)
    normal = normal_class_index(options.normal_class or "good", CLASS_NAMES, "defects")
    if normal != 0:
        raise UserError(
            f"--normal-class {options.normal_class!r}: the training images of defects are all "
            "'good', the only class it can train on"
        )
    preprocessing = Preprocessing(
        channels=channels,
        resize=(size, size),  # drawn at that size, never resized
        details={"generated": True, "range": [0.0, 1.0], "masks": MASKS},
    )
    info = DataInfo(
        kind=DataKind.IMAGES,
        channels=channels,
        height=size,
        width=size,
        levels=256,
        source="defects",
        normal_class="good",
        class_names=CLASS_NAMES,
        preprocessing=preprocessing,
    )
    return SplitSource(info, {split: DefectImages(split, size, channels) for split in SIZES})
