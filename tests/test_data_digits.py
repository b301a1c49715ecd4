"""digits (scikit-learn) and mnist/fashion-mnist (torchvision): splits, classes, offline use."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from gentool.data import digits, torchvision_sets
from gentool.data.base import DataOptions
from gentool.errors import UserError


def test_digits_split_sizes_levels_and_values():
    source = digits.load(DataOptions())
    train, test = source.split("train"), source.split("test")
    assert (len(train), len(test)) == (1437, 360)
    assert source.info.shape == (1, 8, 8) and source.info.levels == 17
    assert source.info.class_names == tuple("0123456789")
    image, label = train[0]
    assert image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
    assert torch.allclose(image * 16, (image * 16).round())  # values are k / 16


def test_digits_split_is_stratified_and_fixed_across_seeds():
    first = digits.load(DataOptions(seed=0))
    other = digits.load(DataOptions(seed=123))
    assert torch.equal(first.split("test").labels, other.split("test").labels)
    assert torch.equal(first.split("test").images, other.split("test").images)
    counts = torch.bincount(first.split("test").labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 360 spread evenly over 10 classes


def test_digits_normal_class_filters_train_only():
    source = digits.load(DataOptions(normal_class="3"))
    assert set(source.split("train").labels.tolist()) == {3}
    assert len(source.split("test")) == 360
    assert source.info.normal_class == "3"
    anomalies = source.anomaly_labels(source.split("test").labels)
    assert int((anomalies == 0).sum()) == int((source.split("test").labels == 3).sum())
    with pytest.raises(UserError, match="not a class of digits"):
        digits.load(DataOptions(normal_class="11"))


def test_digits_resize_and_channels():
    source = digits.load(DataOptions(image_size=16, channels=3))
    image, _ = source.split("test")[0]
    assert image.shape == (3, 16, 16) and source.info.shape == (3, 16, 16)
    assert source.info.preprocessing.resize == (16, 16)


def _write_idx(path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def offline_mirrors(monkeypatch):
    import torchvision

    # Port 9 (discard) refuses connections at once: no test ever reaches the network.
    for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
        monkeypatch.setattr(cls, "mirrors", ["http://127.0.0.1:9/"])


def test_mnist_offline_message_says_where_files_go(tmp_path, offline_mirrors):
    assert not torchvision_sets.is_cached("mnist", tmp_path)
    with pytest.raises(UserError) as err:
        torchvision_sets.load("mnist", DataOptions(), tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "MNIST" / "raw") in message


def test_mnist_files_placed_by_hand(tmp_path, offline_mirrors):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 20), ("t10k", 6)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    assert torchvision_sets.is_cached("mnist", tmp_path)
    source = torchvision_sets.load("mnist", DataOptions(normal_class="4"), tmp_path)
    assert source.info.shape == (1, 28, 28) and source.info.levels == 256
    assert set(source.split("train").labels.tolist()) == {4}
    assert len(source.split("test")) == 6
    image, label = source.split("test")[2]
    assert image.shape == (1, 28, 28) and label == 2 and image.max() <= 1


def test_fashion_mnist_gz_placed_by_hand_and_class_names(tmp_path, offline_mirrors, monkeypatch):
    import torchvision

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 10), ("t10k", 10)):
        for kind, array in (
            ("images-idx3", np.zeros((count, 28, 28))),
            ("labels-idx1", np.arange(count)),
        ):
            plain = raw / f"{prefix}-{kind}-ubyte"
            _write_idx(plain, array)
            (raw / f"{plain.name}.gz").write_bytes(gzip.compress(plain.read_bytes()))
            plain.unlink()
    # Our hand-made files have their own checksums; torchvision checks the real ones.
    resources = [(name, None) for name, _ in torchvision.datasets.FashionMNIST.resources]
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "resources", resources)
    assert torchvision_sets.is_cached("fashion-mnist", tmp_path)
    source = torchvision_sets.load("fashion-mnist", DataOptions(normal_class="Dress"), tmp_path)
    assert source.info.normal_class == "Dress"
    assert source.split("train").labels.tolist() == [3]
