"""Small faults, one line each: a FIFO as --checkpoint, --lr 0, an empty item in a tuple
option, a folder too small to hold out validation images, a corrupt archive placed by
hand, an empty trainB/ taken for data, outputs cut short by a full disk."""

import os

import pytest
from PIL import Image

import gentool.data.images as images
from gentool.cli import main
from gentool.data import catalog
from gentool.data.download import archive_path, fetch_dataset
from gentool.errors import UserError

TINY = ["--hidden-features", "8", "--num-layers", "1", "-q"]


def _one_error_line(capsys, message: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("maf") / "run"
    args = ["train", "maf", "--data", "digits", *TINY, "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    return out


def test_a_fifo_as_checkpoint_is_not_called_missing(tmp_path, capsys):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    assert main(["sample", "maf", "-c", str(fifo), "--out", str(tmp_path / "s.png")]) == 2
    _one_error_line(capsys, f"--checkpoint: {fifo} is not a regular file")


@pytest.mark.parametrize("family", ["maf", "fastflow", "cyclegan"])
@pytest.mark.parametrize("value", ["0", "-0.0"])
def test_a_learning_rate_of_zero_is_refused(tmp_path, capsys, family, value):
    assert main(["train", family, "--data", "digits", "--lr", value]) == 2
    _one_error_line(capsys, f"--lr: '{value}' must be above 0")


@pytest.mark.parametrize("value", ["32,,32", "32,", ",32"])
def test_an_empty_item_of_a_tuple_option_is_refused(tmp_path, capsys, value):
    args = ["train", "maf", "--data", "digits", "--hidden-features", value]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, f"--hidden-features: '{value}' has an empty item")
    assert not (tmp_path / "run").exists()


def test_a_folder_of_one_image_says_it_has_no_validation_and_still_draws(tmp_path, capsys):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.new("L", (8, 8), 200).save(folder / "0.png")
    out = tmp_path / "run"
    args = ["train", "maf", "--data", str(folder), *TINY, "--epochs", "2", "--out", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("holds out none: no validation loss, no early stopping") == 1
    assert "--val-fraction 0.1 of 1 training images" in err
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "epoch_0001.png",
        "epoch_0002.png",
    ]


def test_a_corrupt_archive_placed_by_hand_is_moved_aside(tmp_path):
    root = tmp_path / "cache" / "apple2orange"
    root.parent.mkdir(parents=True)
    placed = archive_path("http://127.0.0.1:9/apple2orange.zip", root)
    placed.write_bytes(b"PK\x03\x04 not really a zip, but the user's only copy")
    with pytest.raises(UserError) as info:
        fetch_dataset("http://127.0.0.1:9/apple2orange.zip", root)
    aside = placed.with_name("apple2orange.zip.rejected")
    assert f"it was moved aside to {aside}" in str(info.value)
    assert aside.read_bytes().endswith(b"the user's only copy") and not placed.exists()
    assert not root.exists()


def test_a_corrupt_download_is_still_removed(tmp_path):
    source = tmp_path / "served" / "apple2orange.zip"
    source.parent.mkdir()
    source.write_bytes(b"PK\x03\x04 a download cut short")
    root = tmp_path / "cache" / "apple2orange"
    with pytest.raises(UserError, match="it was removed"):
        fetch_dataset(source.as_uri(), root)
    assert [p.name for p in root.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_an_empty_train_b_is_not_a_cached_data_set(tmp_path):
    root = tmp_path / "horse2zebra"
    (root / "trainA").mkdir(parents=True)
    (root / "trainB").mkdir()
    Image.new("RGB", (8, 8)).save(root / "trainA" / "0.jpg")
    assert not catalog.is_cached("horse2zebra", root)
    Image.new("RGB", (8, 8)).save(root / "trainB" / "0.jpg")
    assert catalog.is_cached("horse2zebra", root)


def test_gentool_datasets_says_so(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("GENTOOL_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    root = home / "datasets" / "horse2zebra"
    (root / "trainA").mkdir(parents=True)
    (root / "trainB").mkdir()
    Image.new("RGB", (8, 8)).save(root / "trainA" / "0.jpg")
    assert main(["datasets"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "horse2zebra" in line)
    assert "│ no " in row, row


def _full_disk(monkeypatch, after: int = 10):
    """Writes of image files fail part-way, as on a full disk."""
    save = Image.Image.save

    def partly(picture, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG"[:after])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", partly)
    return save


@pytest.mark.parametrize("grid", [True, False])
def test_a_full_disk_in_sample_leaves_no_empty_file(run, tmp_path, monkeypatch, capsys, grid):
    out = tmp_path / ("s.png" if grid else "folder")
    _full_disk(monkeypatch)
    assert main(["sample", "maf", "-c", str(run), "-n", "2", "--out", str(out)]) == 2
    _one_error_line(capsys, "No space left on device")
    left = [out] if grid else list(out.iterdir())
    assert not any(p.exists() for p in left), left
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_full_disk_in_score_csv_leaves_no_empty_file(run, tmp_path, monkeypatch, capsys):
    csv = tmp_path / "scores.csv"
    real_open = open

    def full(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".part"):
            handle.close()
            raise OSError(28, "No space left on device")
        return handle

    monkeypatch.setattr("builtins.open", full)
    args = ["score", "maf", "-c", str(run), "--data", "digits", "--csv", str(csv), "--json"]
    assert main(args) == 2
    _one_error_line(capsys, f"--csv: cannot write {csv}: No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_translate_leaves_no_empty_file(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = ["train", "cyclegan", "--data", "toy-shapes", "--max-steps", "1", "--image-size", "16"]
    small = ["--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--discriminator", "n_layers"]
    assert main([*args, *small, "--n-layers-d", "2", "-q", "--out", str(run)]) == 0
    capsys.readouterr()
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(inputs / "a.png")
    out = tmp_path / "out"
    _full_disk(monkeypatch)
    args = ["translate", "cyclegan", "-c", str(run), "--images", str(inputs), "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 2
    _one_error_line(capsys, f"--out: cannot write {out / 'a.png'}: No space left on device")
    assert not out.exists() or list(out.iterdir()) == []


def test_a_saved_image_replaces_an_older_one_whole(tmp_path):
    import torch

    path = tmp_path / "grid.png"
    images.save_image(torch.zeros(3, 4, 4), path)
    images.save_image(torch.ones(3, 4, 4), path)
    assert Image.open(path).getpixel((0, 0)) == (255, 255, 255)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_the_readme_does_not_call_digits_a_default():
    """`--data` is required; digits is built in, not a default."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "embedded default" not in readme and "`--data` has no\ndefault" in readme
