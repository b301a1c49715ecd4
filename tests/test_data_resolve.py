"""--data resolution: folders by kind, names, kind mismatches; the plugin and the catalog."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gentool.data import catalog, plugin
from gentool.data.base import DataOptions, DatasetEntry
from gentool.data.resolve import resolve_data
from gentool.errors import UserError
from gentool.family import DataKind

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENTOOL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENTOOL_DATASET_MIRROR", raising=False)
    return tmp_path / "home"


@pytest.fixture
def datasets() -> dict[str, DatasetEntry]:
    entries: list[DatasetEntry] = []
    plugin.register_datasets(entries.append)
    return {e.name: e for e in entries}


def png_bytes(value: int, size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_registered_names_kinds_and_urls(datasets):
    assert {"digits", "mnist", "fashion-mnist", "toy-shapes", "toy-shapes-paired"} <= set(datasets)
    cyclegan = {"apple2orange", "horse2zebra", "summer2winter_yosemite", "monet2photo",
                "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "iphone2dslr_flower",
                "maps-unpaired", "facades-unpaired", "cityscapes-unpaired"}  # fmt: skip
    pix2pix = {"facades", "maps", "cityscapes", "edges2shoes", "edges2handbags", "night2day"}
    assert {n for n in cyclegan if datasets[n].kind is DataKind.UNPAIRED} == cyclegan
    assert {n for n in pix2pix if datasets[n].kind is DataKind.PAIRED} == pix2pix
    assert catalog.ARCHIVES["apple2orange"].url == (
        "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/apple2orange.zip"
    )
    assert catalog.ARCHIVES["facades"].url == (
        "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
    )
    assert catalog.ARCHIVES["facades-unpaired"].url.endswith("/cyclegan/datasets/facades.zip")
    assert datasets["digits"].cached() and datasets["toy-shapes"].cached()
    assert not datasets["apple2orange"].cached() and not datasets["mnist"].cached()
    for entry in datasets.values():
        assert entry.summary and entry.size and "\n" not in entry.summary


def test_plugin_is_light_and_registers_through_the_registry(tmp_path):
    code = (
        "import sys\n"
        "from gentool.registry import Registry, PluginInfo\n"
        "import gentool.data.plugin as p\n"
        "r = Registry(); info = PluginInfo('datasets', 'gentool', '0', True)\n"
        "r.add_plugin(p, info)\n"
        "assert info.error is None, info.error\n"
        "assert [e.cached() for e in r.datasets.values()]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'sklearn' not in sys.modules and 'PIL' not in sys.modules\n"
        "print(len(r.datasets))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
    env["GENTOOL_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 20


def test_names_and_folders(datasets, tmp_path):
    digits = resolve_data("digits", DataKind.IMAGES, DataOptions(), datasets)
    assert digits.info.source == "digits"
    toy = resolve_data("toy-shapes", DataKind.UNPAIRED, DataOptions(image_size=8), datasets)
    assert toy.info.kind is DataKind.UNPAIRED
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(png_bytes(i))
    images = resolve_data(str(folder), DataKind.IMAGES, DataOptions(), datasets)
    assert images.info.kind is DataKind.IMAGES and len(images.split("train")) == 4
    for domain in ("trainA", "trainB"):
        (folder / domain).mkdir()
        (folder / domain / "0.png").write_bytes(png_bytes(1))
    unpaired = resolve_data(str(folder), DataKind.UNPAIRED, DataOptions(image_size=8), datasets)
    assert unpaired.splits() == ("train",)


def test_unknown_name_and_missing_folder(datasets):
    with pytest.raises(UserError, match="unknown dataset 'nope'; named datasets: .*digits.*"):
        resolve_data("nope", DataKind.IMAGES, DataOptions(), datasets)
    with pytest.raises(UserError, match="no folder ./missing/dir"):
        resolve_data("./missing/dir", DataKind.IMAGES, DataOptions(), datasets)


def test_kind_mismatch_names_fitting_datasets(datasets, home):
    with pytest.raises(UserError) as err:
        resolve_data("apple2orange", DataKind.PAIRED, DataOptions(), datasets)
    message = str(err.value)
    assert "unpaired" in message and "paired datasets: " in message and "facades" in message
    with pytest.raises(UserError, match="needs images"):
        resolve_data("toy-shapes", DataKind.IMAGES, DataOptions(), datasets)
    assert not (home / "datasets").exists()  # nothing was downloaded to find out


def test_cityscapes_explains_manual_preparation(datasets, home):
    with pytest.raises(UserError, match="cityscapes-dataset.com"):
        resolve_data("cityscapes", DataKind.PAIRED, DataOptions(), datasets)


def _mirror(tmp_path: Path) -> Path:
    """A copy of the authors' server layout with tiny apple2orange and facades archives."""
    mirror = tmp_path / "mirror"
    (mirror / "cyclegan" / "datasets").mkdir(parents=True)
    (mirror / "pix2pix" / "datasets").mkdir(parents=True)
    for name in ("apple2orange", "facades"):
        with zipfile.ZipFile(mirror / "cyclegan" / "datasets" / f"{name}.zip", "w") as zf:
            for folder in ("trainA", "trainB", "testA", "testB"):
                for i in range(2):
                    zf.writestr(f"{name}/{folder}/{i}.jpg", png_bytes(50 * i, (12, 12)))
    with tarfile.open(mirror / "pix2pix" / "datasets" / "facades.tar.gz", "w:gz") as tf:
        for folder in ("train", "val", "test"):
            for i in range(2):
                data = png_bytes(60 * i, (24, 12))
                info = tarfile.TarInfo(f"facades/{folder}/{i}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return mirror


def test_catalog_downloads_once_through_the_mirror(datasets, tmp_path, monkeypatch, home, capsys):
    mirror = _mirror(tmp_path)
    monkeypatch.setenv("GENTOOL_DATASET_MIRROR", mirror.as_uri())
    options = DataOptions(image_size=8)
    source = resolve_data("apple2orange", DataKind.UNPAIRED, options, datasets)
    assert datasets["apple2orange"].cached()
    assert source.info.source == "apple2orange" and source.splits() == ("train", "test")
    item = source.split("train")[0]
    assert item["A"].shape == (3, 8, 8) and "trainA" in item["A_path"]
    assert capsys.readouterr().out == ""  # progress goes to stderr, never stdout

    # Cached: a second run works with the mirror gone.
    (mirror / "cyclegan" / "datasets" / "apple2orange.zip").unlink()
    again = resolve_data("apple2orange", DataKind.UNPAIRED, options, datasets)
    assert len(again.split("train")) == 2

    paired = resolve_data("facades", DataKind.PAIRED, options, datasets)
    assert paired.splits() == ("train", "test", "val")
    assert paired.split("val")[0]["A"].shape == (3, 8, 8)
    unpaired = resolve_data("facades", DataKind.UNPAIRED, options, datasets)
    assert unpaired.info.source == "facades-unpaired"
    assert "facades-unpaired" in capsys.readouterr().err
    assert sorted(p.name for p in (home / "datasets").iterdir() if not p.name.startswith(".")) == [
        "apple2orange",
        "facades",
        "facades-unpaired",
    ]


def test_catalog_offline_message(datasets, monkeypatch):
    monkeypatch.setenv("GENTOOL_DATASET_MIRROR", "http://127.0.0.1:9")
    with pytest.raises(UserError) as err:
        resolve_data("horse2zebra", DataKind.UNPAIRED, DataOptions(), datasets)
    message = str(err.value)
    assert "\n" not in message and "horse2zebra.zip" in message and "trainA" in message


def test_every_builtin_source_has_a_complete_info_that_round_trips(datasets, tmp_path):
    from gentool.data.base import DataInfo

    folder = tmp_path / "shots"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            (folder / name / f"{i}.png").write_bytes(png_bytes(i))
    sources = [
        resolve_data("digits", DataKind.IMAGES, DataOptions(normal_class="2"), datasets),
        resolve_data("toy-shapes", DataKind.UNPAIRED, DataOptions(), datasets),
        resolve_data("toy-shapes-paired", DataKind.PAIRED, DataOptions(), datasets),
        resolve_data(str(folder), DataKind.IMAGES, DataOptions(image_size=4), datasets),
    ]
    for source in sources:
        info = source.info
        assert info.source and info.channels in (1, 3) and info.height > 0 and info.levels > 1
        assert info.preprocessing
        assert DataInfo.from_json(info.to_json()) == info
        assert set(source.splits()) >= {"train", "test"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DataOptions(channels=2), "--channels must be 1"),
        (DataOptions(image_size=0), "--image-size must be a positive"),
    ],
)
def test_bad_options_are_user_errors(datasets, options, message):
    for name, kind in (("digits", DataKind.IMAGES), ("toy-shapes", DataKind.UNPAIRED)):
        with pytest.raises(UserError, match=message):
            resolve_data(name, kind, options, datasets)


def test_resolve_images_for_scoring(tmp_path):
    from gentool.data.resolve import resolve_images

    test = tmp_path / "bottle" / "test"
    for name, count in (("good", 2), ("crack", 3)):
        (test / name).mkdir(parents=True)
        for i in range(count):
            (test / name / f"{i}.png").write_bytes(png_bytes(i, (10, 10)))
    dataset, source = resolve_images(test, DataOptions(image_size=4, normal_class="good"))
    assert len(dataset) == 5 and len(dataset.paths) == 5  # nothing held out
    assert dataset[0][0].shape == (3, 4, 4)
    labels = dataset.labels
    assert source.anomaly_labels(labels).tolist() == [1, 1, 1, 0, 0]  # crack, crack, ..., good
    flat, flat_source = resolve_images(test / "good", DataOptions(normal_class="3"))
    assert flat.labels.tolist() == [-1, -1] and flat_source.anomaly_labels(flat.labels) is None


def test_a_folder_shadowing_a_dataset_name_is_used_with_a_note(datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    for i in range(5):
        (tmp_path / "digits" / f"{i}.png").write_bytes(png_bytes(i))
    note = io.StringIO()
    monkeypatch.setattr(sys, "stderr", note)
    source = resolve_data("digits", DataKind.IMAGES, DataOptions(), datasets)
    assert source.info.source == "digits" and source.info.shape == (3, 8, 8)  # the folder
    assert "note: using the folder ./digits, not the dataset 'digits'" in note.getvalue()


def test_an_empty_folder_shadowing_a_dataset_name_says_so(datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits" / "sub").mkdir(parents=True)
    (tmp_path / "digits" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError) as err:
        resolve_data("digits", DataKind.IMAGES, DataOptions(), datasets)
    message = str(err.value)
    assert "'digits' is a folder here with no images, and also the name of a dataset" in message
    assert "run from another folder or remove or rename ./digits" in message
    assert "\n" not in message
    (tmp_path / "toy-shapes").mkdir()
    with pytest.raises(UserError, match="'toy-shapes' is a folder here with no images"):
        resolve_data("toy-shapes", DataKind.UNPAIRED, DataOptions(), datasets)
    # A folder with images that fails for another reason keeps the loader's own error.
    (tmp_path / "digits" / "sub" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read image"):
        resolve_data("digits", DataKind.IMAGES, DataOptions(), datasets)


def test_a_file_never_shadows_a_dataset_name(datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").write_text("a file")
    assert resolve_data("digits", DataKind.IMAGES, DataOptions(), datasets).info.levels == 17
    (tmp_path / "pics").write_text("a file")
    with pytest.raises(UserError, match="--data pics: a file"):
        resolve_data("pics", DataKind.IMAGES, DataOptions(), datasets)
