"""Downloads: http and file URLs, once only, checks, corrupt and unsafe archives, offline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gentool.data.download import MARKER, archive_path, fetch_dataset, is_complete
from gentool.errors import UserError


def png_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(path: Path, top: str, folders=("trainA", "trainB", "testA", "testB")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for folder in folders:
            for i in range(3):
                zf.writestr(f"{top}/{folder}/{i}.png", png_bytes(40 * i))
        zf.writestr("__MACOSX/._junk", b"junk")
    return path


def make_tar(path: Path, top: str, folders=("train", "val")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for folder in folders:
            for i in range(3):
                data = png_bytes(30 * i)
                info = tarfile.TarInfo(f"{top}/{folder}/{i}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


class Server:
    """A local HTTP server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, directory: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    srv = Server(served)
    srv.root = served
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENTOOL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENTOOL_DATASET_MIRROR", raising=False)
    return tmp_path / "home"


def leftovers(folder: Path) -> list[str]:
    """What a failed attempt left beside the dataset folder (the lock file aside)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_http_download_unpacks_once(server, tmp_path):
    make_zip(server.root / "apple2orange.zip", "apple2orange")
    root = tmp_path / "cache" / "apple2orange"
    assert fetch_dataset(f"{server.url}/apple2orange.zip", root, expect="trainA") == root
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "testA", "testB", "trainA", "trainB"]
    assert len(list((root / "trainA").iterdir())) == 3
    assert is_complete(root)
    assert leftovers(root.parent) == ["apple2orange"]  # no archive, no temporary folder
    fetch_dataset(f"{server.url}/apple2orange.zip", root)
    assert server.requests == ["/apple2orange.zip"]  # the second call did not download


def test_file_url_tar_gz_with_checks(tmp_path):
    archive = make_tar(tmp_path / "src" / "facades.tar.gz", "facades")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "cache" / "facades"
    fetch_dataset(
        archive.as_uri(), root, sha256=digest, size=archive.stat().st_size, expect="train"
    )
    assert (root / "train" / "0.png").is_file() and (root / "val").is_dir()
    assert archive.is_file()  # the source is untouched


def test_wrong_checksum_leaves_nothing(tmp_path):
    archive = make_tar(tmp_path / "src" / "facades.tar.gz", "facades")
    root = tmp_path / "cache" / "facades"
    with pytest.raises(UserError, match="damaged .*sha256"):
        fetch_dataset(archive.as_uri(), root, sha256="0" * 64)
    with pytest.raises(UserError, match="damaged .*bytes"):
        fetch_dataset(archive.as_uri(), root, size=12)
    assert leftovers(root.parent) == []


@pytest.mark.parametrize(
    ("kind", "damage"),
    [
        ("zip", lambda data: data[: len(data) // 2]),  # the zip directory is lost
        ("zip", lambda data: data[:60] + bytes(100) + data[160:]),  # a member fails its CRC
        ("tar.gz", lambda data: data[:40] + bytes(200) + data[240:]),
        ("tar.gz", lambda data: data[:-30]),  # cut short after the last member
    ],
)
def test_corrupt_archive_one_clear_error_and_nothing_left(server, tmp_path, kind, damage):
    good = tmp_path / f"good.{kind}"
    (make_zip if kind == "zip" else make_tar)(good, "data")
    (server.root / f"data.{kind}").write_bytes(damage(good.read_bytes()))
    root = tmp_path / "cache" / "data"
    with pytest.raises(UserError) as err:
        fetch_dataset(f"{server.url}/data.{kind}", root)
    assert "corrupt" in str(err.value) and "\n" not in str(err.value)
    assert not root.exists()
    assert leftovers(root.parent) == []


def test_unreachable_server_says_where_to_put_files(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path / "cache" / "horse2zebra"
    url = f"http://127.0.0.1:{port}/cyclegan/datasets/horse2zebra.zip"
    with pytest.raises(UserError) as err:
        fetch_dataset(url, root, name="horse2zebra", expect="trainA")
    message = str(err.value)
    assert "\n" not in message
    assert "cannot download horse2zebra" in message and url in message
    assert str(archive_path(url, root)) in message and str(root / "trainA") in message
    assert "GENTOOL_DATASET_MIRROR" in message
    assert leftovers(root.parent) == []


def test_missing_file_on_server(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404"):
        fetch_dataset(f"{server.url}/nothing.zip", tmp_path / "cache" / "nothing")


def test_archive_placed_by_hand_needs_no_network(tmp_path):
    root = tmp_path / "cache" / "apple2orange"
    make_zip(archive_path("http://x/apple2orange.zip", root), "apple2orange")
    fetch_dataset("http://127.0.0.1:9/apple2orange.zip", root)
    assert (root / "trainB").is_dir() and is_complete(root)
    assert leftovers(root.parent) == ["apple2orange"]


def test_path_traversal_member_rejected(tmp_path):
    archive = tmp_path / "src" / "evil.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("evil/trainA/0.png", png_bytes(1))
        zf.writestr("evil/../../escaped.txt", b"gotcha")
    root = tmp_path / "cache" / "evil"
    with pytest.raises(UserError, match="leaves the folder"):
        fetch_dataset(archive.as_uri(), root)
    assert not root.exists() and not (tmp_path / "escaped.txt").exists()
    assert leftovers(root.parent) == []


def test_tar_absolute_path_and_link_rejected(tmp_path):
    for name, member in (
        ("abs", tarfile.TarInfo("/tmp/gentool-absolute.txt")),
        ("link", tarfile.TarInfo("data/link")),
    ):
        archive = tmp_path / "src" / f"{name}.tar.gz"
        archive.parent.mkdir(exist_ok=True)
        with tarfile.open(archive, "w:gz") as tf:
            if name == "link":
                member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tf.addfile(member)
            else:
                member.size = 2
                tf.addfile(member, io.BytesIO(b"hi"))
        root = tmp_path / "cache" / name
        with pytest.raises(UserError, match="refusing to unpack"):
            fetch_dataset(archive.as_uri(), root)
        assert not root.exists()
    assert not Path("/tmp/gentool-absolute.txt").exists()


def test_incomplete_folder_is_not_overwritten(tmp_path):
    make_zip(tmp_path / "src" / "a.zip", "a")
    root = tmp_path / "cache" / "a"
    root.mkdir(parents=True)
    (root / "mine.txt").write_text("user data")
    with pytest.raises(UserError, match="not a complete download"):
        fetch_dataset((tmp_path / "src" / "a.zip").as_uri(), root)
    assert (root / "mine.txt").read_text() == "user data"


def test_a_transfer_cut_short_is_not_taken_for_the_archive(tmp_path):
    """http.client ends a body cut short without an error; an uncompressed tar cut at a
    member's end would even unpack, with files missing."""
    archive = tmp_path / "src" / "x.tar"
    archive.parent.mkdir()
    with tarfile.open(archive, "w") as tf:
        for i in range(4):
            info = tarfile.TarInfo(f"x/train/{i}.bin")
            info.size = 512
            tf.addfile(info, io.BytesIO(bytes(512)))
    data = archive.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: 2 * 1024])  # two whole members, then the line drops
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    root = tmp_path / "cache" / "x"
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/x.tar"
        with pytest.raises(UserError, match=r"stopped after 2,048 of [\d,]+ bytes"):
            fetch_dataset(url, root)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not root.exists() and leftovers(root.parent) == []


def test_a_file_and_a_folder_of_one_name_is_one_clear_error(tmp_path):
    archive = tmp_path / "src" / "clash.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("clash/trainA", b"a file")
        zf.writestr("clash/trainA/0.png", png_bytes(1))
    root = tmp_path / "cache" / "clash"
    with pytest.raises(UserError, match="a file and a folder of the same name"):
        fetch_dataset(archive.as_uri(), root)
    assert not root.exists() and leftovers(root.parent) == []


def test_gentool_home_is_the_cache(tmp_path, home):
    from gentool.data.base import cache_dir

    assert cache_dir() == home
