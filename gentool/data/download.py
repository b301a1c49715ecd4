"""Download a dataset archive once and unpack it safely and atomically into the cache.

``fetch_dataset(url, root)`` downloads ``url`` (http, https or file) with a progress bar on
stderr into a temporary file, checks its size and sha256 when known, unpacks it (zip or
tar, gzipped or not) into a temporary folder beside ``root`` and renames that folder to
``root``, with a marker file inside. The marker means "complete": later runs find it and
touch nothing. A corrupt archive or an unsafe member (absolute path, ``..``, link, device)
raises one :class:`UserError` and leaves neither the archive nor a half-unpacked folder.
An archive placed by hand at :func:`archive_path` is used instead of downloading.

``$GENTOOL_DATASET_MIRROR`` replaces the authors' server in every catalogued URL (see
:func:`mirror_url`), for a local copy or for tests.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from gentool.errors import UserError

__all__ = [
    "MARKER",
    "MIRROR_ENV",
    "archive_path",
    "fetch_dataset",
    "is_complete",
    "mirror_url",
    "safe_member_name",
    "unpack_archive",
]

MIRROR_ENV = "GENTOOL_DATASET_MIRROR"
MARKER = ".gentool-dataset.json"
_CHUNK = 1 << 20
_TIMEOUT_S = 30
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class _UnsafeArchive(Exception):
    pass


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


def is_complete(root: Path) -> bool:
    """True when ``root`` was fully unpacked by :func:`fetch_dataset`."""
    return (Path(root) / MARKER).is_file()


def archive_path(url: str, root: Path) -> Path:
    """Where the archive for ``root`` is downloaded to (and may be placed by hand)."""
    name = url.rsplit("/", 1)[-1].split("?", 1)[0]
    suffix = next((s for s in _ARCHIVE_SUFFIXES if name.lower().endswith(s)), ".archive")
    return Path(root).parent / f"{Path(root).name}{suffix}"


def fetch_dataset(
    url: str,
    root: Path,
    *,
    name: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    expect: str | None = None,
) -> Path:
    """Make sure ``url``'s archive is downloaded and unpacked as ``root``; return ``root``.

    ``expect`` names a path inside the unpacked data (``"trainA"``), for the message that
    tells an offline user how to install the data by hand.
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
        if not archive.is_file():
            _download(url, archive, name=name, sha256=sha256, size=size, root=root, expect=expect)
        else:
            _verify(archive, url, name, sha256, size)
        unpack_archive(archive, root, name=name, source=url)
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
        raise UserError(message) from err
    except BaseException:  # disk full, Ctrl-C: never leave a partial file behind
        partial.unlink(missing_ok=True)
        raise
    try:
        _verify(partial, url, name, sha256, size)
    except UserError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, archive)


def _verify(path: Path, url: str, name: str, sha256: str | None, size: int | None) -> None:
    actual_size = path.stat().st_size
    problem = None
    if size is not None and actual_size != size:
        problem = f"{actual_size:,} bytes instead of {size:,}"
    elif sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != sha256.lower():
            problem = f"sha256 {digest.hexdigest()[:12]}... instead of {sha256[:12]}..."
    if problem:
        path.unlink(missing_ok=True)
        raise UserError(
            f"the download of {name} from {url} is damaged ({problem}); it was removed, "
            "run again to download it again"
        )


def unpack_archive(archive: Path, root: Path, *, name: str, source: str = "") -> None:
    """Unpack ``archive`` as ``root`` atomically, then write the completion marker.

    A single top-level folder in the archive (``apple2orange/...``) becomes ``root`` itself.
    On a corrupt or unsafe archive, the archive is deleted and nothing is left at ``root``.
    """
    archive, root = Path(archive), Path(root)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.unpack-", dir=root.parent))
    try:
        members = _extract(archive, staging)
        content = _content_folder(staging)
        marker = {"name": name, "source": source, "archive": archive.name, "members": members}
        (content / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        os.replace(content, root)  # the one step that makes the data visible
    except _UnsafeArchive as err:
        archive.unlink(missing_ok=True)
        raise UserError(
            f"refusing to unpack {archive.name} for {name}: {err}; the archive was removed"
        ) from err
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        archive.unlink(missing_ok=True)
        reason = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else ""
        reason = reason or type(err).__name__
        raise UserError(
            f"the archive for {name} ({source or archive}) is corrupt ({reason}); "
            "it was removed, run again to download it again"
        ) from err
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):  # a file and a folder
            archive.unlink(missing_ok=True)  # of one name: the archive is at fault
            raise UserError(
                f"the archive for {name} ({source or archive}) holds a file and a folder of "
                f"the same name ({err.filename}); it was removed"
            ) from err
        # The disk is full or not writable: the archive is sound, and kept.
        raise UserError(
            f"cannot unpack {archive} for {name} in {root.parent}: {err.strerror or err}; "
            "nothing was unpacked (the archive is kept)"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def safe_member_name(name: str) -> str | None:
    """An archive member's path made relative, or None to skip it.

    Raises on a path that would land outside the folder (``/etc/x``, ``a/../../x``).

    Example:
        >>> safe_member_name("apple2orange/trainA/1.jpg")
        'apple2orange/trainA/1.jpg'
        >>> safe_member_name("__MACOSX/._1.jpg") is None
        True
    """
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise _UnsafeArchive(f"member {name!r} has an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _UnsafeArchive(f"member {name!r} leaves the folder")
    if not parts or parts[0] == "__MACOSX":  # macOS resource forks are not data
        return None
    return "/".join(parts)


def _extract(archive: Path, dest: Path) -> int:
    """Extract every member of a zip or tar archive into ``dest``; return how many."""
    # The name decides the format, so a damaged zip is reported as a zip, not as "not a tar".
    is_zip = archive.name.lower().endswith(".zip") or (
        not archive.name.lower().endswith(_ARCHIVE_SUFFIXES) and zipfile.is_zipfile(archive)
    )
    if is_zip:
        with zipfile.ZipFile(archive) as zf:
            infos = [(info, safe_member_name(info.filename)) for info in zf.infolist()]
            for info, _ in infos:
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise _UnsafeArchive(f"member {info.filename!r} is a symbolic link")
            for info, member in infos:
                if member is None:
                    continue
                target = dest / member
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            return sum(1 for _, m in infos if m is not None)
    lower = archive.name.lower()
    mode = (
        "r:gz" if lower.endswith((".tar.gz", ".tgz")) else "r:" if lower.endswith(".tar") else "r:*"
    )
    with tarfile.open(archive, mode) as tf:
        members = tf.getmembers()  # reads every header: a damaged member list fails here
        kept = []
        for member in members:
            safe = safe_member_name(member.name)
            if not (member.isfile() or member.isdir()):
                raise _UnsafeArchive(f"member {member.name!r} is a link or a device")
            if safe is not None:
                member.name = safe
                kept.append(member)
        extract = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(dest, members=kept, **extract)
        # tar stops reading at its end-of-archive block; reading the compressed stream to
        # its end checks the gzip CRC, which catches a download cut short there.
        while tf.fileobj.read(_CHUNK):
            pass
        return len(kept)


def _content_folder(staging: Path) -> Path:
    entries = [p for p in staging.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    if not entries:
        raise tarfile.TarError("the archive is empty")
    return staging


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
    from rich.console import Console
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
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
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
