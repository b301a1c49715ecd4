"""Hyperparameter dataclasses: one schema for CLI options, `info`, config files and checkpoints.

A family declares its hyperparameters once, as a dataclass whose fields are made with
:func:`option`. The CLI turns every field into a ``--flag`` (type, default and help from the
field), ``--config FILE`` reads TOML or JSON into the same fields, and the checkpoint stores
them as JSON so a run can be reloaded without repeating a flag.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config(TrainConfig):
    ...     hidden_features: tuple[int, ...] = option((64, 64), "units per hidden layer")
    ...     activation: str = option("relu", "nonlinearity", choices=("relu", "tanh"))
    >>> cfg = build_config(Config, {"hidden-features": "32,32", "epochs": "3"})
    >>> cfg.hidden_features, cfg.epochs
    ((32, 32), 3)
    >>> build_config(Config, {"activation": "gelu"})
    Traceback (most recent call last):
    ...
    gentool.errors.UserError: --activation: 'gelu' is not one of relu, tanh
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gentool.errors import UserError
from gentool.options import RESERVED_NAMES

__all__ = [
    "RESERVED_NAMES",
    "ConfigField",
    "DensityConfig",
    "Schedule",
    "TrainConfig",
    "build_config",
    "config_fields",
    "config_from_json",
    "config_to_dict",
    "env_flag",
    "load_config_file",
    "option",
]


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    resumable: bool = False,
    minimum: float | None = None,
    above: float | None = None,
) -> Any:
    """A hyperparameter field: its default, one line of help, and optional constraints.

    ``resumable`` fields (the schedule: epochs, patience, ...) may change when a run is
    resumed; every other field is part of the model and must stay as it was. ``minimum``
    is the least value allowed, ``above`` a bound the value must exceed (a learning rate).
    """
    meta = {"help": help, "choices": choices, "resumable": resumable, "minimum": minimum}
    meta["above"] = above
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple for sequence defaults: dataclass defaults must be immutable")
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class ConfigField:
    """What the CLI and ``gentool info`` need to know about one hyperparameter."""

    name: str
    kind: type  # int, float, str, bool or tuple (a tuple of `item` values)
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    resumable: bool = False
    minimum: float | None = None
    item: type | None = None  # element type of a tuple field
    above: float | None = None  # an exclusive minimum

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe_type(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        if self.kind is tuple:
            return f"{self.item.__name__},..."
        return self.kind.__name__

    def format_default(self) -> str:
        if self.kind is tuple:
            return ",".join(str(v) for v in self.default)
        if self.kind is bool:
            return "on" if self.default else "off"
        return str(self.default)

    def parse(self, raw: Any) -> Any:
        """Turn a CLI string or a config-file value into this field's type, or raise UserError."""
        try:
            value = self._convert(raw)
        except (TypeError, ValueError):
            raise UserError(f"{self.flag}: {raw!r} is not a valid {self.describe_type()}") from None
        values = value if self.kind is tuple else (value,)
        wrong = [v for v in values if self.choices and v not in self.choices]
        if wrong:  # a tuple's choices hold for each of its items
            raise UserError(f"{self.flag}: {wrong[0]!r} is not one of {', '.join(self.choices)}")
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            # No hyperparameter means anything by NaN or inf; NaN also passes every minimum.
            raise UserError(f"{self.flag}: {raw!r} is not a finite number")
        if self.minimum is not None and any(
            isinstance(v, int | float) and v < self.minimum for v in values
        ):
            raise UserError(f"{self.flag}: {raw!r} is below the minimum {self.minimum:g}")
        if self.above is not None and any(
            isinstance(v, int | float) and v <= self.above for v in values
        ):
            raise UserError(f"{self.flag}: {raw!r} must be above {self.above:g}")
        return value

    def _convert(self, raw: Any) -> Any:
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if self.kind is tuple:
            if isinstance(raw, str):
                text = raw.replace(" ", "")
                parts = text.split(",") if text else []
                if "" in parts:  # `32,,32` or `32,`: a value lost, not one to guess
                    raise UserError(
                        f"{self.flag}: {raw!r} has an empty item; separate values by one comma"
                    )
            elif isinstance(raw, list | tuple):
                parts = list(raw)
            else:
                parts = [raw]
            return tuple(_scalar(self.item, p) for p in parts)
        return _scalar(self.kind, raw)


def _scalar(kind: type, raw: Any) -> Any:
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        if isinstance(raw, bool):
            raise ValueError(raw)
        return int(raw) if not isinstance(raw, str) else int(raw.strip())
    if kind is float:
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(raw)
    if kind is str:
        if not isinstance(raw, str):
            raise TypeError(raw)
        return raw
    raise TypeError(f"unsupported hyperparameter type {kind!r}")


def config_fields(config_class: type) -> list[ConfigField]:
    """The hyperparameters of a config dataclass, in declaration order."""
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{config_class!r} is not a dataclass")
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        if f.name in RESERVED_NAMES:
            raise TypeError(
                f"{config_class.__name__}.{f.name}: the name is taken by a shared CLI option"
            )
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        item = None
        if origin is tuple:
            kind, item = tuple, typing.get_args(hint)[0]
        elif origin in (typing.Union, types.UnionType):
            raise TypeError(f"{config_class.__name__}.{f.name}: optional fields are not supported")
        else:
            kind = hint
        if kind not in (int, float, str, bool, tuple):
            raise TypeError(f"{config_class.__name__}.{f.name}: unsupported type {hint!r}")
        meta = f.metadata
        out.append(
            ConfigField(
                name=f.name,
                kind=kind,
                default=f.default,
                help=meta.get("help", ""),
                choices=meta.get("choices"),
                resumable=meta.get("resumable", False),
                minimum=meta.get("minimum"),
                above=meta.get("above"),
                item=item,
            )
        )
    return out


def build_config(config_class: type, values: dict[str, Any], base: Any = None) -> Any:
    """A config from ``base`` (or the defaults) with ``values`` applied and checked.

    Keys may use ``-`` or ``_``. An unknown key or an ill-typed value raises UserError.
    """
    by_name = {f.name: f for f in config_fields(config_class)}
    current = config_to_dict(base) if base is not None else {}
    for key, raw in values.items():
        name = key.lstrip("-").replace("-", "_")
        field = by_name.get(name)
        if field is None:
            known = ", ".join(f.flag for f in by_name.values())
            raise UserError(f"unknown hyperparameter '{key}'; this family takes {known}")
        current[name] = field.parse(raw)
    return config_class(**current)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as a JSON-able dict (tuples become lists in JSON, and come back as tuples)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def config_from_json(config_class: type, text: str) -> Any:
    """The inverse of ``json.dumps(config_to_dict(cfg))``, checked field by field."""
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(config_class)}
    # Fields added to a family after a checkpoint was written take their defaults.
    return build_config(config_class, {k: v for k, v in data.items() if k in known})


def load_config_file(path: Path) -> dict[str, Any]:
    """Hyperparameters from a TOML or JSON file (a flat table of name = value).

    Any readable path that is not a folder will do, a pipe included (``--config <(...)``):
    it is read once.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--config: {path} is a folder; give a TOML or JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--config: no such file: {path}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"--config: cannot parse {path}: {err}") from None
    except OSError as err:
        raise UserError(f"--config: cannot read {path}: {err.strerror or err}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"--config: cannot parse {path}: {err}") from None
    if not isinstance(data, dict) or any(isinstance(v, dict) for v in data.values()):
        raise UserError(f"--config: {path} must be one flat table of name = value")
    return data


#: ``sample_every``'s auto value (see the option's help).
AUTO_SAMPLE_EVERY = -1


@dataclass(frozen=True)
class Schedule:
    """What the training engine reads of a family's hyperparameters: how long and in what
    order a run trains, when it previews, and when it stops early.

    A config says its schedule through :meth:`TrainConfig.schedule`, so the engine never
    looks up a family's fields by name.
    """

    epochs: int
    batch_size: int
    seed: int
    sample_every: int = AUTO_SAMPLE_EVERY
    #: Share of the training split held out for the validation loss (families with one).
    val_fraction: float = 0.0
    #: Epochs without a better validation loss before the run stops (0 = never).
    patience: int = 0


@dataclass
class TrainConfig:
    """The schedule every family shares; a family's config subclasses it and adds its own.

    A family may redefine a field to change its default (a GAN trains with batch size 1).
    """

    epochs: int = option(10, "passes over the training set", resumable=True, minimum=1)
    batch_size: int = option(64, "images per training step", minimum=1)
    lr: float = option(1e-3, "learning rate (Adam)", above=0.0)
    seed: int = option(0, "seed for weights, data order, noise and augmentation")
    sample_every: int = option(
        AUTO_SAMPLE_EVERY,
        "write a preview grid every N epochs (0 = never; -1 = auto: every epoch, but at most "
        "one per 10 s of training, and one at the end)",
        resumable=True,
        minimum=-1,
    )

    def schedule(self) -> Schedule:
        """The engine's view of this config; a family with early stopping adds its own."""
        return Schedule(self.epochs, self.batch_size, self.seed, self.sample_every)


@dataclass
class DensityConfig(TrainConfig):
    """The hyperparameters every image-density family shares (see :mod:`gentool.density`)."""

    epochs: int = option(200, "most passes over the training set", resumable=True, minimum=1)
    batch_size: int = option(100, "images per training step (MAF paper: 100)", minimum=1)
    lr: float = option(1e-3, "learning rate (Adam)", above=0.0)
    weight_decay: float = option(1e-6, "L2 penalty on the weights (MAF paper: 1e-6)", minimum=0.0)
    grad_clip: float = option(5.0, "clip the gradient norm to this (0 = off)", minimum=0.0)
    logit_lambda: float = option(
        -1.0,
        "lambda of the logit transform (MAF paper: 1e-6 MNIST, 0.05 CIFAR-10); "
        "-1 = auto: 0.05 for one-class training (--normal-class), else 1e-6",
        minimum=-1.0,
    )
    val_fraction: float = option(
        0.1, "share of the training images held out for early stopping (0 = none)", minimum=0.0
    )
    patience: int = option(
        30,
        "stop after N epochs without a better validation NLL (0 = never)",
        resumable=True,
        minimum=0,
    )
    score_samples: int = option(
        4, "dequantisation draws per image when scoring (importance-weighted bound)", minimum=1
    )
    smoothing: float = option(
        -1.0,
        "std of Gaussian noise added to the dequantised training pixels in (0, 1), a smoothing "
        "prior for small one-class data; -1 = auto: 0.1 with --normal-class, else 0 (off)",
        minimum=-1.0,
    )

    def schedule(self) -> Schedule:
        return dataclasses.replace(
            super().schedule(), val_fraction=self.val_fraction, patience=self.patience
        )


def env_flag(name: str) -> bool:
    """An on/off environment variable: unset, empty, 0, false, no and off mean off."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")
