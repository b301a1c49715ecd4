"""Unpack a dataset archive (zip or tar, gzip or xz) safely and atomically into the cache.

:func:`unpack_archive` unpacks into a temporary folder beside the target and renames it
into place, with a marker file inside that means "complete"; :func:`unpack_collection`
does the same for each of the data sets of one archive (MVTec AD's 15 categories). A
corrupt archive, an unsafe member (absolute path, ``..``, link, device) or content that
fails the caller's check raises one :class:`UserError`, removes the archive and leaves
nothing half-unpacked.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import lzma
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gentool.errors import UserError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "MARKER",
    "is_complete",
    "safe_member_name",
    "unpack_archive",
    "unpack_collection",
]

MARKER = ".gentool-dataset.json"
#: The archive names this module unpacks by their ending (others are sniffed).
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar", ".zip")
_CHUNK = 1 << 20


class _UnsafeArchive(Exception):
    pass


class _WrongContent(Exception):
    pass


def is_complete(root: Path) -> bool:
    """True when ``root`` was fully unpacked by :func:`unpack_archive` (or a collection)."""
    return (Path(root) / MARKER).is_file()


def unpack_archive(
    archive: Path,
    root: Path,
    *,
    name: str,
    source: str = "",
    check: Callable[[Path], str | None] | None = None,
    placed: bool = False,
) -> None:
    """Unpack ``archive`` as ``root`` atomically, then write the completion marker.

    A single top-level folder in the archive (``apple2orange/...``) becomes ``root`` itself.
    ``check(folder)`` may return what is wrong with the unpacked content (a wrong count of
    images), which is then refused like a corrupt archive. On a corrupt, unsafe or wrong
    archive, the archive is deleted (or, ``placed`` by the user, moved aside: it may be
    their only copy) and nothing is left at ``root``.
    """
    archive, root = Path(archive), Path(root)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.unpack-", dir=root.parent))
    try:
        with _unpacking(archive, root.parent, name, source, placed):
            members = _extract(archive, staging)
            content = _content_folder(staging)
            problem = check(content) if check else None
            if problem:
                raise _WrongContent(problem)
            marker = {"name": name, "source": source, "archive": archive.name, "members": members}
            (content / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            os.replace(content, root)  # the one step that makes the data visible
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpack_collection(
    archive: Path,
    parent: Path,
    folders: Sequence[str],
    *,
    name: str,
    source: str = "",
    check: Callable[[str, Path], str | None] | None = None,
    placed: bool = False,
) -> list[str]:
    """Unpack the top-level ``folders`` of one archive, each as ``parent/<folder>`` with its
    own marker; return those unpacked.

    A folder already at ``parent/<folder>`` (complete, or placed by hand) is left as it is.
    ``check(folder, path)`` judges each unpacked folder as in :func:`unpack_archive`; all
    are checked before any is moved into place. The archive is removed once every one of
    ``folders`` is in place, and kept otherwise; a faulty one is removed, or moved aside
    when ``placed`` by the user.
    """
    archive, parent = Path(archive), Path(parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.unpack-", dir=parent))
    wanted = [folder for folder in folders if not (parent / folder).exists()]
    try:
        with _unpacking(archive, parent, name, source, placed):
            _extract(archive, staging)
            content = _content_folder(staging)
            for folder in wanted:
                if not (content / folder).is_dir():
                    raise _WrongContent(f"it has no {folder}/ folder")
                problem = check(folder, content / folder) if check else None
                if problem:
                    raise _WrongContent(f"{folder}: {problem}")
            for folder in wanted:
                members = sum(1 for _ in (content / folder).rglob("*"))
                marker = {"name": f"{name} {folder}", "source": source, "archive": archive.name}
                marker["members"] = members
                (content / folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
                os.replace(content / folder, parent / folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if all((parent / folder).exists() for folder in folders):
        archive.unlink(missing_ok=True)
    return wanted


@contextlib.contextmanager
def _unpacking(archive: Path, parent: Path, name: str, source: str, placed: bool) -> Iterator[None]:
    """Turns what can go wrong while unpacking into one line, removing a faulty archive
    (moving it aside when the user placed it)."""
    where = source or archive
    try:
        yield
    except _UnsafeArchive as err:
        raise UserError(
            f"refusing to unpack {archive.name} for {name}: {err}; "
            + discard_archive(archive, placed).replace("it was", "the archive was")
        ) from err
    except _WrongContent as err:
        gone = discard_archive(archive, placed)
        raise UserError(
            f"the archive for {name} ({where}) is not the data expected: {err}; {gone}"
        ) from err
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        gzip.BadGzipFile,
        lzma.LZMAError,
        EOFError,
        zlib.error,
    ) as err:
        gone = discard_archive(archive, placed)
        reason = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else ""
        reason = reason or type(err).__name__
        raise UserError(
            f"the archive for {name} ({where}) is corrupt ({reason}); "
            f"{gone}, run again to download it again"
        ) from err
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):  # a file and a folder
            gone = discard_archive(archive, placed)  # of one name: the archive is at fault
            raise UserError(
                f"the archive for {name} ({where}) holds a file and a folder of "
                f"the same name ({err.filename}); {gone}"
            ) from err
        # The disk is full or not writable: the archive is sound, and kept.
        raise UserError(
            f"cannot unpack {archive} for {name} in {parent}: {err.strerror or err}; "
            "nothing was unpacked (the archive is kept)"
        ) from err


def discard_archive(archive: Path, placed: bool) -> str:
    """Remove a faulty archive gentool downloaded, or move one the user placed aside to
    ``NAME.rejected`` (it may be their only copy, or another release); the words that say
    which."""
    if not placed:
        archive.unlink(missing_ok=True)
        return "it was removed"
    aside = archive.with_name(f"{archive.name}.rejected")
    os.replace(archive, aside)
    return f"it was moved aside to {aside}"


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
    lower = archive.name.lower()
    # The name decides the format, so a damaged zip is reported as a zip, not as "not a tar".
    is_zip = lower.endswith(".zip") or (
        not lower.endswith(ARCHIVE_SUFFIXES) and zipfile.is_zipfile(archive)
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
    if lower.endswith((".tar.gz", ".tgz")):
        mode = "r:gz"
    elif lower.endswith((".tar.xz", ".txz")):
        mode = "r:xz"
    else:
        mode = "r:" if lower.endswith(".tar") else "r:*"
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
        # its end checks the gzip CRC or the xz check, which catch a download cut short.
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
