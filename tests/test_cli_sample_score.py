"""``sample`` and ``score`` on a model of non-square grey images: the files they write and read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gentool.api import load_model
from gentool.cli import main
from gentool.data.base import DataOptions
from gentool.data.folders import load_folder
from gentool.data.images import load_image
from gentool.runtime import seed_everything
from gentool.scoring import score_source

HEIGHT, WIDTH = 7, 11


def write_images(folder: Path, count: int, seed: int = 0) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = (rng.random((HEIGHT, WIDTH)) * 255).astype(np.uint8)
        pixels[:, : WIDTH // 2] //= 4  # a left half darker than the right: squashing shows
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny MAF trained on 7 x 11 grey PNGs (height 7, width 11), and its data folder."""
    root = tmp_path_factory.mktemp("rect")
    write_images(root / "data", 20)
    out = root / "run"
    args = ["train", "maf", "--data", str(root / "data"), "--out", str(out), "-q"]
    assert main([*args, "--hidden-features", "16", "--num-layers", "1", "--max-steps", "2"]) == 0
    return out, root / "data"


def expected_nll(out: Path, dataset) -> list[float]:
    """What ``score`` must print: the model's score of the images at their own 7 x 11."""
    model = load_model("maf", out, "cpu")
    assert (model.data.height, model.data.width) == (HEIGHT, WIDTH)
    seed_everything(0)  # score's default --seed
    result = score_source(model, dataset, None, 256, torch.device("cpu"))
    return [row["nll"] for row in result.rows]


def test_score_images_keeps_the_checkpoint_height_and_width(run, tmp_path, capsys):
    out, _ = run
    write_images(tmp_path / "new", 3, seed=1)
    scores = tmp_path / "scores.csv"
    args = ["score", "maf", "-c", str(out), "--images", str(tmp_path / "new"), "--csv", str(scores)]
    assert main(args) == 0
    capsys.readouterr()
    with open(scores, newline="", encoding="utf-8") as handle:
        nll = [float(row["nll"]) for row in csv.DictReader(handle)]
    images = [(load_image(tmp_path / "new" / f"{i:02d}.png", 1), -1) for i in range(3)]
    assert nll == pytest.approx(expected_nll(out, images), rel=1e-5)


def test_score_data_keeps_the_checkpoint_height_and_width(run, capsys):
    out, data = run
    assert main(["score", "maf", "-c", str(out), "--data", str(data), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    test = load_folder(data, DataOptions()).split("test")  # the folder's own 7 x 11
    assert test[0][0].shape == (1, HEIGHT, WIDTH)
    assert summary["mean_nll"] == pytest.approx(float(np.mean(expected_nll(out, test))), rel=1e-5)


def test_grey_samples_are_grey_files(run, tmp_path, capsys):
    out, _ = run
    grid, folder = tmp_path / "grid.png", tmp_path / "each"
    assert main(["sample", "maf", "-c", str(out), "-n", "4", "--out", str(grid)]) == 0
    assert main(["sample", "maf", "-c", str(out), "-n", "2", "--out", str(folder)]) == 0
    capsys.readouterr()
    with Image.open(grid) as image:  # 2 x 2 images of 7 x 11, 2 px of padding around each
        assert (image.mode, image.size) == ("L", (2 * WIDTH + 6, 2 * HEIGHT + 6))
    for path in sorted(folder.iterdir()):
        with Image.open(path) as image:
            assert (image.mode, image.size) == ("L", (WIDTH, HEIGHT))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
        (["--temperature", "nan"], "--temperature must be a positive number, not nan"),
        (["--temperature", "inf"], "--temperature must be a positive number, not inf"),
        (["--out", "{tmp}/q.gif"], ".gif is not an image format gentool writes; give a .png"),
        (["--out", "{tmp}/notes"], "notes: is a file"),
        # Refused before sampling, not with a traceback after it.
        (["--out", "{tmp}/notes/grid.png"], "grid.png cannot be made: " + "{tmp}/notes is a file"),
        (["--out", "{tmp}/notes/each"], "each cannot be made: {tmp}/notes is a file"),
    ],
)
def test_sample_errors_are_one_line(run, tmp_path, capsys, args, message):
    out, _ = run
    (tmp_path / "notes").write_text("mine")
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["sample", "maf", "-c", str(out), "-n", "2", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(tmp=tmp_path) in err, err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # nothing made
    assert (tmp_path / "notes").read_text() == "mine"


def test_an_existing_folder_is_a_folder_whatever_its_name(run, tmp_path, capsys):
    out, _ = run
    folder = tmp_path / "grid.png"
    folder.mkdir()
    assert main(["sample", "maf", "-c", str(out), "-n", "2", "--out", str(folder)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in folder.iterdir()) == ["sample_00000.png", "sample_00001.png"]


@pytest.mark.parametrize(
    ("csv_path", "message"),
    [
        ("{tmp}", "--csv: {tmp} is a folder; give a file name"),
        (
            "{tmp}/notes/scores.csv",
            "--csv: {tmp}/notes/scores.csv cannot be made: {tmp}/notes is a file",
        ),
    ],
)
def test_score_csv_that_cannot_be_written_is_one_line(run, tmp_path, capsys, csv_path, message):
    out, data = run
    (tmp_path / "notes").write_text("mine")
    csv_path = csv_path.format(tmp=tmp_path)
    args = ["score", "maf", "-c", str(out), "--data", str(data), "--csv", csv_path]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {message.format(tmp=tmp_path)}\n", captured.err
    assert captured.out == ""  # refused before scoring
    assert (tmp_path / "notes").read_text() == "mine"
