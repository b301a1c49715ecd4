"""Translating a folder of images of any size with a trained translation model."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from gentool.errors import UserError
from gentool.model import Model
from gentool.progress import stderr_console

__all__ = ["translate_folder"]


def translate_folder(
    model: Model,
    folder: Path,
    out: Path,
    direction: str | None,
    batch_size: int,
    max_size: int | None = None,
) -> int:
    """Translate every image in ``folder`` into ``out`` under the same name and size.

    Images of the same size are batched together. With ``max_size``, an image whose longer
    side exceeds it is translated at a reduced size and resized back (saves memory on
    large photos); otherwise the fully convolutional generator runs at full resolution.
    """
    from PIL import Image
    from rich.progress import Progress
    from torchvision.utils import save_image

    from gentool.data.images import list_images, load_image

    if not folder.is_dir():
        raise UserError(f"--images: no such folder: {folder}")
    paths = list_images(folder)
    if not paths:
        raise UserError(f"--images: no image files in {folder}")
    if out.resolve() == folder.resolve():
        raise UserError("--out must differ from --images (outputs keep the input names)")
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for path in paths:
        try:
            with Image.open(path) as image:
                groups[image.size].append(path)
        except OSError as err:
            raise UserError(f"cannot read image {path}: {err}") from None
    channels = model.data.channels
    with Progress(console=stderr_console(), transient=True) as bar:
        task = bar.add_task("translating", total=len(paths))
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                batch = torch.stack([load_image(p, channels) for p in chunk]).to(model.device)
                with torch.inference_mode():
                    result = _translate(model, batch, direction, max_size)
                for image, path in zip(result.float().cpu(), chunk, strict=True):
                    target = out / path.relative_to(folder)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    save_image(image.clamp(0, 1), target)
                bar.advance(task, len(chunk))
    return len(paths)


def _translate(
    model: Model, batch: torch.Tensor, direction: str | None, max_size: int | None
) -> torch.Tensor:
    height, width = batch.shape[-2:]
    if max_size is None or max(height, width) <= max_size:
        return model.translate(batch, direction)
    scale = max_size / max(height, width)
    small = (max(1, round(height * scale)), max(1, round(width * scale)))
    reduced = F.interpolate(batch, size=small, mode="bilinear", antialias=True, align_corners=False)
    result = model.translate(reduced, direction)
    return F.interpolate(result, size=(height, width), mode="bilinear", align_corners=False)
