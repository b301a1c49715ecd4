"""Translating a folder of images of any size with a trained translation model."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from gentool.errors import UserError, writing
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
    An image that cannot be read does not stop the others: after the rest are written, a
    :class:`UserError` names what was skipped. Returns the number of images written.
    """
    from rich.progress import Progress

    from gentool.data.images import list_images, load_image, read_header, save_image

    folder, out = Path(folder), Path(out)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if max_size is not None and max_size < 1:
        raise UserError(f"--max-size must be at least 1, got {max_size}")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--images must be a folder, and {folder} is a file; put it in a folder")
    if not folder.is_dir():
        raise UserError(f"--images: no such folder: {folder}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out must be a folder, and {out} is a file; choose another --out")
    paths = list_images(folder)
    if not paths:
        raise UserError(f"--images: no image files in {folder}")
    if out.resolve() == folder.resolve():
        raise UserError("--out must differ from --images (outputs keep the input names)")
    console = stderr_console()
    skipped: list[str] = []  # why each unreadable file was left out

    def skip(err: UserError) -> None:
        skipped.append(str(err))
        console.print(f"skipped: {err}", markup=False, highlight=False)

    groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for path in paths:
        try:
            header = read_header(path)
        except UserError as err:
            skip(err)
            continue
        groups[(header.width, header.height)].append(path)
    channels = model.data.channels
    written = 0
    # Off where stderr is no terminal (a log file): there a transient bar leaves a blank line.
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("translating", total=len(paths) - len(skipped))
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk, images = [], []
                for path in members[start : start + batch_size]:
                    try:
                        images.append(load_image(path, channels))
                        chunk.append(path)
                    except UserError as err:  # a file whose header reads but pixels do not
                        skip(err)
                        bar.advance(task)
                if not chunk:
                    continue
                batch = torch.stack(images).to(model.device)
                with torch.inference_mode():
                    result = _translate(model, batch, direction, max_size)
                if not written:  # only now: a model that refuses the direction leaves no folder
                    _make_folder(out)
                for image, path in zip(result.float().cpu(), chunk, strict=True):
                    with writing("--out", out / path.name):
                        save_image(image, out / path.name)
                written += len(chunk)
                bar.advance(task, len(chunk))
    if skipped:
        raise UserError(
            f"{len(skipped)} of {len(paths)} images could not be read (listed above) and were "
            f"skipped; {written} translated into {out}"
        )
    return written


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file on the path, no permission
        raise UserError(f"--out: cannot create the folder {out}: {err.strerror}") from None


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
