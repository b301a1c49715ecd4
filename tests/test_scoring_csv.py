"""``gentool score --csv``: the label column is the class name, whatever the layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gentool.data.base import DataInfo, DataOptions
from gentool.data.folders import load_folder
from gentool.data.resolve import resolve_images
from gentool.data.sources import SplitSource, TensorImages
from gentool.family import DataKind
from gentool.scoring import score_source, write_results


class MeanScorer:
    """The smallest model ``score_source`` accepts: an image's score is its mean pixel."""

    def eval(self) -> MeanScorer:
        return self

    def begin_scoring(self) -> None:
        pass

    def score_batch(self, batch):
        return {"nll": batch[0].flatten(1).mean(dim=1)}

    def finish_scoring(self) -> dict:
        return {}


def write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)


def score_csv(dataset, source, tmp_path: Path) -> list[dict[str, str]]:
    result = score_source(MeanScorer(), dataset, source, 4, torch.device("cpu"))
    out = tmp_path / "scores.csv"
    write_results(result, as_json=True, csv=out)
    with open(out, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_label_is_the_class_name_for_class_folders_and_mvtec(tmp_path, capsys):
    for name in ("0", "3"):
        for i in range(2):
            write_png(tmp_path / "digits" / name / f"d{i:03d}.png", 10 * i)
    dataset, source = resolve_images(tmp_path / "digits", DataOptions(normal_class="3"))
    rows = score_csv(dataset, source, tmp_path)
    assert list(rows[0]) == ["index", "path", "nll", "label", "anomaly"]
    assert [(Path(r["path"]).parent.name, r["label"], r["anomaly"]) for r in rows] == [
        ("0", "0", "1"),
        ("0", "0", "1"),
        ("3", "3", "0"),
        ("3", "3", "0"),
    ]
    for name in ("good", "crack"):
        write_png(tmp_path / "bottle" / "test" / name / "000.png", 50)
    dataset, source = resolve_images(tmp_path / "bottle" / "test", DataOptions(normal_class="good"))
    rows = score_csv(dataset, source, tmp_path)
    assert [(r["label"], r["anomaly"]) for r in rows] == [("crack", "1"), ("good", "0")]
    capsys.readouterr()


def test_label_for_a_split_and_for_names_that_are_not_folders(tmp_path, capsys):
    for name in ("cat", "dog"):
        for i in range(5):
            write_png(tmp_path / "pets" / name / f"{i}.png", i)
    source = load_folder(tmp_path / "pets", DataOptions(normal_class="1"))  # an index: dog
    rows = score_csv(source.split("test"), source, tmp_path)
    assert {(Path(r["path"]).parent.name, r["label"]) for r in rows} == {
        ("cat", "cat"),
        ("dog", "dog"),
    }
    assert {r["label"]: r["anomaly"] for r in rows} == {"cat": "1", "dog": "0"}
    names = ("T-shirt/top", "Trouser")
    info = DataInfo(DataKind.IMAGES, 1, 2, 2, class_names=names, normal_class="Trouser")
    images = TensorImages(torch.zeros(3, 2, 2), torch.tensor([1, 0, 1]))
    rows = score_csv(images, SplitSource(info, {"test": images}), tmp_path)
    assert [r["label"] for r in rows] == ["Trouser", "T-shirt/top", "Trouser"]
    capsys.readouterr()


def test_unlabelled_items_have_no_label_column_and_nameless_classes_their_number(tmp_path, capsys):
    for i in range(3):
        write_png(tmp_path / "flat" / f"{i}.png", i)
    dataset, source = resolve_images(tmp_path / "flat", DataOptions())
    rows = score_csv(dataset, source, tmp_path)
    assert list(rows[0]) == ["index", "path", "nll"]
    info = DataInfo(DataKind.IMAGES, 1, 2, 2)  # a plugin's source that names no classes
    images = TensorImages(torch.zeros(3, 2, 2), torch.tensor([2, -1, 0]))
    rows = score_csv(images, SplitSource(info, {"test": images}), tmp_path)
    assert [r["label"] for r in rows] == ["2", "", "0"]
    assert "anomaly" not in rows[0]
    capsys.readouterr()
