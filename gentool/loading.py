"""A trained model from its checkpoint: the file format joined with the installed families.

:mod:`gentool.checkpoint` reads and writes files and knows no family; this module finds
the family a checkpoint names in the registry, rebuilds its model from the saved
hyperparameters and data description, and loads the weights into it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gentool.checkpoint import (
    CheckpointMeta,
    describe_misfit,
    read_header,
    read_weights,
    resolve_checkpoint,
)
from gentool.config import config_from_json
from gentool.data.base import DataInfo
from gentool.errors import UserError
from gentool.family import FamilySpec
from gentool.model import Model
from gentool.registry import get_registry

__all__ = ["load_model", "read_family_checkpoint"]


def read_family_checkpoint(
    path: Path, family: str | None
) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Metadata and weights of a checkpoint, refused before its weights are read when it
    is not ``family``'s (None: any family), with what to do instead."""
    path = Path(path)
    meta = read_header(path)
    if family is not None and meta.family != family:
        if meta.family in get_registry().families:
            hint = f"use the {meta.family!r} family with it"
        else:
            plugin = meta.plugin or "?"
            hint = f"{meta.family!r} is not installed (plugin {plugin}; see `gentool plugins`)"
        raise UserError(f"{path} is a {meta.family!r} checkpoint, not {family!r}; {hint}")
    return meta, read_weights(path, meta)


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
    meta, tensors = read_family_checkpoint(path, name)
    spec = family if isinstance(family, FamilySpec) else get_registry().family(meta.family)
    try:
        config = config_from_json(spec.config, json.dumps(meta.config))
    except UserError as err:  # its message names a CLI flag the user did not type
        raise UserError(f"{path}: damaged gentool metadata (the hyperparameters: {err})") from None
    try:
        info = DataInfo.from_json(meta.data)
    except (KeyError, ValueError, TypeError) as err:
        raise UserError(f"{path}: damaged gentool metadata (the data: {err})") from None
    try:
        model = spec.load_model_class()(config, info, torch.device(device))
    except UserError as err:  # values no training run writes: the file was edited
        raise UserError(f"{path}: cannot rebuild the model from its metadata: {err}") from None
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
