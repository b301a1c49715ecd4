"""Loading a backbone's weights: torchvision's ImageNet file, a user's file, or a seed."""

from __future__ import annotations

import hashlib
import http.client
import pickle
import re
import urllib.error
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from gentool.backbones import backbone_spec
from gentool.backbones.network import Backbone
from gentool.checkpoint import describe_misfit
from gentool.errors import UserError
from gentool.progress import stderr_console

__all__ = [
    "imagenet_url",
    "imagenet_weights_path",
    "load_backbone",
    "read_hub_weights",
    "read_weights_file",
]

# torchvision names its files "<model>-<first hex digits of the content's sha256>.pth".
_HASHED_NAME = re.compile(r".+-([0-9a-f]{8,64})\.pth?")
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def load_backbone(
    name: str,
    stages: str | Sequence[str],
    weights: str | Path = "imagenet",
    seed: int = 0,
    device: torch.device | str = "cpu",
    expected_sha256: str | None = None,
) -> Backbone:
    """A frozen backbone with the weights asked, on ``device``, its digest checked.

    ``weights`` is ``"imagenet"`` (torchvision's file, downloaded once into torch hub's
    cache), ``"none"`` (random, from ``seed``) or the path of a ``.pth`` state dict (a whole
    model's is fine: only the kept layers are read). With ``expected_sha256`` (what a
    checkpoint stored as :attr:`Backbone.sha256`), other weights are refused. Every problem
    is a :class:`~gentool.errors.UserError` of one line.

    Example:
        >>> backbone = load_backbone("resnet18", "layer1", weights="none", seed=0)
        >>> load_backbone("resnet18", "layer1", "none", 1, expected_sha256=backbone.sha256)
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gentool.errors.UserError: the backbone's weights differ from the ones the model ...
    """
    spec = backbone_spec(name)
    if torch.device(device).type == "meta":
        # Built to learn a model's tensor shapes (gentool.loading checks a checkpoint so):
        # the channels matter, the weights do not, so none are read; its digest is the one
        # asked for.
        backbone = Backbone(name, stages, seed=None, device="meta")
        backbone.weights, backbone.declared_sha256 = str(weights), expected_sha256 or ""
        return backbone
    if str(weights) == "none":
        backbone = Backbone(name, stages, seed=seed)
        looked_for = f"random weights from seed {seed}"
    else:
        if str(weights) == "imagenet":
            state = read_hub_weights(imagenet_url(name), what=f"the {name} ImageNet weights")
            where = imagenet_weights_path(name)
            looked_for = f"torchvision's {spec.weights} in {where}"
        else:
            where = Path(weights).expanduser()
            state = read_weights_file(where)
            looked_for = f"the weights file {where}"
        backbone = Backbone(name, stages, seed=None)
        _fill(backbone, state, where)
    backbone.weights = str(weights)
    if expected_sha256 is not None:
        found = backbone.sha256
        if found != expected_sha256:
            raise UserError(
                f"the backbone's weights differ from the ones the model was trained with: "
                f"{name} with {looked_for} has sha256 {found[:12]}..., the model's had "
                f"{expected_sha256[:12]}...; pass the weights it was trained with "
                f"(--backbone-weights FILE)"
            )
    return backbone.to(device)


def imagenet_url(name: str) -> str:
    """Where torchvision publishes the ImageNet weights of backbone ``name``."""
    return backbone_spec(name).imagenet_weights().url


def imagenet_weights_path(name: str) -> Path:
    """Where torch hub keeps (or would keep) those weights: ``$TORCH_HOME/hub/checkpoints``."""
    return _cache_path(imagenet_url(name))


def _cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def read_hub_weights(url: str, what: str = "the backbone weights") -> dict[str, torch.Tensor]:
    """The state dict at ``url``, from torch hub's cache, downloaded there first if missing.

    The download (progress bar on stderr) is torch hub's: to a temporary file, its SHA-256
    checked against the hex in the file name, then renamed. Without a network, one line
    says which file to download and where to save it.
    """
    cache = _cache_path(url)
    if not cache.is_file():
        match = _HASHED_NAME.fullmatch(cache.name)
        stderr_console().print(
            f"downloading {what} from {url} to {cache}", highlight=False, soft_wrap=True
        )
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                url, str(cache), match.group(1) if match else None, progress=True
            )
        except _NETWORK_ERRORS as err:
            raise UserError(
                f"cannot download {what} from {url} ({_reason(err)}); download that file and "
                f"save it as {cache}, or pass --backbone-weights FILE"
            ) from None
        except RuntimeError as err:  # torch hub's hash check; the partial file is gone
            raise UserError(f"the download of {url} was damaged ({err}); try again") from None
        except OSError as err:
            raise UserError(f"cannot save {url} as {cache}: {err.strerror or err}") from None
    return read_weights_file(cache)


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a ``.pth`` file, read with ``torch.load(weights_only=True)`` only.

    A pickle that would build other objects than tensors and plain containers (code) is
    refused without running it; a file named like torchvision's (``resnet18-f37072fd.pth``)
    must have a SHA-256 that starts with the hex in its name. A whole checkpoint holding
    the state dict under ``"state_dict"`` or ``"model"`` is accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"backbone weights: no such file: {path}")
    match = _HASHED_NAME.fullmatch(path.name)
    if match:
        digest = _file_sha256(path)
        if not digest.startswith(match.group(1)):
            raise UserError(
                f"backbone weights {path}: its sha256 starts {digest[: len(match.group(1))]}, "
                f"not {match.group(1)} as its name says: the file is modified or damaged; "
                f"download it again"
            )
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol it refuses
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"backbone weights {path}: refused: it holds Python objects other than tensors "
            f"(loading it could run code); gentool reads weights files as weights only"
        ) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError... for damage
        reason = (str(err).splitlines() or [""])[0].split(". ")[0][:160]
        raise UserError(
            f"backbone weights {path}: not a readable torch weights file "
            f"(truncated or corrupted?): {reason or type(err).__name__}"
        ) from None
    return _state_dict_of(loaded, path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_state_dict(value: object) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _state_dict_of(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict) and _is_state_dict(loaded):
        return dict(loaded)
    if isinstance(loaded, dict):
        # A training checkpoint: torchvision's references keep the weights under "model".
        for key in ("state_dict", "model"):
            if _is_state_dict(loaded.get(key)):
                return dict(loaded[key])
    raise UserError(
        f"backbone weights {path}: not a state dict (a {type(loaded).__name__} rather than "
        f"names and tensors)"
    )


def _fill(backbone: Backbone, state: dict[str, torch.Tensor], where: Path) -> None:
    """Every kept tensor of ``backbone`` from ``state``; the rest of ``state`` is unused."""
    expected = backbone.state_dict()
    kept = {key: value for key, value in state.items() if key in expected}
    for key in expected:
        # Files saved before batch norm counted its batches (torch < 0.4) lack the counter,
        # which eval mode never reads; torch's own loader tolerates that too.
        if key.endswith("num_batches_tracked") and key not in state:
            kept[key] = torch.zeros((), dtype=torch.long)
    misfit = describe_misfit(expected, kept)
    if misfit:
        raise UserError(
            f"backbone weights {where} do not fit {backbone.name} up to "
            f"{backbone.kept_stages[-1]}: {misfit}; is it a {backbone.name} state dict?"
        )
    backbone.load_state_dict(kept)
