"""The reference translation preprocessing (resize, random crop, flip), seeded per item.

Training follows the CycleGAN/pix2pix authors' ``resize_and_crop``: resize to a square
``load_size`` (286 for 256; ``image_size * 286 / 256`` in general), crop a random
``image_size`` square, flip left-right half the time. Test images are only resized to
``image_size``. The randomness of item ``index`` in ``epoch`` comes from a generator seeded
by ``(seed, epoch, index)``, so a resumed run sees the same data whatever the number of
DataLoader workers or which process loads the item.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from gentool.data.images import resize_image
from gentool.errors import UserError

__all__ = ["Augment", "CropFlip", "default_load_size", "item_generator"]

#: The reference's ratio of load size to crop size (286 / 256).
LOAD_RATIO = 286 / 256


def default_load_size(image_size: int) -> int:
    """The reference's resize-before-crop size for ``image_size`` (286 for 256)."""
    return int(round(image_size * LOAD_RATIO))


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch generator that depends only on ``(seed, epoch, index)``."""
    # A hash mixes the three numbers, so neighbouring items and epochs get unrelated streams.
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


@dataclass(frozen=True)
class CropFlip:
    """One draw of the random parameters: crop corner and whether to flip."""

    top: int
    left: int
    flip: bool


@dataclass(frozen=True)
class Augment:
    """Resize, random crop and flip for training (``train=True``); resize only otherwise."""

    image_size: int
    load_size: int
    train: bool
    flip: bool = True
    interpolation: str = "bicubic"  # the reference resizes with PIL's bicubic

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise UserError(f"--image-size must be positive, not {self.image_size}")
        if self.load_size < self.image_size:
            raise UserError(
                f"--load-size {self.load_size} is smaller than --image-size {self.image_size}; "
                "images are resized to the load size and then cropped to the image size"
            )

    def draw(self, generator: torch.Generator) -> CropFlip:
        """Random crop corner and flip for one image (or one A/B pair)."""
        if not self.train:
            return CropFlip(0, 0, False)
        span = self.load_size - self.image_size + 1
        top, left = torch.randint(span, (2,), generator=generator).tolist()
        flip = bool(torch.rand((), generator=generator) < 0.5)
        return CropFlip(top, left, flip and self.flip)

    def apply(self, image: torch.Tensor, params: CropFlip) -> torch.Tensor:
        """``image [C, H, W]`` in [0, 1] to ``[C, image_size, image_size]``."""
        if not self.train:
            return resize_image(image, (self.image_size, self.image_size), self.interpolation)
        image = resize_image(image, (self.load_size, self.load_size), self.interpolation)
        size = self.image_size
        image = image[:, params.top : params.top + size, params.left : params.left + size]
        return image.flip(-1) if params.flip else image.contiguous()

    def describe(self) -> dict[str, Any]:
        """The preprocessing in words and numbers, for the checkpoint's data description."""
        if not self.train:
            return {"resize": [self.image_size, self.image_size], "interp": self.interpolation}
        return {
            "method": "resize_and_crop",
            "resize": [self.load_size, self.load_size],
            "crop": [self.image_size, self.image_size],
            "flip": self.flip,
            "interp": self.interpolation,
        }
