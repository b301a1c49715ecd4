"""Image files to float tensors in [0, 1] (any bit depth or colour mode, listed and resized),
and tensors back to 8-bit files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gentool.errors import UserError, partial_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "SAVE_EXTENSIONS",
    "ImageHeader",
    "is_image_file",
    "list_images",
    "load_image",
    "read_header",
    "resize_image",
    "save_image",
    "subfolders",
    "to_channels",
]

#: File name endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

#: File name endings :func:`save_image` writes.
SAVE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
# PIL's defaults (JPEG quality 75 with 4:2:0 chroma, lossy WebP) would blur the very
# textures a translation model or a sampler produces.
_SAVE_OPTIONS = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True}}

# ITU-R 601-2 luma, the weights PIL's convert("L") uses, so 8-bit and 16-bit files agree.
_LUMA = (0.299, 0.587, 0.114)
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageHeader:
    """What a file says about itself without decoding its pixels."""

    mode: str  # PIL's mode ("RGB", "I;16", "F", ...)
    width: int
    height: int
    channels: int  # natural channel count once loaded: 1 or 3
    levels: int  # quantisation levels of a pixel value (256 for 8-bit)


def is_image_file(path: Path) -> bool:
    """An image by its extension (any case); hidden files (``.name``) never are."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name; other files are ignored.

    A broken link with an image's name is listed, so that reading it names it rather than
    the image going missing without a word.
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError as err:
        raise UserError(f"cannot list {folder}: {err.strerror or err}") from err
    return sorted(p for p in entries if is_image_file(p) and (p.is_file() or _broken_link(p)))


def _broken_link(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def subfolders(folder: Path) -> list[Path]:
    """The visible folders directly inside ``folder``, sorted by name."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError as err:
        raise UserError(f"cannot list {folder}: {err.strerror or err}") from err
    return sorted(p for p in entries if p.is_dir() and not p.name.startswith("."))


def read_header(path: Path) -> ImageHeader:
    """Mode, size, channels and levels of an image file, read cheaply (no pixel decoding)."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            mode, (width, height) = img.mode, img.size
            if _orientation(img) in _SIDEWAYS:  # as load_image returns it: upright
                width, height = height, width
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ...) for bad files
        raise UserError(f"cannot read image {path}: {_reason(err)}") from err
    depth = _png_bit_depth(path)
    if mode == "1":
        levels = 2
    elif depth == 16 or mode.startswith("I;16") or mode == "I":
        levels = 65536
    elif mode == "F":
        levels = 2**24  # float32 resolution in [0, 1]: effectively continuous
    else:
        levels = 256
    channels = 1 if (mode in _GRAY_MODES or mode.startswith("I;16")) else 3
    return ImageHeader(mode, width, height, channels, levels)


def load_image(path: Path, channels: int | None = None) -> torch.Tensor:
    """Read an image file as a float tensor ``[C, H, W]`` in [0, 1].

    8-bit, 16-bit (PNG and TIFF, grey or colour), 32-bit integer and float TIFF, palette,
    CMYK and alpha images all load; alpha is dropped, as the reference loaders do. An EXIF
    orientation (a phone photo taken sideways) is applied, as image viewers do.
    ``channels`` (1 or 3) converts grey to RGB (repeat) or RGB to grey (ITU-R 601 luma);
    None keeps the file's own (1 for grey modes, else 3). A file that cannot be read
    raises :class:`UserError` naming it.
    """
    path = Path(path)
    try:
        image = _decode(path)
    except UserError:
        raise
    except Exception as err:  # any decoder failure is a bad file, reported by its path
        raise UserError(f"cannot read image {path}: {_reason(err)}") from err
    return image if channels is None else to_channels(image, channels)


def to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """``[C, H, W]`` with C in (1, 3) converted to ``channels`` (1 or 3)."""
    have = image.shape[-3]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]).clone()
    if have == 3 and channels == 1:
        weights = image.new_tensor(_LUMA).view(3, 1, 1)
        return (image * weights).sum(dim=-3, keepdim=True)
    raise UserError(f"cannot convert a {have}-channel image to {channels} channels (use 1 or 3)")


def resize_image(
    image: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear"
) -> torch.Tensor:
    """Resize ``[C, H, W]`` (or a batch ``[B, C, H, W]``) to ``size = (H, W)``.

    Bilinear and bicubic use antialiasing, so large downscales (MVTec's 1024 px to 64 px)
    average rather than alias; values are clamped back into [0, 1] (bicubic overshoots).
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    if interpolation == "nearest":
        out = F.interpolate(batch, size=size, mode="nearest")
    else:
        out = F.interpolate(batch, size=size, mode=interpolation, antialias=True)
    out = out.clamp_(0.0, 1.0)
    return out if image.dim() == 4 else out.squeeze(0)


def save_image(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Write ``[C, H, W]``, or a batch ``[B, C, H, W]`` as a grid of ``nrow`` per row (the
    layout of torchvision's ``make_grid``), in [0, 1] as an 8-bit file of the format the
    suffix names (:data:`SAVE_EXTENSIONS`): grey ("L") for one channel, RGB for three
    (WebP has no grey mode: Pillow stores grey as RGB); JPEG at quality 95, WebP lossless."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in SAVE_EXTENSIONS:
        raise UserError(
            f"{path}: cannot write {path.suffix or 'a file without an extension'}; "
            f"use {', '.join(SAVE_EXTENSIONS)}"
        )
    image = images.detach().float().cpu()
    if image.dim() == 4:
        from torchvision.utils import make_grid

        grey = image.shape[1] == 1
        image = make_grid(image, nrow=nrow)  # always 3 channels: take one back for grey
        image = image[:1] if grey else image
    pixels = image.clamp(0, 1).mul(255).add_(0.5).to(torch.uint8)
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    file_format = Image.registered_extensions()[path.suffix.lower()]
    picture = Image.fromarray(array)  # H x W uint8 is "L", H x W x 3 is "RGB"
    with partial_file(path) as partial:  # a full disk leaves no empty or cut image
        picture.save(partial, format=file_format, **_SAVE_OPTIONS.get(file_format, {}))


def _decode(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as img:
        orientation = _orientation(img)
        if _png_bit_depth(path) == 16:
            image = _decode_png16(path)
        else:
            img.load()
            array = _pil_to_array(img)
            if array.ndim == 2:
                array = array[:, :, None]
            image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return _apply_orientation(image, orientation)


# EXIF Orientation (tag 0x0112): how to turn the stored pixels to display them. 1 is as
# stored; 5 to 8 swap width and height.
_ORIENTATION_TAG = 0x0112
_SIDEWAYS = frozenset({5, 6, 7, 8})


def _orientation(img) -> int:
    """The EXIF orientation (1 to 8) of an open PIL image, read without decoding its pixels."""
    if img.format == "TIFF":
        return 1  # PIL turns a TIFF upright itself as it loads it, and gives the upright size
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # PIL would decode the whole PNG to look for an eXIf chunk after the pixels
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block does not make the pixels unreadable
        return 1
    return value if value in range(1, 9) else 1


def _apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """``[C, H, W]`` turned upright as EXIF ``orientation`` says (PIL's ``exif_transpose``)."""
    if orientation in _SIDEWAYS:
        image = image.transpose(-1, -2)  # 5 is the transpose; 6, 7, 8 add a flip
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation == 2:
        image = image.flip(-1)
    elif orientation == 3:
        image = image.flip(-2, -1)
    elif orientation == 4:
        image = image.flip(-2)
    return image.contiguous()


def _decode_png16(path: Path) -> torch.Tensor:
    # PIL silently truncates 16-bit colour PNGs to 8 bits; torchvision keeps every bit.
    from torchvision.io import ImageReadMode, decode_png, read_file

    data = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED)
    keep = 1 if data.shape[0] in (1, 2) else 3  # drop alpha
    return data[:keep].to(torch.int32).to(torch.float32) / 65535.0


def _pil_to_array(img) -> np.ndarray:
    """H x W (grey) or H x W x 3 float32 in [0, 1], whatever PIL's mode."""
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / 65535.0
    if mode == "I":
        values = np.asarray(img).astype(np.float64)
        if values.size and values.min() >= 0 and values.max() <= 65535:
            # How PIL opens most 16-bit files: 16-bit values in a 32-bit container.
            return (values / 65535.0).astype(np.float32)
        return _stretch(values)
    if mode == "F":
        values = np.nan_to_num(np.asarray(img, dtype=np.float32))
        if values.size and values.min() >= 0 and values.max() <= 1:
            return values
        return _stretch(values)  # float data of no fixed range: map its own range to [0, 1]
    if mode in ("L", "RGB"):
        return np.asarray(img, dtype=np.float32) / 255.0
    if mode in ("LA", "La"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode in ("P", "PA"):
        # Palette files with transparency must pass through RGBA to map colours correctly.
        rgba = img.convert("RGBA")
        return np.asarray(rgba, dtype=np.float32)[:, :, :3] / 255.0
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # RGBA, CMYK, YCbCr, ...


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _png_bit_depth(path: Path) -> int | None:
    """The bit depth in a PNG's header (byte 24), or None for other files."""
    if path.suffix.lower() != ".png":
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(25)
    except OSError:
        return None  # the decoder reports the real problem with the file
    if len(head) < 25 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24]


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
