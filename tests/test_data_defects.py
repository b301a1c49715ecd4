"""``defects``: structured textures with localised defects and exact masks, drawn on the fly."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from gentool.data import defects
from gentool.data.base import DataInfo, DataOptions, has_masks
from gentool.data.resolve import resolve_data
from gentool.errors import UserError
from gentool.family import DataKind
from gentool.registry import get_registry

WRITTEN = (
    '{"channels": 3, "class_names": ["good", "scratch", "hole", "stain"], "height": 64, '
    '"kind": "images", "levels": 256, "normal_class": "good", "preprocessing": {"channels": 3, '
    '"generated": true, "masks": "ground_truth", "range": [0.0, 1.0], "resize": [64, 64]}, '
    '"source": "defects", "width": 64}'
)


def test_the_splits_hold_normal_training_images_and_labelled_defects():
    source = resolve_data("defects", DataKind.IMAGES, DataOptions(), get_registry().datasets)
    assert source.info.to_json() == WRITTEN
    train, test = source.split("train"), source.split("test")
    assert (len(train), len(test)) == (200, 120)
    assert set(train.labels.tolist()) == {0} and not has_masks(train)
    assert torch.bincount(test.labels).tolist() == [60, 20, 20, 20] and has_masks(source)
    assert test.paths[61] == "defects/test/hole/061"
    images, labels = next(iter(DataLoader(train, batch_size=4)))
    assert images.shape == (4, 3, 64, 64) and labels.tolist() == [0] * 4
    images, labels, masks = next(iter(DataLoader(test, batch_size=120)))
    assert masks.shape == (120, 1, 64, 64) and set(masks.unique().tolist()) == {0.0, 1.0}
    defective = masks.flatten(1).amax(1)
    assert torch.equal(defective, (labels > 0).float())  # masks exactly on defect images
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images * 255, (images * 255).round())  # 8-bit values


@pytest.mark.parametrize("size", [16, 64])
def test_a_mask_is_exactly_the_pixels_its_defect_changed(size):
    for index in range(defects.TEST_NORMAL, defects.SIZES["test"]):
        image, label, mask = defects.draw("test", index, size)
        clean, _, _ = defects.draw("test", index, size, defect=False)
        assert label == defects.label_of("test", index) > 0
        assert torch.equal((image != clean).any(0), mask[0].bool()), index
        assert 0 < mask.mean() < 0.1  # localised


def test_images_depend_on_split_and_index_only():
    first = defects.load(DataOptions(seed=0))
    other = defects.load(DataOptions(seed=7))
    for split in ("train", "test"):
        for index in (0, 75):
            index = min(index, len(first.split(split)) - 1)
            for a, b in zip(first.split(split)[index], other.split(split)[index], strict=True):
                assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    # Normal images differ from one another, and the test split is not the train split.
    train = first.split("train")
    assert not torch.equal(train[0][0], train[1][0])
    assert not torch.equal(train[0][0], first.split("test")[0][0])


def test_normal_images_share_one_structure_not_noise():
    images = torch.stack([defects.draw("train", i, 64)[0].mean(0) for i in range(40)])
    centred = images - images.mean((1, 2), keepdim=True)
    # Neighbouring pixels agree (pure noise would not), and every image's strongest
    # frequency is its thread count, 6 to 8 across: one woven structure, varied.
    neighbours = (centred * torch.roll(centred, 1, 2)).mean((1, 2)) / centred.pow(2).mean((1, 2))
    assert float(neighbours.min()) > 0.4
    spectrum = torch.fft.fft2(centred).abs().flatten(1)
    frequency = torch.fft.fftfreq(64) * 64
    radius = (frequency.view(-1, 1) ** 2 + frequency.view(1, -1) ** 2).sqrt().flatten()
    strongest = radius[spectrum.argmax(1)]
    assert float(strongest.min()) >= 6 and float(strongest.max()) < 8.5


def test_size_and_channels_follow_the_options():
    source = defects.load(DataOptions(image_size=32, channels=1))
    image, _, mask = source.split("test")[100]
    assert image.shape == (1, 32, 32) and mask.shape == (1, 32, 32)
    assert json.loads(source.info.to_json())["preprocessing"]["resize"] == [32, 32]
    info = DataInfo.from_json(source.info.to_json())
    again = defects.load(DataOptions.from_info(info))
    assert torch.equal(again.split("test")[100][0], image)


def test_options_it_cannot_honour_are_one_line():
    with pytest.raises(UserError, match="at least 16 for defects, not 8"):
        defects.load(DataOptions(image_size=8))
    with pytest.raises(UserError, match="'good', the only class it can train on"):
        defects.load(DataOptions(normal_class="hole"))
    with pytest.raises(UserError, match="square images only"):
        defects.load(DataOptions(image_hw=(32, 48)))
    assert defects.load(DataOptions(normal_class="good")).info.normal_class == "good"
