"""Download a dataset archive once, with progress and checks, and unpack it into the cache.

``fetch_dataset(url, root)`` downloads ``url`` (http, https or file) with a progress bar on
stderr into a temporary file, checks its size and sha256 when known, and unpacks it (zip or
tar, gzip or xz) into a temporary folder beside ``root`` that is renamed to ``root``, with a
marker file inside (:mod:`gentool.data.archives`). The marker means "complete": later runs
find it and touch nothing. A corrupt archive or an unsafe member (absolute path, ``..``,
link, device) raises one :class:`UserError` and leaves neither the archive nor a
half-unpacked folder. An archive placed by hand at :func:`archive_path` is used instead of
downloading; refused, it is moved aside to ``NAME.rejected`` rather than deleted.

``$GENTOOL_DATASET_MIRROR`` replaces the authors' server in every catalogued URL (see
:func:`mirror_url` and :func:`mirror_path`), for a local copy or for tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from gentool.data.archives import (
    ARCHIVE_SUFFIXES,
    MARKER,
    discard_archive,
    is_complete,
    safe_member_name,
    unpack_archive,
)
from gentool.errors import UserError

__all__ = [
    "MARKER",
    "MIRROR_ENV",
    "archive_path",
    "check_archive",
    "fetch_dataset",
    "is_complete",
    "mirror_path",
    "mirror_url",
    "safe_member_name",
    "unpack_archive",
]

MIRROR_ENV = "GENTOOL_DATASET_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 30


class _CutShort(Exception):
    pass


def mirror_url(url: str, origin: str) -> str:
    """``url``, with its leading ``origin`` replaced by ``$GENTOOL_DATASET_MIRROR`` when set.

    Example:
        >>> import os; os.environ["GENTOOL_DATASET_MIRROR"] = "file:///srv/gans/"
        >>> mirror_url("http://host/cyclegan/datasets/x.zip", "http://host")
        'file:///srv/gans/cyclegan/datasets/x.zip'
        >>> del os.environ["GENTOOL_DATASET_MIRROR"]
    """
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror or not url.startswith(origin):
        return url
    return mirror.rstrip("/") + "/" + url[len(origin) :].lstrip("/")


def mirror_path(url: str, path: str) -> str:
    """``$GENTOOL_DATASET_MIRROR/path`` when the mirror is set, else ``url``: for hosts
    whose URLs carry per-file ids that a mirror would not copy (MVTec AD's).

    Example:
        >>> import os; os.environ["GENTOOL_DATASET_MIRROR"] = "file:///srv/data"
        >>> mirror_path("https://host/download/4209-16/bottle.tar.xz", "mvtec-ad/bottle.tar.xz")
        'file:///srv/data/mvtec-ad/bottle.tar.xz'
        >>> del os.environ["GENTOOL_DATASET_MIRROR"]
    """
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return mirror.rstrip("/") + "/" + path.lstrip("/") if mirror else url


def archive_path(url: str, root: Path) -> Path:
    """Where the archive for ``root`` is downloaded to (and may be placed by hand)."""
    name = url.rsplit("/", 1)[-1].split("?", 1)[0]
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), ".archive")
    return Path(root).parent / f"{Path(root).name}{suffix}"


def fetch_dataset(
    url: str,
    root: Path,
    *,
    name: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    expect: str | None = None,
    check: Callable[[Path], str | None] | None = None,
    hint: str | None = None,
) -> Path:
    """Make sure ``url``'s archive is downloaded and unpacked as ``root``; return ``root``.

    ``expect`` names a path inside the unpacked data (``"trainA"``), for the message that
    tells an offline user how to install the data by hand; ``hint`` adds another way to
    that message. ``check`` judges the unpacked content before it is moved into place
    (:func:`gentool.data.archives.unpack_archive`): for data without a known checksum.
    """
    root = Path(root)
    name = name or root.name
    if is_complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (torchrun ranks) may start at once: one downloads, the rest wait.
    with _locked(root.parent / f".{root.name}.lock"):
        if is_complete(root):
            return root
        if root.exists():
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()
            else:
                raise UserError(
                    f"{root} exists but is not a complete download of {name}; "
                    "remove it and run again"
                )
        archive = archive_path(url, root)
        placed = archive.is_file()  # by the user: refused, it is moved aside, not deleted
        if not placed:
            _download(
                url,
                archive,
                name=name,
                sha256=sha256,
                size=size,
                root=root,
                expect=expect,
                hint=hint,
            )
        else:
            _verify(archive, url, name, sha256, size, placed=True)
        unpack_archive(archive, root, name=name, source=url, check=check, placed=placed)
        archive.unlink(missing_ok=True)
    return root


def _download(
    url: str,
    archive: Path,
    *,
    name: str,
    sha256: str | None,
    size: int | None,
    root: Path,
    expect: str | None,
    hint: str | None = None,
) -> None:
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "gentool"})
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")  # file:// answers carry it too
            total = int(length) if length and length.isdigit() else None
            received = 0
            with open(partial, "wb") as out, _progress(f"downloading {name}", total) as advance:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
            # http.client ends a body cut short without an error; the announced length tells.
            if total is not None and received != total:
                raise _CutShort(f"the transfer stopped after {received:,} of {total:,} bytes")
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
        _CutShort,
    ) as err:
        partial.unlink(missing_ok=True)
        message = _offline_message(name, url, _network_reason(err), archive, root, expect)
        raise UserError(f"{message}{'; ' + hint if hint else ''}") from err
    except BaseException:  # disk full, Ctrl-C: never leave a partial file behind
        partial.unlink(missing_ok=True)
        raise
    try:
        _verify(partial, url, name, sha256, size)
    except UserError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, archive)


def _verify(
    path: Path, url: str, name: str, sha256: str | None, size: int | None, placed: bool = False
) -> None:
    actual_size = path.stat().st_size
    problem = None
    if size is not None and actual_size != size:
        problem = f"{actual_size:,} bytes instead of {size:,}"
    elif sha256 is not None:
        digest = _sha256(path)
        if digest != sha256.lower():
            problem = f"sha256 {digest[:12]}... instead of {sha256[:12]}..."
    if problem:
        what = f"{path} placed for {name}" if placed else f"the download of {name} from {url}"
        gone = discard_archive(path, placed)
        raise UserError(f"{what} is damaged ({problem}); {gone}, run again to download it again")


def check_archive(path: Path, *, name: str, sha256: str) -> None:
    """Check an archive placed by hand against its sha256; a mismatch raises
    :class:`UserError` and leaves the file as it is (it may be another release)."""
    digest = _sha256(Path(path))
    if digest != sha256.lower():
        raise UserError(
            f"{path} is not the archive of {name} gentool knows (sha256 {digest[:12]}... "
            f"instead of {sha256[:12]}...); remove it, or unpack it yourself"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent first runs may both download
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _progress(description: str, total: int | None) -> Iterator:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    from gentool.progress import stderr_console

    with Progress(*columns, console=stderr_console(), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def _network_reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _offline_message(
    name: str, url: str, reason: str, archive: Path, root: Path, expect: str | None
) -> str:
    unpacked = f"unpack it so that {root / expect} exists" if expect else f"unpack it as {root}"
    return (
        f"cannot download {name} from {url} ({reason}); to install it by hand, download that "
        f"file and save it as {archive} or {unpacked}, or set {MIRROR_ENV} to a mirror"
    )
