"""Procedural translation sets drawn on the fly: ``toy-shapes`` and ``toy-shapes-paired``.

Offline, tiny and fully deterministic: image ``i`` of a split depends only on (split,
domain, i), never on ``--seed``, so every run and every test sees the same pictures.

- ``toy-shapes`` (unpaired): domain A is red discs, domain B blue squares, each of random
  position and size on a dark background. A CycleGAN has to learn colour *and* shape.
- ``toy-shapes-paired`` (paired): A is the white outline of a disc or square on black, B
  the same shape filled, discs red and squares blue, so B follows from A (pix2pix).

256 training and 64 test images per domain, 32 px unless ``--image-size`` says otherwise;
shapes are drawn at the final size (antialiased edges), so no resizing is involved.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from gentool.data.augment import item_generator
from gentool.data.base import DataKind, DataOptions
from gentool.data.builders import PairShape, pair_source
from gentool.data.images import to_channels
from gentool.data.sources import SplitSource
from gentool.errors import UserError

__all__ = ["DEFAULT_IMAGE_SIZE", "SIZES", "ToyShapes", "draw_shape", "load", "load_paired"]

DEFAULT_IMAGE_SIZE = 32
SIZES = {"train": 256, "test": 64}
_RED, _BLUE = (0.9, 0.15, 0.1), (0.1, 0.25, 0.9)


def draw_shape(
    shape: str,
    size: int,
    generator: torch.Generator,
    colour: tuple[float, float, float],
    outline: bool = False,
) -> torch.Tensor:
    """One ``[3, size, size]`` image: a disc or square of random place and size.

    ``outline`` draws only its edge, white on black; otherwise it is filled with ``colour``
    on a dark grey background. The draws from ``generator`` are the same either way, so an
    outline and a filled image from equal generators show the same shape.
    """
    u = torch.rand(6, generator=generator)
    radius = size * (0.15 + 0.15 * u[0])
    cy = radius + (size - 2 * radius) * u[1]
    cx = radius + (size - 2 * radius) * u[2]
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    dy, dx = (centres - cy).view(-1, 1), (centres - cx).view(1, -1)
    if shape == "disc":
        distance = torch.sqrt(dy**2 + dx**2)
    else:
        distance = torch.maximum(dy.abs(), dx.abs())
    if outline:
        # A line about 1.5 px wide at the shape's edge, antialiased by distance.
        ink = (1.25 - (distance - radius).abs()).clamp(0, 1)
        return ink.expand(3, size, size).clone()
    cover = (radius - distance + 0.5).clamp(0, 1)  # fraction of the pixel inside the shape
    background = 0.05 + 0.1 * u[3:6].view(3, 1, 1)
    fill = torch.tensor(colour).view(3, 1, 1)
    return background + (fill - background) * cover


class ToyShapes(Dataset):
    """``{"A", "B", "A_path", "B_path"}`` items of a toy set; see the module docstring."""

    def __init__(
        self, split: str, paired: bool, size: int, channels: int, seed: int, swap: bool
    ) -> None:
        self.split, self.paired, self.size = split, paired, size
        self.channels, self.seed, self.swap = channels, seed, swap
        self.count = SIZES[split]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def _content(self, domain: int, index: int) -> torch.Generator:
        split_code = list(SIZES).index(self.split)
        return item_generator(1000 + 10 * split_code + domain, 0, index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = "toy-shapes-paired" if self.paired else "toy-shapes"
        if self.paired:
            shape = "disc" if index % 2 == 0 else "square"
            colour = _RED if shape == "disc" else _BLUE
            a = draw_shape(shape, self.size, self._content(0, index), colour, outline=True)
            b = draw_shape(shape, self.size, self._content(0, index), colour)
            b_index = index
        else:
            if self.split == "train":
                pick = item_generator(self.seed, self.epoch, index)
                b_index = int(torch.randint(self.count, (), generator=pick))
            else:
                b_index = index
            a = draw_shape("disc", self.size, self._content(0, index), _RED)
            b = draw_shape("square", self.size, self._content(1, b_index), _BLUE)
        a, b = to_channels(a, self.channels), to_channels(b, self.channels)
        a_path, b_path = f"{name}/{self.split}/A/{index}", f"{name}/{self.split}/B/{b_index}"
        if self.swap:
            a, b, a_path, b_path = b, a, b_path, a_path
        return {"A": a, "B": b, "A_path": a_path, "B_path": b_path}


def load(options: DataOptions, root: Any = None, paired: bool = False) -> SplitSource:
    """The ``toy-shapes`` data source (``paired=True``: ``toy-shapes-paired``)."""
    shape = PairShape.checked(options, DEFAULT_IMAGE_SIZE)
    if shape.size < 4:
        raise UserError(f"--image-size must be at least 4 for toy shapes, not {shape.size}")
    splits = {
        split: ToyShapes(split, paired, shape.size, shape.channels, options.seed, shape.swap)
        for split in SIZES
    }
    return pair_source(
        DataKind.PAIRED if paired else DataKind.UNPAIRED,
        shape,
        splits,
        source="toy-shapes-paired" if paired else "toy-shapes",
        resize=(shape.size, shape.size),  # drawn at that size, never resized
        generated=True,
    )


def load_paired(options: DataOptions, root: Any = None) -> SplitSource:
    """The ``toy-shapes-paired`` data source."""
    return load(options, root, paired=True)
