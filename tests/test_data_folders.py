"""Image folders: layout detection, labels, normal class, the fixed split, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gentool.data.base import DataOptions
from gentool.data.folders import load_folder, scan_folder
from gentool.data.images import read_header
from gentool.errors import UserError
from gentool.family import DataKind


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (12, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)


def test_flat_folder_has_no_labels_and_a_fixed_split(tmp_path):
    for i in range(10):
        write_image(tmp_path / f"{i:02d}.png", value=i * 20)
    source = load_folder(tmp_path, DataOptions(seed=5))
    train, test = source.split("train"), source.split("test")
    assert (len(train), len(test)) == (8, 2)
    image, label = train[0]
    assert image.shape == (3, 10, 12) and label == -1
    assert source.info.class_names == () and source.info.preprocessing.details["layout"] == "flat"
    assert source.info.preprocessing.details["split"] == {"test_fraction": 0.2, "seed": 0}
    again = load_folder(tmp_path, DataOptions(seed=99))
    assert again.split("test").paths == test.paths  # the split ignores --seed
    with pytest.raises(UserError, match="no classes"):
        load_folder(tmp_path, DataOptions(normal_class="a"))


def test_class_subfolders_stratified_split_and_normal_class(tmp_path):
    for name, count in (("cat", 10), ("dog", 5)):
        for i in range(count):
            write_image(tmp_path / name / f"{i}.jpg", mode="L")
    source = load_folder(tmp_path, DataOptions(image_size=8))
    assert source.info.class_names == ("cat", "dog")
    assert source.info.shape == (1, 8, 8)  # grey files stay one channel
    test_labels = sorted(int(label) for label in source.split("test").labels)
    assert test_labels == [0, 0, 1]  # 20 % of each class
    assert len(source.split("train")) == 12
    normal = load_folder(tmp_path, DataOptions(normal_class="dog"))
    assert set(normal.split("train").labels.tolist()) == {1}
    assert normal.info.normal_class == "dog"
    assert len(normal.split("test")) == 3
    labels = torch.tensor([0, 1, 1])
    assert normal.anomaly_labels(labels).tolist() == [1, 0, 0]
    by_index = load_folder(tmp_path, DataOptions(normal_class="0"))
    assert by_index.info.normal_class == "cat"
    with pytest.raises(UserError, match="cat, dog"):
        load_folder(tmp_path, DataOptions(normal_class="bird"))


def test_mvtec_layout(tmp_path):
    for i in range(4):
        write_image(tmp_path / "train" / "good" / f"{i:03d}.png", size=(16, 16))
    write_image(tmp_path / "test" / "good" / "000.png", size=(16, 16))
    write_image(tmp_path / "test" / "scratch" / "000.png", size=(16, 16))
    write_image(tmp_path / "test" / "crack" / "000.png", size=(16, 16))
    for defect in ("crack", "scratch"):  # every defect image has its mask (test_data_masks)
        write_image(tmp_path / "ground_truth" / defect / "000_mask.png", size=(16, 16))
    source = load_folder(tmp_path, DataOptions(image_size=8, channels=1))
    info = source.info
    assert info.kind is DataKind.IMAGES
    assert info.class_names == ("good", "crack", "scratch")
    assert info.normal_class == "good" and info.preprocessing.details["layout"] == "mvtec"
    assert info.shape == (1, 8, 8)
    assert set(source.split("train").labels.tolist()) == {0}
    test = source.split("test")
    names = {p.parent.name: int(label) for p, label in zip(test.paths, test.labels, strict=True)}
    assert names == {"good": 0, "crack": 1, "scratch": 2}
    assert source.anomaly_labels(test.labels).tolist() == [0 if n == "good" else 1 for n in names]
    assert "split" not in info.preprocessing.to_dict()


def test_train_test_class_folders(tmp_path):
    for split in ("train", "test"):
        for name in ("a", "b", "c"):
            write_image(tmp_path / split / name / "1.png")
    source = load_folder(tmp_path, DataOptions())
    assert source.info.preprocessing.details["layout"] == "split-classes"
    assert source.info.class_names == ("a", "b", "c")
    assert source.split("test").labels.tolist() == [0, 1, 2]
    with pytest.raises(UserError, match="no 'val' split; it has: train, test"):
        source.split("val")


def test_images_of_other_sizes_are_resized_to_the_first(tmp_path):
    write_image(tmp_path / "a.png", size=(12, 10))
    write_image(tmp_path / "b.png", size=(30, 30))
    write_image(tmp_path / "c.png", size=(12, 10))
    source = load_folder(tmp_path, DataOptions())
    shapes = {
        tuple(source.split(s)[i][0].shape)
        for s in ("train", "test")
        for i in range(len(source.split(s)))
    }
    assert shapes == {(3, 10, 12)}


def test_bad_file_is_named_before_training(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png")
    (tmp_path / "zz_bad.jpg").write_bytes(b"<html>not found</html>")
    with pytest.raises(UserError, match="zz_bad.jpg"):
        load_folder(tmp_path, DataOptions())


def test_helpful_errors_for_wrong_folders(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        scan_folder(tmp_path / "empty")
    write_image(tmp_path / "cyc" / "trainA" / "1.png")
    write_image(tmp_path / "cyc" / "trainB" / "1.png")
    with pytest.raises(UserError, match="unpaired translation set"):
        scan_folder(tmp_path / "cyc")
    write_image(tmp_path / "mvtec" / "bottle" / "train" / "good" / "1.png")
    write_image(tmp_path / "mvtec" / "cable" / "train" / "good" / "1.png")
    with pytest.raises(UserError, match="several data sets"):
        scan_folder(tmp_path / "mvtec")


def test_levels_come_from_the_deepest_image_not_the_first(tmp_path):
    pixels = np.arange(64).reshape(8, 8)
    (tmp_path / "deep").mkdir()
    Image.fromarray(pixels % 2 == 1).convert("1").save(tmp_path / "deep" / "a_1bit.png")
    Image.fromarray((pixels * 4).astype(np.uint8)).save(tmp_path / "deep" / "b_8bit.png")
    Image.fromarray((pixels * 1000).astype(np.uint16)).save(tmp_path / "deep" / "c_16bit.tif")
    Image.fromarray((pixels * 3).astype(np.uint8)).save(tmp_path / "deep" / "d_8bit.png")
    Image.fromarray((pixels * 5).astype(np.uint8)).save(tmp_path / "deep" / "e_8bit.png")
    source = load_folder(tmp_path / "deep", DataOptions())
    assert source.info.levels == 65536
    assert read_header(source.split("train").paths[0]).levels == 2  # not the first image's
    # Each depth's pixels lie exactly on the 16-bit grid that dequantisation rounds to.
    for split in ("train", "test"):
        for image, _ in source.split(split):
            k = image.double() * (source.info.levels - 1)
            assert torch.allclose(k, k.round(), atol=1e-3)
    Image.fromarray((pixels / 63).astype(np.float32)).save(tmp_path / "deep" / "f_float.tif")
    assert load_folder(tmp_path / "deep", DataOptions()).info.levels == 2**24
    for name in ("c_16bit.tif", "f_float.tif"):
        (tmp_path / "deep" / name).unlink()
    assert load_folder(tmp_path / "deep", DataOptions()).info.levels == 256
    (tmp_path / "bits").mkdir()
    for i in range(3):
        Image.fromarray(pixels % (i + 2) == 0).convert("1").save(tmp_path / "bits" / f"{i}.png")
    assert load_folder(tmp_path / "bits", DataOptions()).info.levels == 2


def test_scoring_folder_levels_come_from_every_image(tmp_path):
    from gentool.data.folders import load_all_images

    pixels = np.arange(16).reshape(4, 4)
    Image.fromarray(pixels % 2 == 1).convert("1").save(tmp_path / "a.png")
    Image.fromarray((pixels * 16).astype(np.uint8)).save(tmp_path / "b.png")
    assert load_all_images(tmp_path, DataOptions()).info.levels == 256


def test_normal_class_and_split_never_change_a_folders_levels(tmp_path):
    for i in range(5):
        write_image(tmp_path / "a" / f"{i}.png", value=i)
    (tmp_path / "b").mkdir()
    for i in range(5):
        Image.fromarray(np.full((10, 12), 300 * i, np.uint16)).save(tmp_path / "b" / f"{i}.tif")
    assert load_folder(tmp_path, DataOptions()).info.levels == 65536
    assert load_folder(tmp_path, DataOptions(normal_class="a")).info.levels == 65536


def test_an_exact_height_and_width_for_every_loader(tmp_path):
    """``image_hw`` (what score sets from a checkpoint) is never squared, unlike --image-size."""
    from gentool.data import digits, procedural
    from gentool.data.folders import load_all_images

    for i in range(5):
        write_image(tmp_path / "flat" / f"{i}.png", 20 * i, size=(12, 10))
    hw = DataOptions(image_hw=(7, 11))
    for source in (load_folder(tmp_path / "flat", hw), load_all_images(tmp_path / "flat", hw)):
        assert source.info.shape == (3, 7, 11)
        assert source.split(source.splits()[0])[0][0].shape == (3, 7, 11)
    source = digits.load(hw)
    assert source.info.shape == (1, 7, 11) and source.split("test")[0][0].shape == (1, 7, 11)
    square = DataOptions(image_size=5, image_hw=(6, 6))  # image_hw wins
    assert procedural.load(square).info.shape == (3, 6, 6)
    with pytest.raises(UserError, match="square images only, not 7x11"):
        procedural.load(hw)
