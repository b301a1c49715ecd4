"""Image loading: bit depths, colour modes, channel conversion, listing, unreadable files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gentool.data.images import (
    list_images,
    load_image,
    read_header,
    resize_image,
    to_channels,
)
from gentool.errors import UserError


def write_png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit PNG written by hand: PIL cannot write 16-bit colour."""
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_rgb_8bit_png(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "x.png")
    image = load_image(tmp_path / "x.png")
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    assert torch.allclose(image, torch.from_numpy(array).permute(2, 0, 1) / 255.0)


def test_grey_16bit_png_keeps_every_bit(tmp_path):
    array = np.array([[0, 1, 256], [4095, 65534, 65535]], dtype=np.uint16)
    write_png16(tmp_path / "g.png", array)
    image = load_image(tmp_path / "g.png")
    assert image.shape == (1, 2, 3)
    assert torch.allclose(image[0].double(), torch.from_numpy(array / 65535.0), atol=1e-7)
    assert read_header(tmp_path / "g.png").levels == 65536


def test_grey_16bit_png_written_by_pil(tmp_path):
    array = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    Image.fromarray(array).save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert torch.allclose(image[0].double(), torch.from_numpy(array / 65535.0), atol=1e-7)


def test_rgb_16bit_png_is_not_truncated_to_8_bits(tmp_path):
    array = np.random.default_rng(1).integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    write_png16(tmp_path / "c.png", array)
    image = load_image(tmp_path / "c.png")
    assert image.shape == (3, 4, 5)
    expected = torch.from_numpy(array.astype(np.float64) / 65535.0).permute(2, 0, 1)
    assert torch.allclose(image.double(), expected, atol=1e-7)
    header = read_header(tmp_path / "c.png")
    assert (header.channels, header.levels) == (3, 65536)


def test_rgba_16bit_png_drops_alpha(tmp_path):
    array = np.random.default_rng(2).integers(0, 65536, (3, 3, 4)).astype(np.uint16)
    write_png16(tmp_path / "a.png", array)
    image = load_image(tmp_path / "a.png")
    expected = torch.from_numpy(array[:, :, :3] / 65535.0).permute(2, 0, 1)
    assert torch.allclose(image.double(), expected, atol=1e-7)


def test_float_tiff_in_unit_range_and_stretched(tmp_path):
    unit = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(unit).save(tmp_path / "u.tif")
    assert torch.allclose(load_image(tmp_path / "u.tif")[0], torch.from_numpy(unit))
    raw = np.linspace(-50, 150, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(raw).save(tmp_path / "r.tif")
    stretched = load_image(tmp_path / "r.tif")[0]
    assert stretched.min() == 0 and stretched.max() == 1
    assert torch.allclose(stretched, torch.from_numpy((raw + 50) / 200), atol=1e-6)


def test_16bit_and_32bit_integer_tiff(tmp_path):
    array = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    Image.fromarray(array).save(tmp_path / "s.tif")
    assert torch.allclose(
        load_image(tmp_path / "s.tif")[0].double(), torch.from_numpy(array / 65535)
    )
    wide = (np.arange(12, dtype=np.int32) * 100_000).reshape(3, 4)
    Image.fromarray(wide).save(tmp_path / "w.tif")
    image = load_image(tmp_path / "w.tif")[0]
    assert image.min() == 0 and image.max() == 1


def test_grey_palette_cmyk_rgba_and_bilevel(tmp_path):
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    assert load_image(tmp_path / "l.png").shape == (1, 1, 3)
    assert torch.allclose(
        load_image(tmp_path / "l.png", channels=3)[:, 0, 1], torch.full((3,), 128 / 255)
    )

    rgb = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(tmp_path / "p.png")
    palette = load_image(tmp_path / "p.png")
    assert palette.shape == (3, 1, 2)
    assert torch.allclose(palette[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))

    rgb.convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    cmyk = load_image(tmp_path / "c.jpg")
    assert cmyk.shape == (3, 1, 2) and cmyk[0, 0, 0] > 0.8 and cmyk[2, 0, 1] > 0.8

    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.shape == (3, 1, 2)
    assert torch.allclose(loaded[:, 0, 0], torch.tensor([10, 20, 30]) / 255.0)

    Image.fromarray(np.array([[True, False]])).convert("1").save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png")[0, 0].tolist() == [1.0, 0.0]


def test_channel_conversion_uses_luma():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(to_channels(rgb, 1), torch.tensor(0.299).view(1, 1, 1))
    grey = torch.rand(1, 2, 2)
    assert torch.equal(to_channels(grey, 3), grey.expand(3, 2, 2))
    with pytest.raises(UserError):
        to_channels(torch.rand(2, 2, 2), 3)


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(UserError, match="broken.png"):
        load_image(bad)
    with pytest.raises(UserError, match="broken.png"):
        read_header(bad)
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 99).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(UserError, match="cut.jpg"):
        load_image(truncated)


def test_list_images_sorted_case_insensitive_no_hidden(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.TIFF", ".hidden.png", "notes.txt", "d.webp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.TIFF", "d.webp"]


def test_a_broken_link_is_listed_and_named_when_read(tmp_path):
    (tmp_path / "real.png").write_bytes(b"")
    (tmp_path / "linked.png").symlink_to(tmp_path / "real.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    assert [p.name for p in list_images(tmp_path)] == ["gone.png", "linked.png", "real.png"]
    with pytest.raises(UserError, match="cannot read image .*gone.png"):
        read_header(tmp_path / "gone.png")


def test_resize_antialiased_and_clamped():
    image = torch.zeros(3, 64, 64)
    image[:, ::2] = 1.0  # stripes alias badly without antialiasing
    small = resize_image(image, (8, 8))
    assert small.shape == (3, 8, 8)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.05)
    edge = torch.zeros(1, 4, 4)
    edge[:, :, 2:] = 1
    big = resize_image(edge, (16, 16), "bicubic")
    assert big.min() >= 0 and big.max() <= 1


def write_with_orientation(path: Path, array: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    options = {"quality": 100, "subsampling": 0} if path.suffix == ".jpg" else {}
    Image.fromarray(array).save(path, exif=exif.tobytes(), **options)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, suffix, orientation):
    """A phone photo taken sideways (6, 8) loads upright, as PIL's exif_transpose shows it,
    and its header gives the upright size."""
    from PIL import ImageOps

    array = (np.random.default_rng(orientation).random((5, 9, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"photo{suffix}"
    write_with_orientation(path, array, orientation)
    with Image.open(path) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float32) / 255
    loaded = load_image(path)
    header = read_header(path)
    assert tuple(loaded.shape) == (3, *upright.shape[:2])
    assert (header.height, header.width) == upright.shape[:2]
    assert torch.allclose(loaded, torch.from_numpy(upright).permute(2, 0, 1), atol=1e-6)
    if orientation == 6 and suffix in (".png", ".tif"):  # lossless: a quarter turn clockwise
        turned = np.rot90(array, -1).astype(np.float32) / 255
        assert torch.equal(loaded, torch.from_numpy(turned).permute(2, 0, 1))


def test_exif_orientation_of_a_16bit_png(tmp_path):
    values = np.arange(5 * 9, dtype=np.uint16).reshape(5, 9) * 1000
    path = tmp_path / "scan.png"
    write_with_orientation(path, values, 8)  # a quarter turn anticlockwise
    header = read_header(path)
    assert (header.height, header.width, header.levels) == (9, 5, 65536)
    expected = torch.from_numpy(np.rot90(values).astype(np.float32) / 65535)
    assert torch.equal(load_image(path)[0], expected)
