"""MVTec AD's named categories: listed, downloaded once through a mirror or by hand, checked,
read with their masks; all from local archives built here, never the network."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gentool import cli
from gentool.data import mvtec
from gentool.data.base import DataOptions, has_masks
from gentool.data.download import MARKER
from gentool.data.resolve import resolve_data
from gentool.errors import UserError
from gentool.family import DataKind
from gentool.registry import get_registry

#: A category as small as a test wants: 3 train/good, 1 test/good, 2 defective (masks).
SMALL = {"train": 3, "test_good": 1, "test_defects": 2}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENTOOL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENTOOL_DATASET_MIRROR", raising=False)
    for name in ("bottle", "grid"):
        small = mvtec.Category(name, "object", "0-0", 1, **SMALL)
        monkeypatch.setitem(mvtec.CATEGORIES, name, small)
    return tmp_path / "home" / "datasets" / "mvtec-ad"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def category_files(name: str, train: int = 3) -> dict[str, bytes]:
    """An MVTec AD category as archive members: ``name/train/good/000.png``, ..."""
    image, mask = np.full((12, 12, 3), 90), np.zeros((12, 12))
    mask[:6] = 255
    files = {f"{name}/train/good/{i:03d}.png": png(image) for i in range(train)}
    files[f"{name}/test/good/000.png"] = png(image)
    for i in range(2):
        files[f"{name}/test/broken/{i:03d}.png"] = png(image)
        files[f"{name}/ground_truth/broken/{i:03d}_mask.png"] = png(mask)
    return files


def make_tar_xz(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:xz") as tf:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def load(name: str = "mvtec-ad/bottle", **options):
    datasets = get_registry().datasets
    return resolve_data(name, DataKind.IMAGES, DataOptions(**options), datasets)


def test_datasets_lists_every_category_with_its_licence(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    capsys.readouterr()
    assert cli.main(["datasets"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "mvtec-ad/" in line]
    assert len(lines) == 15 == len(mvtec.CATEGORIES)
    assert all("CC BY-NC-SA 4.0" in line and "images" in line for line in lines)
    entry = get_registry().datasets["mvtec-ad/zipper"]
    assert entry.kind is DataKind.IMAGES and entry.root().parts[-2:] == ("mvtec-ad", "zipper")


def test_the_table_holds_the_papers_counts():
    real = {name: c for name, c in mvtec.CATEGORIES.items() if c.file_id != "0-0"}
    others = sum(c.train for c in real.values())
    # 3,629 train and 1,725 test images (1,258 defective) in the paper, less the two faked.
    assert others == 3629 - 209 - 264
    assert sum(c.test_defects for c in real.values()) == 1258 - 63 - 57
    assert mvtec.CATEGORIES["zipper"].url.endswith("/420938385-1629960680/zipper.tar.xz")


def test_a_mirror_download_unpacks_once_and_reads_the_masks(home, tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    make_tar_xz(served / "mvtec-ad" / "bottle.tar.xz", category_files("bottle"))
    monkeypatch.setenv("GENTOOL_DATASET_MIRROR", served.as_uri())
    source = load(image_size=8)
    assert (home / "bottle" / MARKER).is_file() and (home / "bottle" / "train").is_dir()
    assert sorted(p.name for p in home.iterdir() if not p.name.endswith(".lock")) == ["bottle"]
    assert source.info.source == "mvtec-ad/bottle" and source.info.normal_class == "good"
    assert source.info.class_names == ("good", "broken")
    assert source.info.preprocessing.details["masks"] == "ground_truth"
    test = source.split("test")
    assert has_masks(source) and not has_masks(source, "train") and len(test) == 3
    image, label, mask = test[0]
    assert (image.shape, label, int(mask.sum())) == ((3, 8, 8), 1, 32)
    (served / "mvtec-ad" / "bottle.tar.xz").unlink()  # downloaded once: no second request
    assert len(load(image_size=8).split("train")) == 3


def test_an_archive_placed_by_hand_is_used_without_a_network(home):
    make_tar_xz(home / "bottle.tar.xz", category_files("bottle"))
    assert len(load().split("test")) == 3
    assert not (home / "bottle.tar.xz").exists()


def test_an_archive_with_other_counts_is_refused_and_moved_aside(home):
    """Placed by hand, it may be the user's only copy (or another release): kept aside."""
    make_tar_xz(home / "bottle.tar.xz", category_files("bottle", train=2))
    aside = home / "bottle.tar.xz.rejected"
    with pytest.raises(UserError, match=r"not the data expected: .*2 train/good images, not 3"):
        load()
    assert sorted(p.name for p in home.iterdir() if not p.name.endswith(".lock")) == [aside.name]


def test_a_corrupt_xz_archive_is_refused(home):
    archive = make_tar_xz(home / "bottle.tar.xz", category_files("bottle"))
    data = archive.read_bytes()
    archive.write_bytes(data[:-40])
    with pytest.raises(UserError, match=r"is corrupt"):
        load()
    assert not archive.exists() and not (home / "bottle").exists()


def test_offline_the_error_says_where_to_put_either_archive(home, tmp_path, monkeypatch):
    monkeypatch.setenv("GENTOOL_DATASET_MIRROR", (tmp_path / "nowhere").as_uri())
    with pytest.raises(UserError) as caught:
        load()
    message = str(caught.value)
    assert "\n" not in message and f"save it as {home / 'bottle.tar.xz'}" in message
    assert f"{home / 'bottle' / 'train'} exists" in message
    assert f"whole archive ({mvtec.PAGE}) as {home / mvtec.WHOLE}" in message


def test_the_whole_archive_placed_by_hand_unpacks_every_category(home, monkeypatch):
    monkeypatch.setattr(mvtec, "CATEGORIES", {n: mvtec.CATEGORIES[n] for n in ("bottle", "grid")})
    files = {**category_files("bottle"), **category_files("grid"), "license.txt": b"CC"}
    whole = make_tar_xz(home / mvtec.WHOLE, files)
    monkeypatch.setattr(mvtec, "WHOLE_SHA256", hashlib.sha256(whole.read_bytes()).hexdigest())
    assert len(load("mvtec-ad/grid").split("test")) == 3
    assert (home / "bottle" / MARKER).is_file() and (home / "grid" / MARKER).is_file()
    assert not whole.exists()  # every category is in place: the archive is not needed


def test_a_whole_archive_of_another_checksum_is_kept_and_named(home, monkeypatch):
    whole = make_tar_xz(home / mvtec.WHOLE, category_files("bottle"))
    with pytest.raises(UserError, match=r"is not the archive of MVTec AD gentool knows"):
        load()
    assert whole.is_file()


def test_a_category_unpacked_by_hand_is_read_as_it_is(home):
    for member, data in category_files("bottle").items():
        path = home.parent / "mvtec-ad" / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert get_registry().datasets["mvtec-ad/bottle"].cached()
    assert has_masks(load())


def test_a_mistyped_category_lists_the_real_ones():
    with pytest.raises(UserError, match=r"unknown dataset 'mvtec-ad/botle'; .*mvtec-ad/bottle, "):
        load("mvtec-ad/botle")
