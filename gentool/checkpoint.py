"""Checkpoints in safetensors only: weights with JSON metadata, and the state a resume needs.

A run folder holds

- ``model.safetensors``: the weights to use (the best by validation when the family has a
  validation loss, else the latest), with string metadata: format version, gentool version,
  family, plugin and its version, the hyperparameters and data description as JSON,
  epoch/step, metrics and a SHA-256 of the weights;
- ``resume.safetensors``: the latest weights, optimizer and scheduler states, RNG states and
  the family's extra state (image pools), its structure as JSON in the metadata. One file,
  so it is replaced atomically as a whole.

Nothing is ever unpickled. Every write goes to a temporary file that is renamed into place,
so an interrupted write never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from gentool import __version__
from gentool.errors import UserError

__all__ = [
    "FORMAT_VERSION",
    "CheckpointMeta",
    "atomic_write",
    "decode_tree",
    "describe_misfit",
    "encode_tree",
    "load_resume",
    "read_resume_header",
    "read_checkpoint",
    "read_header",
    "read_tensor_shapes",
    "read_weights",
    "resolve_checkpoint",
    "save_model",
    "save_resume",
    "seal_metadata",
    "tensor_digest",
    "unfinished_writes",
]

#: 1: the tensors under a checksum (``gentool.sha256``); 2: the metadata too
#: (``gentool.sha256_meta``), so a file of format 2 without either is damaged.
FORMAT_VERSION = 2
META_DIGEST_FORMAT = 2
MODEL_FILE = "model.safetensors"
RESUME_FILE = "resume.safetensors"


@dataclass
class CheckpointMeta:
    """The metadata stored beside the weights."""

    family: str
    plugin: str
    plugin_version: str
    config: dict[str, Any]
    data: str  # DataInfo as JSON
    epoch: int = 0
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    gentool_version: str = __version__
    format: int = FORMAT_VERSION
    sha256: str | None = None  # of the weights, as read from a file (written by save_model)
    sha256_meta: str | None = None  # of the metadata, as read from a file (format 2 on)

    def to_strings(self) -> dict[str, str]:
        return {
            "gentool.format": str(self.format),
            "gentool.version": self.gentool_version,
            "gentool.family": self.family,
            "gentool.plugin": self.plugin,
            "gentool.plugin_version": self.plugin_version,
            "gentool.config": json.dumps(self.config, sort_keys=True),
            "gentool.data": self.data,
            "gentool.epoch": str(self.epoch),
            "gentool.step": str(self.step),
            "gentool.metrics": json.dumps(self.metrics, sort_keys=True),
        }

    @classmethod
    def from_strings(cls, meta: dict[str, str]) -> CheckpointMeta:
        return cls(
            family=meta["gentool.family"],
            plugin=meta.get("gentool.plugin", ""),
            plugin_version=meta.get("gentool.plugin_version", ""),
            config=json.loads(meta["gentool.config"]),
            data=meta["gentool.data"],
            epoch=int(meta.get("gentool.epoch", 0)),
            step=int(meta.get("gentool.step", 0)),
            metrics=json.loads(meta.get("gentool.metrics", "{}")),
            gentool_version=meta.get("gentool.version", "?"),
            format=int(meta["gentool.format"]),
            sha256=meta.get("gentool.sha256"),
            sha256_meta=meta.get("gentool.sha256_meta"),
        )


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode any new file gets here, so
        # checkpoints are as readable as the run's other files (a group's shared runs).
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unfinished_writes(folder: Path) -> list[Path]:
    """The temporary files of checkpoint writes in ``folder`` that never reached their
    rename (a process killed while writing): ``.model.safetensors.XXXX.tmp`` and
    ``.resume.safetensors.XXXX.tmp``, as :func:`atomic_write` names them. Only the run
    that holds the folder's lock may take them for stale."""
    found = (Path(folder).glob(f".{name}.*.tmp") for name in (MODEL_FILE, RESUME_FILE))
    return sorted(path for paths in found for path in paths if path.is_file())


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in sorted order (detects tampering)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def metadata_digest(metadata: dict[str, str]) -> str:
    """SHA-256 over a file's ``gentool.*`` metadata (the tensors' checksum among it), all
    but ``gentool.sha256_meta`` itself; keys of other tools are left free."""
    covered = {
        k: v for k, v in metadata.items() if k.startswith("gentool.") and k != "gentool.sha256_meta"
    }
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()


def seal_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """``metadata`` with its checksum made anew: for a tool (or a test) that edits a
    checkpoint's metadata on purpose; any other edit makes the file read as damaged."""
    return {**metadata, "gentool.sha256_meta": metadata_digest(metadata)}


def _cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied weights, views): clone them apart.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_model(path: Path, state: dict[str, torch.Tensor], meta: CheckpointMeta) -> None:
    """Write weights and metadata to ``path`` atomically."""
    tensors = _cpu_tensors(state)
    strings = meta.to_strings()
    strings["gentool.sha256"] = tensor_digest(tensors)
    atomic_write(Path(path), save_bytes(tensors, metadata=seal_metadata(strings)))


def resolve_checkpoint(text: str | Path) -> Path:
    """``--checkpoint`` takes a run folder or a ``.safetensors`` file."""
    path = Path(text).expanduser()
    if path.is_dir():
        candidate = path / MODEL_FILE
        if not candidate.is_file():
            raise UserError(f"--checkpoint: {path} is a folder without {MODEL_FILE}")
        return candidate
    if not path.exists():
        raise UserError(f"--checkpoint: no such file or run folder: {path}")
    if not path.is_file():  # a pipe, a socket, a device
        raise UserError(f"--checkpoint: {path} is not a regular file; give a run folder or a file")
    return path


def _read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as err:  # safetensors raises several types for bad headers
        raise UserError(
            f"{path} is not a readable safetensors file (truncated or corrupted?): {err}"
        ) from None


def read_header(path: Path) -> CheckpointMeta:
    """The metadata of a model checkpoint, without its weights, checked for format."""
    path = Path(path)
    raw = _read_metadata(path)
    if raw.get("gentool.kind") == "resume":
        raise UserError(
            f"{path} is a run's resume state, not a model; use the run folder or its {MODEL_FILE}"
        )
    if "gentool.format" not in raw or "gentool.family" not in raw:
        raise UserError(f"{path} is a safetensors file but not a gentool checkpoint")
    meta = _parse_meta(path, raw)
    if meta.format > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {meta.format}, written by gentool "
            f"{meta.gentool_version}; this gentool reads format {FORMAT_VERSION}: upgrade gentool"
        )
    if meta.sha256 is None:  # every format has had the tensors' checksum
        raise UserError(f"{path}: damaged gentool metadata (the weights' checksum is missing)")
    _check_metadata_digest(path, raw, meta.format, "checkpoint")
    return meta


def _check_metadata_digest(
    path: Path, raw: dict[str, str], format: int, what: str, warn: bool = True
) -> None:
    """The metadata against its checksum; a file of a format before it had one passes with
    a warning, as its metadata is checked only for fitting the weights."""
    found = raw.get("gentool.sha256_meta")
    if found is None and format < META_DIGEST_FORMAT:
        if not warn:
            return
        from gentool.progress import note

        note(
            f"warning: {path} is an older {what} (format {format}) whose metadata has no "
            "checksum: damage there is caught only where the weights stop fitting it"
        )
        return
    if found is None:
        raise UserError(f"{path}: damaged gentool metadata (its checksum is missing)")
    if found != metadata_digest(raw):
        raise UserError(
            f"{path}: the gentool metadata does not match its checksum (modified or damaged)"
        )


def read_tensor_shapes(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors as ``meta`` tensors of their dtypes and shapes, from its header
    alone (no weight is read): what a rebuilt model's state can be checked against."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}  # noqa: SIM118
    except Exception as err:
        raise UserError(
            f"{path} is not a readable safetensors file (truncated or corrupted?): {err}"
        ) from None
    return {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}


def read_weights(path: Path, meta: CheckpointMeta) -> dict[str, torch.Tensor]:
    """The weights of the checkpoint whose header is ``meta``, checked against its checksum."""
    path = Path(path)
    try:
        tensors = load_bytes(path.read_bytes())
    except Exception as err:
        raise UserError(
            f"{path}: cannot read the weights (truncated or corrupted?): {err}"
        ) from None
    if tensor_digest(tensors) != meta.sha256:
        raise UserError(f"{path}: the weights do not match their checksum (modified or damaged)")
    return tensors


def read_checkpoint(path: Path) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Metadata and weights of a model checkpoint, checked for format and integrity (the
    family it is for: :func:`gentool.loading.read_family_checkpoint`)."""
    meta = read_header(path)
    return meta, read_weights(path, meta)


def _parse_meta(path: Path, raw: dict[str, str]) -> CheckpointMeta:
    """The metadata, with its JSON parts checked for shape (they are not under the checksum)."""
    try:
        meta = CheckpointMeta.from_strings(raw)
        parts = (meta.config, meta.metrics, json.loads(meta.data))
        if not all(isinstance(part, dict) for part in parts):
            raise ValueError("the hyperparameters, metrics and data must be JSON objects")
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: damaged gentool metadata ({type(err).__name__}: {err})") from None
    return meta


def describe_misfit(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """What keeps ``found`` from loading into a module whose state is ``expected``, in one
    line (shape mismatches first, with both shapes; then missing and unexpected names), or
    an empty string when every name and shape fits."""

    def shape(t: torch.Tensor) -> str:
        return f"[{', '.join(map(str, t.shape))}]"

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    shapes = [
        f"{name}: file {shape(found[name])}, model {shape(tensor)}"
        for name, tensor in expected.items()
        if name in found and found[name].shape != tensor.shape
    ]
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    parts = []
    if shapes:
        parts.append(
            f"{len(shapes)} tensor(s) of another shape ({'; '.join(shapes[:2])}"
            + (f"; and {len(shapes) - 2} more)" if len(shapes) > 2 else ")")
        )
    if missing:
        parts.append(f"{len(missing)} missing ({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({some(unexpected)})")
    return "; ".join(parts)


# -- resume state ---------------------------------------------------------------------------------
def encode_tree(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """A JSON-able mirror of ``obj`` whose tensors are moved into ``tensors`` by name."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        # Keys stay JSON values of their own type (optimizer states use int keys).
        return {
            "__dict__": [
                [_plain_key(k, prefix), encode_tree(v, tensors, f"{prefix}.{i}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_tree(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_tree(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint ({prefix})")


def _plain_key(key: Any, prefix: str) -> Any:
    if key is None or isinstance(key, bool | int | float | str):
        return key
    raise TypeError(f"cannot store a {type(key).__name__} dict key in a checkpoint ({prefix})")


def decode_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode_tree`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(decode_tree(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: decode_tree(v, tensors) for k, v in obj["__dict__"]}
        raise ValueError("unknown node in checkpoint structure")
    if isinstance(obj, list):
        return [decode_tree(v, tensors) for v in obj]
    return obj


def save_resume(path: Path, state: dict[str, Any]) -> None:
    """Write a nested state (tensors, numbers, strings, lists, dicts) to one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    structure = encode_tree(state, tensors, "s")
    tensors = _cpu_tensors(tensors)
    metadata = {
        "gentool.format": str(FORMAT_VERSION),
        "gentool.kind": "resume",
        "gentool.state": json.dumps(structure),
        "gentool.sha256": tensor_digest(tensors),
    }
    atomic_write(Path(path), save_bytes(tensors, metadata=seal_metadata(metadata)))


def _resume_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise UserError(f"--resume: no resume state at {path}; start the run without --resume")
    raw = _read_metadata(path)
    if raw.get("gentool.kind") != "resume":
        raise UserError(f"{path} is not a gentool resume state")
    version = raw.get("gentool.format", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise UserError(
            f"{path} has resume format {version!r}; this gentool reads format {FORMAT_VERSION}: "
            "upgrade gentool"
        )
    return raw


def _damaged_resume(path: Path, err: Exception) -> UserError:
    return UserError(f"{path}: damaged resume state ({type(err).__name__}: {err})")


def read_resume_header(path: Path) -> dict[str, Any]:
    """The tensor-free parts of a resume state without loading its tensors: ``meta`` (the
    checkpoint metadata strings), ``request`` (what the run was asked to train on) and
    ``engine`` (the loop's counters; its tensors read as None), checked for shape."""
    path = Path(path)
    raw = _resume_metadata(path)
    _check_metadata_digest(path, raw, int(raw["gentool.format"]), "resume state")
    try:
        top = dict(json.loads(raw["gentool.state"])["__dict__"])
        no_tensors = _NoTensors()
        header = {k: decode_tree(top[k], no_tensors) for k in ("meta", "request")}
        header["engine"] = decode_tree(top["engine"], no_tensors) if "engine" in top else {}
        meta = header["meta"]
        if not all(isinstance(part, dict) for part in header.values()):
            raise ValueError("meta, request and engine must be objects")
        if not all(isinstance(v, str) for v in meta.values()) or "gentool.family" not in meta:
            raise ValueError("the metadata must be strings, with a family")
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise _damaged_resume(path, err) from None
    return header


class _NoTensors(dict):
    """Every tensor reference of a resume state's structure reads as None."""

    def __missing__(self, key: str) -> None:
        return None


def load_resume(path: Path) -> dict[str, Any]:
    """Read what :func:`save_resume` wrote, checking that it is whole."""
    path = Path(path)
    raw = _resume_metadata(path)
    _check_metadata_digest(path, raw, int(raw["gentool.format"]), "resume state", warn=False)
    try:
        tensors = load_bytes(path.read_bytes())
    except Exception as err:
        raise UserError(f"{path}: cannot read the resume state (truncated?): {err}") from None
    if tensor_digest(tensors) != raw.get("gentool.sha256"):
        raise UserError(f"{path}: the resume state does not match its checksum (damaged)")
    try:
        return decode_tree(json.loads(raw.get("gentool.state", "")), tensors)
    except (KeyError, ValueError, TypeError) as err:
        raise _damaged_resume(path, err) from None
