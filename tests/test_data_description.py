"""The data description in checkpoints: today's JSON, old and plugin dicts, the direction."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gentool.data import digits, procedural, torchvision_sets
from gentool.data.base import (
    DataInfo,
    DataKind,
    DataOptions,
    Direction,
    Preprocessing,
    parse_direction,
)
from gentool.data.folders import load_folder
from gentool.data.translation import load_translation_folder
from gentool.errors import UserError

#: ``gentool.data`` exactly as gentool wrote it before the description was typed.
WRITTEN = {
    "digits": (
        '{"channels": 1, "class_names": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], '
        '"height": 8, "kind": "images", "levels": 17, "normal_class": "3", '
        '"preprocessing": {"antialias": false, "channels": 1, "interpolation": null, '
        '"resize": [8, 8], "scale": "value / 16", "split": {"seed": 0, "stratified": true, '
        '"test_fraction": 0.2}}, "source": "digits", "width": 8}'
    ),
    "digits16": (
        '{"channels": 3, "class_names": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], '
        '"height": 16, "kind": "images", "levels": 17, "normal_class": null, '
        '"preprocessing": {"antialias": true, "channels": 3, "interpolation": "bilinear", '
        '"resize": [16, 16], "scale": "value / 16", "split": {"seed": 0, "stratified": true, '
        '"test_fraction": 0.2}}, "source": "digits", "width": 16}'
    ),
    "mnist": (
        '{"channels": 1, "class_names": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], '
        '"height": 28, "kind": "images", "levels": 256, "normal_class": "4", '
        '"preprocessing": {"antialias": false, "channels": 1, "interpolation": null, '
        '"resize": [28, 28], "scale": "value / 255"}, "source": "mnist", "width": 28}'
    ),
    "flat": (
        '{"channels": 1, "class_names": [], "height": 4, "kind": "images", "levels": 256, '
        '"normal_class": null, "preprocessing": {"antialias": true, "channels": 1, '
        '"interpolation": "bilinear", "layout": "flat", "range": [0.0, 1.0], "resize": [4, '
        '6], "split": {"seed": 0, "test_fraction": 0.2}}, "source": "flat", "width": 6}'
    ),
    "mvtec": (
        '{"channels": 1, "class_names": ["good", "crack"], "height": 4, "kind": "images", '
        '"levels": 256, "normal_class": "good", "preprocessing": {"antialias": true, '
        '"channels": 1, "interpolation": "bilinear", "layout": "mvtec", "range": [0.0, 1.0], '
        '"resize": [4, 4]}, "source": "mvtec", "width": 4}'
    ),
    "classes": (
        '{"channels": 1, "class_names": ["cat", "dog"], "height": 7, "kind": "images", '
        '"levels": 256, "normal_class": "dog", "preprocessing": {"antialias": true, '
        '"channels": 1, "interpolation": "bilinear", "layout": "classes", "range": [0.0, '
        '1.0], "resize": [7, 5], "split": {"seed": 0, "test_fraction": 0.2}}, '
        '"source": "classes", "width": 5}'
    ),
    "toy": (
        '{"channels": 3, "class_names": [], "height": 32, "kind": "unpaired", "levels": 256, '
        '"normal_class": null, "preprocessing": {"channels": 3, "direction": "a2b", '
        '"generated": true, "range": [0.0, 1.0], "resize": [32, 32]}, '
        '"source": "toy-shapes", "width": 32}'
    ),
    "toy_paired_b2a": (
        '{"channels": 3, "class_names": [], "height": 16, "kind": "paired", "levels": 256, '
        '"normal_class": null, "preprocessing": {"channels": 3, "direction": "b2a", '
        '"generated": true, "range": [0.0, 1.0], "resize": [16, 16]}, '
        '"source": "toy-shapes-paired", "width": 16}'
    ),
    "paired": (
        '{"channels": 3, "class_names": [], "height": 8, "kind": "paired", "levels": 256, '
        '"normal_class": null, "preprocessing": {"channels": 3, "direction": "b2a", '
        '"layout": "paired-folders", "range": [0.0, 1.0], "split": {"seed": 0, '
        '"test_fraction": 0.2}, "test": {"interp": "bicubic", "resize": [8, 8]}, '
        '"train": {"crop": [8, 8], "flip": true, "interp": "bicubic", '
        '"method": "resize_and_crop", "resize": [9, 9]}}, "source": "paired", "width": 8}'
    ),
    "unpaired": (
        '{"channels": 3, "class_names": [], "height": 8, "kind": "unpaired", "levels": 256, '
        '"normal_class": null, "preprocessing": {"channels": 3, "direction": "a2b", '
        '"layout": "unaligned", "range": [0.0, 1.0], "test": {"interp": "bicubic", '
        '"resize": [8, 8]}, "train": {"crop": [8, 8], "flip": false, "interp": "bicubic", '
        '"method": "resize_and_crop", "resize": [10, 10]}}, "source": "unpaired", '
        '"width": 8}'
    ),
    "aligned": (
        '{"channels": 3, "class_names": [], "height": 8, "kind": "paired", "levels": 256, '
        '"normal_class": null, "preprocessing": {"channels": 3, "direction": "a2b", '
        '"layout": "aligned", "range": [0.0, 1.0], "test": {"interp": "bicubic", '
        '"resize": [8, 8]}, "train": {"crop": [8, 8], "flip": true, "interp": "bicubic", '
        '"method": "resize_and_crop", "resize": [9, 9]}}, "source": "aligned", "width": 8}'
    ),
}


def write(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, 128, dtype=np.uint8), mode).save(path)


def _mnist(root: Path, options: DataOptions, monkeypatch) -> DataInfo:
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 20), ("t10k", 6)):
        for kind, array in (
            ("images-idx3", np.zeros((count, 28, 28))),
            ("labels-idx1", np.arange(count) % 10),
        ):
            shape = b"".join(struct.pack(">I", d) for d in array.shape)
            header = struct.pack(">I", 0x0800 + array.ndim) + shape
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
    return torchvision_sets.load("mnist", options, root).info


def _loaded(name: str, tmp: Path, monkeypatch) -> DataInfo:
    """The description today's loader writes for the data set ``name`` of :data:`WRITTEN`."""
    if name == "digits":
        return digits.load(DataOptions(normal_class="3")).info
    if name == "digits16":
        return digits.load(DataOptions(image_size=16, channels=3)).info
    if name == "mnist":
        return _mnist(tmp, DataOptions(normal_class="4"), monkeypatch)
    if name == "toy":
        return procedural.load(DataOptions()).info
    if name == "toy_paired_b2a":
        return procedural.load_paired(DataOptions(direction="b2a", image_size=16)).info
    folder = tmp / name
    if name == "flat":
        for i in range(5):
            write(folder / f"{i}.png", (6, 4), "L")
        return load_folder(folder, DataOptions(), source=name).info
    if name == "mvtec":
        for i in range(2):
            write(folder / "train" / "good" / f"{i}.png", (8, 8))
        write(folder / "test" / "good" / "0.png", (8, 8))
        write(folder / "test" / "crack" / "0.png", (8, 8))
        return load_folder(folder, DataOptions(image_size=4, channels=1), source=name).info
    if name == "classes":
        for label in ("cat", "dog"):
            for i in range(5):
                write(folder / label / f"{i}.png", (5, 7))
        options = DataOptions(normal_class="dog", channels=1)
        return load_folder(folder, options, source=name).info
    if name == "paired":
        for i in range(5):
            write(folder / "A" / f"{i}.png", (8, 8))
            write(folder / "B" / f"{i}.png", (8, 8))
        options = DataOptions(image_size=8, direction="b2a")
        return load_translation_folder(folder, DataKind.PAIRED, options, source=name).info
    if name == "unpaired":
        for split in ("trainA", "trainB", "testA", "testB"):
            for i in range(2):
                write(folder / split / f"{i}.png", (8, 8))
        options = DataOptions(image_size=8, load_size=10, flip=False)
        return load_translation_folder(folder, DataKind.UNPAIRED, options, source=name).info
    assert name == "aligned"
    for split in ("train", "test"):
        for i in range(2):
            write(folder / split / f"{i}.png", (16, 8))
    options = DataOptions(image_size=8)
    return load_translation_folder(folder, DataKind.PAIRED, options, source=name).info


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_a_written_description_loads_and_writes_the_same_json(name):
    text = WRITTEN[name]
    info = DataInfo.from_json(text)
    assert info.to_json() == text
    assert DataInfo.from_json(info.to_json()) == info


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_the_loaders_write_the_description_they_always_wrote(name, tmp_path, monkeypatch):
    assert _loaded(name, tmp_path, monkeypatch).to_json() == WRITTEN[name]


def test_the_typed_fields_read_what_the_json_says():
    digits_info = DataInfo.from_json(WRITTEN["digits"]).preprocessing
    assert (digits_info.channels, digits_info.resize, digits_info.interpolation) == (
        1,
        (8, 8),
        None,
    )
    assert digits_info.direction is None and digits_info.details["scale"] == "value / 16"
    flat = DataInfo.from_json(WRITTEN["flat"]).preprocessing
    assert (flat.channels, flat.resize, flat.interpolation) == (1, (4, 6), "bilinear")
    assert flat.details["layout"] == "flat"
    paired = DataInfo.from_json(WRITTEN["paired"])
    assert paired.preprocessing.direction is Direction.B2A and paired.direction == "b2a"
    assert paired.preprocessing.resize is None  # described per split, in train and test
    assert paired.preprocessing.details["train"]["crop"] == [8, 8]
    assert DataInfo.from_json(WRITTEN["toy"]).direction is Direction.A2B


@pytest.mark.parametrize(
    "preprocessing",
    [
        {},  # a description older than its preprocessing
        {"generator": "bars, p(lit) = 0.3, seed 0"},  # a plugin's own keys
        {"channels": 3, "direction": "b2a", "resize": [4, 4], "crop": {"size": 3}},
        # Values that are not of a field's type are kept as they are, never dropped.
        {"channels": "rgb", "resize": [4], "interpolation": 2, "direction": "AtoB"},
        {"channels": None, "resize": None, "direction": None},
    ],
)
def test_old_and_plugin_descriptions_round_trip(preprocessing):
    text = json.dumps(
        {"kind": "paired", "channels": 3, "height": 4, "width": 4, "preprocessing": preprocessing}
    )
    info = DataInfo.from_json(text)
    assert json.loads(info.to_json())["preprocessing"] == preprocessing
    assert info.preprocessing.to_dict() == preprocessing
    # A plugin may still describe its data with a plain dict.
    made = DataInfo(DataKind.PAIRED, 3, 4, 4, preprocessing=preprocessing)
    assert made.preprocessing == info.preprocessing


def test_a_description_missing_its_preprocessing_defaults():
    info = DataInfo.from_json('{"kind": "paired", "channels": 3, "height": 4, "width": 4}')
    assert info.preprocessing == Preprocessing() and info.direction is Direction.A2B
    assert json.loads(info.to_json())["preprocessing"] == {}


def test_a_preprocessing_that_is_no_object_is_damaged():
    text = '{"kind": "images", "channels": 1, "height": 2, "width": 2, "preprocessing": [1]}'
    with pytest.raises(TypeError, match="preprocessing must be a JSON object"):
        DataInfo.from_json(text)


def test_a_typed_value_is_never_also_a_detail():
    with pytest.raises(ValueError, match="channels both typed and in details"):
        Preprocessing(channels=1, details={"channels": 3})


@pytest.mark.parametrize(
    ("text", "direction"),
    [("a2b", "a2b"), ("B2A", "b2a"), ("AtoB", "a2b"), ("BtoA", "b2a"), (None, "a2b")],
)
def test_parse_direction(text, direction):
    assert parse_direction(text) is Direction(direction)


def test_a_bad_direction_names_the_flag():
    with pytest.raises(UserError, match=r"^--direction: 'up' is not a2b or b2a$"):
        parse_direction("up")


def test_options_from_a_description_read_data_as_the_model_saw_it():
    tall = DataInfo(DataKind.IMAGES, 1, 4, 6, normal_class="3", preprocessing={"resize": [4, 6]})
    options = DataOptions.from_info(tall)
    assert (options.image_size, options.image_hw, options.channels) == (None, (4, 6), 1)
    assert options.normal_class == "3" and options.seed == 0
    assert DataOptions.from_info(tall, normal_class="5").normal_class == "5"
    square = DataOptions.from_info(DataInfo.from_json(WRITTEN["toy_paired_b2a"]))
    assert (square.image_size, square.image_hw, square.direction) == (16, (16, 16), "b2a")


def test_data_kind_lives_with_the_data_contract_and_family_re_exports_it():
    from gentool.family import DataKind as FamilyDataKind

    assert FamilyDataKind is DataKind
    # The data contract imports no model layer (no import circle) and no torch.
    code = (
        "import sys\n"
        "import gentool.data.base\n"
        "assert 'gentool.family' not in sys.modules and 'gentool.model' not in sys.modules\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
