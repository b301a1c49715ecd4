"""A trained model from its checkpoint: the file format joined with the installed families.

:mod:`gentool.checkpoint` reads and writes files and knows no family; this module finds
the family a checkpoint names in the registry, rebuilds its model from the saved
hyperparameters and data description, and loads the weights into it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)

from gentool.checkpoint import (
    CheckpointMeta,
    describe_misfit,
    read_header,
    read_tensor_shapes,
    read_weights,
    resolve_checkpoint,
)
from gentool.config import config_from_json
from gentool.data.base import DataInfo
from gentool.errors import UserError
from gentool.family import FamilySpec
from gentool.model import Model
from gentool.registry import get_registry

__all__ = ["load_model", "read_family_checkpoint", "read_family_header"]


def read_family_checkpoint(
    path: Path, family: str | None
) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Metadata and weights of a checkpoint, refused before its weights are read when it
    is not ``family``'s (None: any family), with what to do instead."""
    path = Path(path)
    meta = read_family_header(path, family)
    return meta, read_weights(path, meta)


def read_family_header(path: Path, family: str | None) -> CheckpointMeta:
    """The metadata of a checkpoint (format and checksums checked), refused when it is not
    ``family``'s (None: any family)."""
    meta = read_header(path)
    if family is not None and meta.family != family:
        if meta.family in get_registry().families:
            hint = f"use the {meta.family!r} family with it"
        else:
            plugin = meta.plugin or "?"
            hint = f"{meta.family!r} is not installed (plugin {plugin}; see `gentool plugins`)"
        raise UserError(f"{path} is a {meta.family!r} checkpoint, not {family!r}; {hint}")
    return meta


def load_model(
    family: FamilySpec | str | None, checkpoint: str | Path, device: torch.device | str
) -> Model:
    """The model in a checkpoint, rebuilt from its saved hyperparameters, in eval mode.

    ``family`` is a spec, a registered family's name, or None for whatever family wrote the
    file. ``checkpoint`` is a run folder or a ``.safetensors`` file. The saved metadata is
    on ``model.checkpoint_meta``. Every problem with the file is a :class:`UserError`.
    """
    path = resolve_checkpoint(checkpoint)
    name = family.name if isinstance(family, FamilySpec) else family
    meta = read_family_header(path, name)
    spec = family if isinstance(family, FamilySpec) else get_registry().family(meta.family)
    try:
        config = config_from_json(spec.config, json.dumps(meta.config))
    except UserError as err:  # its message names a CLI flag the user did not type
        raise UserError(f"{path}: damaged gentool metadata (the hyperparameters: {err})") from None
    try:
        info = DataInfo.from_json(meta.data)
    except (KeyError, ValueError, TypeError) as err:
        raise UserError(f"{path}: damaged gentool metadata (the data: {err})") from None
    # The tensors' names and shapes the metadata implies, against the file's header, before
    # any network is built or weight read: edited hyperparameters (a thousandfold depth)
    # would otherwise cost minutes and gigabytes before they are found not to fit.
    found = read_tensor_shapes(path)
    expected = _expected_state(spec, config, info, path, len(found))
    misfit = describe_misfit(expected, found) if expected is not None else ""
    if misfit:
        raise UserError(f"{path} does not fit the {spec.name!r} networks: {misfit}")
    tensors = read_weights(path, meta)
    model = _build(spec, config, info, torch.device(device), path)
    misfit = describe_misfit(model.networks.state_dict(), tensors)
    if misfit:
        raise UserError(f"{path} does not fit the {spec.name!r} networks: {misfit}")
    try:
        model.networks.load_state_dict(tensors)
    except RuntimeError as err:  # names and shapes fit; what is left is torch's own check
        first = " ".join(str(err).split())[:300]
        raise UserError(f"{path} does not fit the {spec.name!r} networks: {first}") from None
    model.checkpoint_meta = meta
    return model.eval()


class _TooLarge(Exception):
    pass


def _build(spec: FamilySpec, config: Any, info: DataInfo, device: torch.device, path: Path):
    try:
        return spec.load_model_class()(config, info, device)
    except UserError as err:  # values no training run writes: the file was edited
        raise UserError(f"{path}: cannot rebuild the model from its metadata: {err}") from None


def _expected_state(
    spec: FamilySpec, config: Any, info: DataInfo, path: Path, holds: int
) -> dict[str, torch.Tensor] | None:
    """The state of the networks the metadata implies, built on the ``meta`` device (no
    memory, no weight drawn, the RNG untouched); None where a family cannot be built there
    (its check waits for the real networks). A file holds its model's tensors, ``holds``
    of them: metadata that makes the networks far larger (a thousandfold depth) does not
    fit, and is told so as soon as the building passes a generous bound."""
    budget, made = 4 * holds + 5_000, 0

    def count(module: Any, name: str, value: Any) -> None:
        nonlocal made
        made += 1
        if made > budget:
            raise _TooLarge

    hooks = [
        register_module_parameter_registration_hook(count),
        register_module_buffer_registration_hook(count),
    ]
    meta = torch.device("meta")
    try:
        with torch.random.fork_rng(devices=[]), meta:
            return _build(spec, config, info, meta, path).networks.state_dict()
    except _TooLarge:
        raise UserError(
            f"{path} does not fit the {spec.name!r} networks: its metadata asks for more than "
            f"{budget:,} tensors, the file holds {holds:,}"
        ) from None
    except UserError:
        raise
    except Exception:  # a family whose construction needs real tensors
        return None
    finally:
        for hook in hooks:
            hook.remove()
