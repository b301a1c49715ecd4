"""Translation data: unaligned, aligned AB and paired folders; augmentation; toy shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gentool.data import procedural
from gentool.data.augment import Augment, default_load_size, item_generator
from gentool.data.base import DataOptions
from gentool.data.translation import load_translation_folder
from gentool.errors import UserError
from gentool.family import DataKind


def gradient(width: int, height: int, seed: int) -> np.ndarray:
    """A distinctive RGB image: crops and flips of it are all different."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def unaligned(tmp_path) -> Path:
    tmp_path = tmp_path / "unaligned"
    for split, (n_a, n_b) in (("train", (3, 5)), ("test", (2, 2))):
        for i in range(n_a):
            save(tmp_path / f"{split}A" / f"a{i}.png", gradient(20, 20, i))
        for i in range(n_b):
            save(tmp_path / f"{split}B" / f"b{i}.jpg", gradient(24, 20, 100 + i))
    return tmp_path


@pytest.fixture
def aligned(tmp_path) -> Path:
    tmp_path = tmp_path / "aligned"
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            half = gradient(16, 16, i)
            # B is A turned upside down: any difference in crop or flip shows up.
            save(tmp_path / split / f"{i}.png", np.concatenate([half, half[::-1]], axis=1))
    return tmp_path


def test_unaligned_shapes_length_and_b_redrawn_per_epoch(unaligned):
    options = DataOptions(image_size=16, seed=3)
    source = load_translation_folder(unaligned, DataKind.UNPAIRED, options)
    assert source.info.kind is DataKind.UNPAIRED and source.info.shape == (3, 16, 16)
    assert source.info.preprocessing.details["train"]["resize"] == [18, 18]  # 16 * 286 / 256
    train = source.split("train")
    assert len(train) == 5  # max(len A, len B)
    item = train[4]
    assert item["A"].shape == item["B"].shape == (3, 16, 16)
    assert item["A_path"].endswith("a1.png")  # A index wraps around
    picks = []
    for epoch in range(6):
        source.set_epoch(epoch)
        picks.append(tuple(train[i]["B_path"] for i in range(len(train))))
    assert len(set(picks)) > 1  # B is re-drawn each epoch
    source.set_epoch(2)
    again = load_translation_folder(unaligned, DataKind.UNPAIRED, options)
    again.set_epoch(2)
    for i in range(len(train)):
        first, second = train[i], again.split("train")[i]
        assert first["B_path"] == second["B_path"]
        assert torch.equal(first["A"], second["A"]) and torch.equal(first["B"], second["B"])


def test_unaligned_test_split_is_repeatable_and_unaugmented(unaligned):
    source = load_translation_folder(unaligned, DataKind.UNPAIRED, DataOptions(image_size=16))
    test = source.split("test")
    source.set_epoch(0)
    before = [test[i]["B_path"] for i in range(len(test))]
    source.set_epoch(7)
    assert [test[i]["B_path"] for i in range(len(test))] == before
    reference = Image.open(test[0]["A_path"]).convert("RGB")
    expected = torch.from_numpy(np.array(reference)).permute(2, 0, 1) / 255.0
    expected = torch.nn.functional.interpolate(
        expected[None], size=(16, 16), mode="bicubic", antialias=True
    )[0].clamp(0, 1)
    assert torch.allclose(test[0]["A"], expected, atol=1e-5)


def test_unaligned_direction_swaps_domains(unaligned):
    source = load_translation_folder(
        unaligned, DataKind.UNPAIRED, DataOptions(image_size=16, direction="b2a")
    )
    assert len(source.split("train")) == 5
    item = source.split("test")[0]
    assert "testB" in item["A_path"] and "testA" in item["B_path"]


def test_aligned_same_crop_and_flip_for_a_and_b(aligned):
    options = DataOptions(image_size=12, load_size=16, seed=1)
    source = load_translation_folder(aligned, DataKind.PAIRED, options)
    assert source.splits() == ("train", "val")
    assert source.info.preprocessing.details["layout"] == "aligned"
    train = source.split("train")
    flips = set()
    for epoch in range(4):
        source.set_epoch(epoch)
        for i in range(len(train)):
            item = train[i]
            assert item["A"].shape == item["B"].shape == (3, 12, 12)
            assert item["A_path"] == item["B_path"]
            # Rebuild B's crop from A's: the whole AB image, resized and cropped identically.
            params = Augment(12, 16, train=True).draw(item_generator(1, epoch, i))
            flips.add(params.flip)
            full = torch.from_numpy(np.array(Image.open(item["A_path"]).convert("RGB")))
            full = full.permute(2, 0, 1) / 255.0
            aug = Augment(12, 16, train=True)
            assert torch.allclose(item["A"], aug.apply(full[..., :16], params))
            assert torch.allclose(item["B"], aug.apply(full[..., 16:], params))
    assert flips == {True, False}


def test_augmentation_deterministic_per_epoch_and_different_across_epochs(aligned):
    options = DataOptions(image_size=12, load_size=16, seed=4)
    source = load_translation_folder(aligned, DataKind.PAIRED, options)
    train = source.split("train")
    source.set_epoch(1)
    epoch1 = [train[i]["A"] for i in range(len(train))]
    source.set_epoch(2)
    epoch2 = [train[i]["A"] for i in range(len(train))]
    source.set_epoch(1)
    assert all(torch.equal(a, train[i]["A"]) for i, a in enumerate(epoch1))
    assert not all(torch.equal(a, b) for a, b in zip(epoch1, epoch2, strict=True))
    # The same epoch through DataLoader workers gives the same batch as in-process loading.
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert torch.equal(batch["A"], torch.stack(epoch1))


def test_no_flip_option(aligned):
    source = load_translation_folder(
        aligned, DataKind.PAIRED, DataOptions(image_size=12, load_size=12, flip=False)
    )
    train = source.split("train")
    for epoch in range(5):
        source.set_epoch(epoch)
        item = train[0]
        assert torch.allclose(item["A"].flip(-2), item["B"], atol=1e-6)  # B = A upside down


def test_aligned_direction_swap(aligned):
    options = DataOptions(image_size=12, direction="b2a")
    swapped = load_translation_folder(aligned, DataKind.PAIRED, options).split("val")[0]
    plain = load_translation_folder(aligned, DataKind.PAIRED, DataOptions(image_size=12))
    item = plain.split("val")[0]
    assert torch.equal(swapped["A"], item["B"]) and torch.equal(swapped["B"], item["A"])
    with pytest.raises(UserError, match="a2b or b2a"):
        load_translation_folder(aligned, DataKind.PAIRED, DataOptions(direction="up"))


def test_paired_folders_matched_by_name_with_fixed_split(tmp_path):
    for i in range(5):
        save(tmp_path / "A" / f"{i}.png", gradient(10, 10, i))
        save(tmp_path / "B" / f"{i}.jpg", gradient(10, 10, 50 + i))
    source = load_translation_folder(tmp_path, DataKind.PAIRED, DataOptions(image_size=8))
    assert source.info.preprocessing.details["layout"] == "paired-folders"
    assert (len(source.split("train")), len(source.split("test"))) == (4, 1)
    item = source.split("train")[0]
    assert Path(item["A_path"]).stem == Path(item["B_path"]).stem
    (tmp_path / "B" / "4.jpg").unlink()
    save(tmp_path / "B" / "extra.png", gradient(10, 10, 9))
    with pytest.raises(UserError, match=r"do not match: 1 \(4\) only in A, 1 \(extra\) only in B"):
        load_translation_folder(tmp_path, DataKind.PAIRED, DataOptions())


def test_paired_reference_layout_a_train_b_train(tmp_path):
    for split in ("train", "test"):
        for i in range(2):
            save(tmp_path / "A" / split / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
            save(tmp_path / "B" / split / f"{i}.png", np.full((8, 8, 3), 255, np.uint8))
    source = load_translation_folder(
        tmp_path, DataKind.PAIRED, DataOptions(image_size=8, channels=1)
    )
    item = source.split("test")[1]
    assert item["A"].shape == (1, 8, 8) and item["A"].max() == 0 and item["B"].min() == 1


def test_grey_16bit_inputs_load(tmp_path):
    for domain in "AB":
        for i in range(2):
            path = tmp_path / f"train{domain}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(path)
    source = load_translation_folder(tmp_path, DataKind.UNPAIRED, DataOptions(image_size=8))
    item = source.split("train")[0]
    assert item["A"].shape == (3, 8, 8)
    assert torch.allclose(item["A"], torch.full((3, 8, 8), 40000 / 65535), atol=1e-4)


def test_layout_kind_mismatch_errors(unaligned, aligned):
    with pytest.raises(UserError, match="unpaired layout"):
        load_translation_folder(unaligned, DataKind.PAIRED, DataOptions())
    with pytest.raises(UserError, match="paired layout"):
        load_translation_folder(aligned, DataKind.UNPAIRED, DataOptions())
    with pytest.raises(UserError, match="smaller than --image-size"):
        load_translation_folder(aligned, DataKind.PAIRED, DataOptions(image_size=16, load_size=8))


def test_load_size_zero_is_refused_not_taken_for_the_default(aligned):
    with pytest.raises(UserError, match="--load-size 0 is smaller than --image-size 8"):
        load_translation_folder(aligned, DataKind.PAIRED, DataOptions(image_size=8, load_size=0))


def test_aligned_image_too_narrow_to_split_is_one_error(aligned):
    save(aligned / "train" / "thin.png", gradient(1, 16, 0))  # no B half to split off
    with pytest.raises(UserError, match=r"thin\.png is 1 pixel wide, too narrow"):
        load_translation_folder(aligned, DataKind.PAIRED, DataOptions(image_size=8))


def test_default_load_size_matches_reference():
    assert default_load_size(256) == 286 and default_load_size(128) == 143


def test_toy_shapes_unpaired_and_paired():
    source = procedural.load(DataOptions(image_size=16, seed=2))
    assert source.info.kind is DataKind.UNPAIRED and source.info.shape == (3, 16, 16)
    train = source.split("train")
    assert len(train) == 256 and len(source.split("test")) == 64
    item = train[0]
    assert item["A"][0].max() > 0.8 and item["A"][2].max() < 0.5  # red disc
    assert item["B"][2].max() > 0.8 and item["B"][0].max() < 0.5  # blue square
    assert torch.equal(
        procedural.load(DataOptions(image_size=16, seed=9)).split("train")[0]["A"], item["A"]
    )
    picks = set()
    for epoch in range(3):
        source.set_epoch(epoch)
        picks.add(train[0]["B_path"])
    assert len(picks) > 1

    paired = procedural.load_paired(DataOptions(image_size=16, channels=1))
    assert paired.info.kind is DataKind.PAIRED and paired.info.shape == (1, 16, 16)
    pair = paired.split("test")[1]
    outline, filled = pair["A"][0], pair["B"][0]
    assert ((outline > 0.5) & (filled < 0.2)).sum() < outline.gt(0.5).sum()  # same shape


@pytest.mark.parametrize("lone", ["testB", "valA"])
def test_half_a_split_is_an_error_not_dropped(unaligned, lone):
    if lone == "testB":
        for file in (unaligned / "testA").iterdir():
            file.unlink()
        (unaligned / "testA").rmdir()
        message = "has testB/ but no testA/"
    else:
        save(unaligned / "valA" / "a.png", gradient(20, 20, 7))
        message = "has valA/ but no valB/"
    with pytest.raises(UserError, match=message):
        load_translation_folder(unaligned, DataKind.UNPAIRED, DataOptions(image_size=16))
