"""Ground-truth masks beside MVTec AD folders: (image, label, mask) items in the test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from gentool.data.base import DataOptions, has_masks
from gentool.data.folders import load_all_images, load_folder
from gentool.data.masks import load_mask
from gentool.errors import UserError


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def mvtec(root: Path, size: int = 16, masks: bool = True) -> Path:
    """A tiny MVTec AD category: 3 train/good, test/good, test/crack with a left-half mask."""
    grey = np.full((size, size, 3), 120)
    for i in range(3):
        write(root / "train" / "good" / f"{i:03d}.png", grey)
    write(root / "test" / "good" / "000.png", grey)
    write(root / "test" / "crack" / "000.png", grey)
    write(root / "test" / "crack" / "001.png", grey)
    if masks:
        left = np.zeros((size, size))
        left[:, : size // 2] = 255
        write(root / "ground_truth" / "crack" / "000_mask.png", left)
        top = np.zeros((size, size))
        top[: size // 4] = 1  # any value above 0 is a defect
        write(root / "ground_truth" / "crack" / "001_mask.png", top)
    return root


def test_the_test_split_gives_masks_at_the_images_size(tmp_path):
    source = load_folder(mvtec(tmp_path), DataOptions(image_size=8))
    test = source.split("test")
    items = {path.parent.name + "/" + path.stem: test[i] for i, path in enumerate(test.paths)}
    image, label, mask = items["crack/000"]
    assert image.shape == (3, 8, 8) and mask.shape == (1, 8, 8) and mask.dtype == torch.float32
    assert label == source.info.class_names.index("crack")
    expected = torch.zeros(1, 8, 8)
    expected[..., :4] = 1
    assert torch.equal(mask, expected)
    assert int(items["crack/001"][2].sum()) == 2 * 8  # the top quarter, from values of 1
    assert torch.equal(items["good/000"][2], torch.zeros(1, 8, 8))
    assert has_masks(source) and has_masks(test) and has_masks(Subset(test, [0]))


def test_training_batches_stay_images_and_labels(tmp_path):
    source = load_folder(mvtec(tmp_path), DataOptions(image_size=8))
    assert not has_masks(source, "train") and not has_masks(source, "val")
    train = next(iter(DataLoader(source.split("train"), batch_size=3)))
    test = next(iter(DataLoader(source.split("test"), batch_size=3)))
    assert len(train) == 2 and len(test) == 3 and test[2].shape == (3, 1, 8, 8)


def test_the_description_notes_the_masks_and_nothing_else_changes(tmp_path):
    with_masks = load_folder(mvtec(tmp_path / "a"), DataOptions(image_size=8), source="x").info
    without = load_folder(mvtec(tmp_path / "b", masks=False), DataOptions(image_size=8), source="x")
    assert not has_masks(without) and len(without.split("test")[0]) == 2
    described, plain = json.loads(with_masks.to_json()), json.loads(without.info.to_json())
    assert described["preprocessing"].pop("masks") == "ground_truth"
    assert described == plain


def test_masks_are_resized_by_nearest_neighbour_never_blurred(tmp_path):
    stripes = np.zeros((30, 30))
    stripes[:, ::3] = 255
    mask = load_mask(write(tmp_path / "m.png", stripes), (7, 11))
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.shape == (1, 7, 11)
    # Centre-aligned: an output pixel takes the source pixel under its centre.
    mask = load_mask(write(tmp_path / "half.png", np.kron([[0, 255]], np.ones((4, 4)))), (1, 2))
    assert mask.flatten().tolist() == [0.0, 1.0]


def test_a_defect_image_without_its_mask_is_an_error_naming_it(tmp_path):
    root = mvtec(tmp_path)
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(UserError, match=r"no ground-truth mask for .*crack/001\.png: expected "):
        load_folder(root, DataOptions())


def test_a_mask_of_another_size_is_an_error_naming_both_files(tmp_path):
    root = mvtec(tmp_path)
    write(root / "ground_truth" / "crack" / "001_mask.png", np.zeros((15, 16)))
    with pytest.raises(UserError, match=r"the mask .*001_mask\.png is 16x15 pixels but its image "):
        load_folder(root, DataOptions(image_size=8))
    with pytest.raises(UserError, match=r"test/crack/001\.png is 16x16"):
        load_folder(root, DataOptions(image_size=8))


def test_masks_named_like_their_images_are_read_too(tmp_path):
    root = mvtec(tmp_path)
    mask = root / "ground_truth" / "crack" / "001_mask.png"
    mask.rename(mask.with_name("001.png"))
    test = load_folder(root, DataOptions(image_size=8)).split("test")
    assert int(test[test.paths.index(root / "test" / "crack" / "001.png")][2].sum()) == 16


def test_scoring_a_whole_folder_or_its_test_folder_reads_the_masks(tmp_path):
    root = mvtec(tmp_path)
    everything = load_all_images(root, DataOptions(image_size=8))
    assert has_masks(everything, "all") and len(everything.split("all")) == 6
    assert everything.info.preprocessing.details["masks"] == "ground_truth"
    test = load_all_images(root / "test", DataOptions(image_size=8, normal_class="good"))
    images = test.split("all")
    assert has_masks(test, "all") and test.info.class_names == ("crack", "good")
    assert [int(images[i][2].sum()) for i in range(len(images))] == [32, 16, 0]


def test_a_folder_without_ground_truth_reads_as_it_always_did(tmp_path):
    root = mvtec(tmp_path, masks=False)
    for source in (load_folder(root, DataOptions()), load_all_images(root, DataOptions())):
        split = source.split(source.splits()[-1])
        assert not has_masks(split) and len(split[0]) == 2
        assert "masks" not in source.info.preprocessing.details
