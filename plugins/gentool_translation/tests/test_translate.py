"""translate on folders as a user hands them over: odd sizes, grey models, bad files and bad
options; and the summaries and bench operations the translation families report."""

import numpy as np
import pytest
import torch
from PIL import Image

from gentool.api import DataInfo, DataKind, UserError
from gentool.data.images import save_image
from gentool.metrics import fid
from gentool.scoring import score_source
from gentool.translating import translate_folder
from gentool_translation.config import CycleGANConfig, Pix2PixConfig
from gentool_translation.cyclegan import CycleGANModel
from gentool_translation.pix2pix import Pix2PixModel

SIZE = 32


def cyclegan(channels: int = 3) -> CycleGANModel:
    torch.manual_seed(0)
    data = DataInfo(kind=DataKind.UNPAIRED, channels=channels, height=SIZE, width=SIZE)
    config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1)
    return CycleGANModel(config, data, torch.device("cpu"))


def pix2pix() -> Pix2PixModel:
    torch.manual_seed(0)
    data = DataInfo(kind=DataKind.PAIRED, channels=3, height=SIZE, width=SIZE)
    return Pix2PixModel(Pix2PixConfig(ngf=4, ndf=4), data, torch.device("cpu"))


def photo(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth gradient with a little texture, like a downscaled photo."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs / max(1, width - 1), ys / max(1, height - 1), 0.5 + 0 * xs], -1)
    pixels = np.clip(base * 200 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    photo(37, 21).save(images / "wide.png")
    photo(9, 50).save(images / "tall.jpg")
    photo(30, 30, "L").save(images / "grey.png")
    (images / "notes.txt").write_text("not an image")
    return images


def test_every_image_comes_back_under_its_name_at_its_size(folder, tmp_path):
    out = tmp_path / "out"
    assert translate_folder(cyclegan(), folder, out, "b2a", batch_size=2) == 3
    assert sorted(p.name for p in out.iterdir()) == ["grey.png", "tall.jpg", "wide.png"]
    for name in ("grey.png", "tall.jpg", "wide.png"):
        with Image.open(folder / name) as source, Image.open(out / name) as result:
            assert result.size == source.size
            assert result.format == source.format
            assert result.mode == "RGB"  # an RGB model's output, whatever the input


def test_a_grey_model_writes_grey_images(folder, tmp_path):
    out = tmp_path / "out"
    translate_folder(cyclegan(channels=1), folder, out, None, batch_size=8)
    for name in ("grey.png", "tall.jpg", "wide.png"):
        with Image.open(out / name) as result:
            assert result.mode == "L"


def test_jpeg_outputs_keep_the_detail(tmp_path):
    image = torch.from_numpy(np.asarray(photo(64, 48), dtype=np.float32) / 255).permute(2, 0, 1)
    save_image(image, tmp_path / "ours.jpg")
    default = Image.fromarray((image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    default.save(tmp_path / "default.jpg")  # PIL's own quality, 75

    def error(name: str) -> float:
        with Image.open(tmp_path / name) as saved:
            pixels = np.asarray(saved, dtype=np.float32) / 255
        return float(np.abs(pixels - image.permute(1, 2, 0).numpy()).mean())

    assert error("ours.jpg") < 0.6 * error("default.jpg")


def test_an_unreadable_image_is_skipped_and_reported_after_the_others(folder, tmp_path, capsys):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with open(folder / "tall.jpg", "rb") as handle:
        (folder / "cut.jpg").write_bytes(handle.read()[:400])  # header fine, pixels missing
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"2 of 5 images could not be read.*3 translated"):
        translate_folder(cyclegan(), folder, out, None, batch_size=8)
    assert sorted(p.name for p in out.iterdir()) == ["grey.png", "tall.jpg", "wide.png"]
    err = capsys.readouterr().err
    assert "skipped: cannot read image" in err and "broken.png" in err and "cut.jpg" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"max_size": 0}, "--max-size must be at least 1"),
        ({"out": "a-file.txt"}, "--out must be a folder, and .*a-file.txt is a file"),
        ({"images": "in/wide.png"}, "--images must be a folder, and .*wide.png is a file"),
    ],
)
def test_bad_options_are_one_clear_error(folder, tmp_path, options, message):
    (tmp_path / "a-file.txt").write_text("keep me")
    arguments = {"batch_size": 8, "max_size": None, "out": "out", "images": "in", **options}
    with pytest.raises(UserError, match=message):
        translate_folder(
            cyclegan(),
            tmp_path / arguments["images"],
            tmp_path / arguments["out"],
            None,
            batch_size=arguments["batch_size"],
            max_size=arguments["max_size"],
        )
    assert (tmp_path / "a-file.txt").read_text() == "keep me"
    assert not (tmp_path / "out").exists()


def test_max_size_translates_smaller_and_resizes_back(folder, tmp_path):
    out = tmp_path / "out"
    translate_folder(cyclegan(), folder, out, None, batch_size=8, max_size=16)
    with Image.open(out / "wide.png") as result:
        assert result.size == (37, 21)


def test_medians_count_each_image_once_like_the_means(monkeypatch):
    monkeypatch.setenv(fid.ENABLE_ENV, "0")
    g = torch.Generator().manual_seed(1)
    # Noise that the untrained cycle reconstructs badly, then a flat grey that it keeps.
    a = torch.stack([torch.rand(3, SIZE, SIZE, generator=g), torch.full((3, SIZE, SIZE), 0.5)])
    b = torch.rand(7, 3, SIZE, SIZE, generator=g)
    # An unaligned split: 7 items, the 2 A images repeated (a0 a1 a0 a1 a0 a1 a0).
    items = [{"A": a[i % 2], "B": b[i], "A_path": f"a{i % 2}", "B_path": f"b{i}"} for i in range(7)]
    result = score_source(cyclegan(), items, None, 4, torch.device("cpu"))
    once = torch.tensor([row["cycle_A"] for row in result.rows[:2]])
    every = torch.tensor([row["cycle_A"] for row in result.rows])
    assert float(once.median()) != pytest.approx(float(every.median()))
    assert result.summary["median_cycle_A"] == pytest.approx(float(once.median()))
    assert result.summary["mean_cycle_A"] == pytest.approx(float(once.mean()))


def test_bench_extras_do_not_repeat_the_translate_it_times_already():
    # bench times model.translate (the default direction) itself.
    assert set(cyclegan().benchmarks(2)) == {"translate_b2a"}
    assert pix2pix().benchmarks(2) == {}


def test_a_refused_direction_creates_no_output_folder(folder, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="trained a2b and translates only that way"):
        translate_folder(pix2pix(), folder, out, "b2a", batch_size=2)
    assert not out.exists()
    assert capsys.readouterr().err == ""  # no progress bar's leftovers in a log


def test_an_out_folder_under_a_file_is_one_clear_error(folder, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--out: cannot create the folder"):
        translate_folder(cyclegan(), folder, tmp_path / "file" / "out", None, batch_size=2)


def test_an_output_that_cannot_be_written_is_one_clear_error(folder, tmp_path):
    out = tmp_path / "out"
    (out / "wide.png").mkdir(parents=True)  # a folder where an output file must go
    with pytest.raises(UserError, match=r"--out: cannot write .*wide\.png: Is a directory"):
        translate_folder(cyclegan(), folder, out, None, batch_size=1)
