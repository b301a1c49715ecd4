"""Ground-truth defect masks: MVTec AD's ``ground_truth/`` folder, and image files with masks.

``<root>/ground_truth/<defect>/<name>_mask.png`` is the mask of ``<root>/test/<defect>/<name>.png``
(``<name>.png`` is read too, as other MVTec-style sets name them); images of a ``good/``
folder are normal and have none. A mask is read as grey and thresholded (> 0) to 0 and 1,
and resized to the image's final size by nearest neighbour, never antialiased, so it stays
0/1 and each of its pixels takes the value of the source pixel under its centre, as the
image's own (centre-aligned) resampling does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from gentool.data.images import list_images, load_image, read_header
from gentool.data.sources import ImageFiles
from gentool.errors import UserError

__all__ = ["GROUND_TRUTH", "NORMAL_FOLDER", "MaskedImageFiles", "load_mask", "mask_files"]

GROUND_TRUTH = "ground_truth"
#: Images in a folder of this name are normal: their masks are all zeros.
NORMAL_FOLDER = "good"


def load_mask(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A mask file as a float ``[1, H, W]`` of 0 and 1 (1 where the grey value is > 0),
    resized to ``size = (H, W)`` by nearest neighbour when given."""
    mask = (load_image(path, channels=1) > 0).to(torch.float32)
    if size is None or tuple(mask.shape[-2:]) == tuple(size):
        return mask
    # "nearest-exact" samples the source pixel under each output pixel's centre; torch's
    # plain "nearest" takes the one up and to the left, shifting masks off their defects.
    return F.interpolate(mask[None], size=tuple(size), mode="nearest-exact")[0]


def mask_files(images: Sequence[Path], ground_truth: Path) -> list[Path | None]:
    """The mask file of each image (None: normal, a ``good/`` image), checked now.

    The mask of ``<defect>/<name>.<ext>`` is ``ground_truth/<defect>/<name>_mask.*``, else
    ``ground_truth/<defect>/<name>.*``. A defect image without one, or a mask whose size is
    not its image's, raises :class:`UserError` naming the files.
    """
    ground_truth = Path(ground_truth)
    found: dict[str, dict[str, Path]] = {}
    masks: list[Path | None] = []
    for image in map(Path, images):
        defect = image.parent.name
        if defect == NORMAL_FOLDER:
            masks.append(None)
            continue
        if defect not in found:
            found[defect] = _masks_by_name(ground_truth / defect)
        mask = found[defect].get(image.stem)
        if mask is None:
            expected = ground_truth / defect / f"{image.stem}_mask.png"
            raise UserError(f"no ground-truth mask for {image}: expected {expected}")
        _check_size(mask, image)
        masks.append(mask)
    return masks


def _masks_by_name(folder: Path) -> dict[str, Path]:
    """``{image name: mask file}`` of one defect's folder; ``x_mask.png`` wins over ``x.png``."""
    if not folder.is_dir():
        return {}
    named: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem.endswith("_mask"):
            named[path.stem[: -len("_mask")]] = path
    for path in list_images(folder):
        named.setdefault(path.stem, path)
    return named


def _check_size(mask: Path, image: Path) -> None:
    mask_header, image_header = read_header(mask), read_header(image)
    mask_size = (mask_header.width, mask_header.height)
    image_size = (image_header.width, image_header.height)
    if mask_size != image_size:
        raise UserError(
            f"the mask {mask} is {mask_size[0]}x{mask_size[1]} pixels but its image {image} "
            f"is {image_size[0]}x{image_size[1]}"
        )


class MaskedImageFiles(ImageFiles):
    """Image files with their masks: items ``(image [C, H, W], label, mask [1, H, W])``.

    ``mask_paths[i]`` is the mask file of ``paths[i]``, None for a normal image (zeros).
    ``masks = True`` tells :func:`gentool.data.base.has_masks` without loading an item.
    """

    masks = True

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int] | None,
        mask_paths: Sequence[Path | None],
        channels: int = 3,
        size: tuple[int, int] | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__(paths, labels, channels, size, interpolation)
        self.mask_paths = [None if p is None else Path(p) for p in mask_paths]
        if len(self.mask_paths) != len(self.paths):
            raise ValueError("paths and mask_paths differ in length")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        image, label = super().__getitem__(index)
        size = tuple(image.shape[-2:])
        path = self.mask_paths[index]
        mask = torch.zeros(1, *size) if path is None else load_mask(path, size)
        return image, label, mask
