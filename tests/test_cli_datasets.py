"""`gentool datasets` says how many images each split of a download holds."""

import pytest

from gentool import cli
from gentool.data import catalog
from gentool.family import DataKind


def _rows(capsys, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("COLUMNS", "250")  # one line per dataset
    capsys.readouterr()
    assert cli.main(["datasets"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 5:
            rows[cells[0]] = cells[2]
    return rows


@pytest.mark.parametrize(
    ("name", "size"),
    [
        # trainA + trainB, testA + testB of the authors' zip files.
        ("horse2zebra", "1,067 + 1,334 train, 120 + 140 test images"),
        ("apple2orange", "995 + 1,019 train, 266 + 248 test images"),
        ("monet2photo", "1,072 + 6,287 train, 121 + 751 test images"),
        # train/, test/, val/ of the pix2pix tar files.
        ("facades", "400 train, 106 test, 100 val pairs"),
        ("maps", "1,096 train, 1,098 val pairs"),
    ],
)
def test_datasets_lists_the_counts_of_the_download(name, size, capsys, monkeypatch):
    assert _rows(capsys, monkeypatch)[name] == size


def test_every_archive_counts_its_splits():
    for archive in catalog.ARCHIVES.values():
        sides = 2 if archive.kind is DataKind.UNPAIRED else 1
        assert archive.train, archive.name
        for counts in (archive.train, archive.test, archive.val):
            assert counts == () or (len(counts) == sides and all(n > 0 for n in counts))
        assert archive.test or archive.val, f"{archive.name}: no held-out split"
        assert " train" in archive.size
