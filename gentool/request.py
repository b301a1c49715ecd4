"""What ``gentool train`` is asked to do: a typed request, built fresh or from a run to resume.

A :class:`TrainRequest` is checked whole before any work starts (a bad flag, an unwritable
``--out``, a run already in the folder, a data option that differs from the run's), and
alone decides whether there is anything left to train. Its data part is saved in the
resume state (:meth:`TrainRequest.to_json`), so that ``--resume`` needs no data flag again.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gentool.checkpoint import MODEL_FILE, RESUME_FILE, read_resume_header
from gentool.checks import check_out_folder, check_precision, check_seed, inside
from gentool.config import (
    Schedule,
    build_config,
    config_fields,
    config_from_json,
    load_config_file,
)
from gentool.data.base import DataInfo, DataOptions, parse_direction
from gentool.errors import UserError
from gentool.family import DataKind, FamilySpec
from gentool.options import TrainOptions

__all__ = ["Done", "TrainRequest", "nothing_to_train"]


@dataclass(frozen=True)
class Done:
    """How far the run in a folder has trained, from its resume state."""

    epoch: int = 0
    step: int = 0
    bad_epochs: int = 0  # epochs since the best validation loss
    best: float | None = None  # the best validation loss


def nothing_to_train(schedule: Schedule, done: Done, max_steps: int | None) -> str | None:
    """How a run that has trained ``done`` ended, when ``schedule`` leaves it nothing to do:
    ``"finished"``, ``"early-stopped"`` or ``"max-steps"``; None while there is work left."""
    if done.epoch >= schedule.epochs:
        return "finished"
    if schedule.patience and done.bad_epochs >= schedule.patience:
        return "early-stopped"
    if max_steps is not None and done.step >= max_steps:
        return "max-steps"
    return None


@dataclass(frozen=True)
class TrainRequest:
    """One ``gentool train`` as asked: the family, its hyperparameters, the data, the run.

    Arguments:
        spec: the family.
        config: its hyperparameters, checked (typed values over a ``--config`` file over
            the defaults; for a resumed run, over the run's own).
        data: a dataset name or a folder, as typed.
        data_options: how to load it.
        out: the run folder.
        options: the shared options as typed (device, workers, precision, ...).
        done: for a resumed run, how far it has trained; None for a fresh run.
        trained_on: for a resumed run, the data description it was trained with.
    """

    spec: FamilySpec
    config: Any
    data: str
    data_options: DataOptions
    out: Path
    options: TrainOptions
    done: Done | None = None
    trained_on: DataInfo | None = None

    @classmethod
    def from_cli(
        cls,
        spec: FamilySpec,
        explicit: dict[str, Any],
        options: TrainOptions,
        given: frozenset[str] = frozenset(),
    ) -> TrainRequest:
        """The request for ``gentool train``: ``explicit`` holds the hyperparameters the
        user typed, ``given`` the names of the data options typed (checked on resume)."""
        _check_options(options)
        file_values = load_config_file(options.config) if options.config else {}
        typed = {**file_values, **explicit}  # a --config file counts as typed
        if options.resume:
            request = cls._resumed(spec, typed, options, given)
        else:
            request = cls._fresh(spec, typed, options)
        check_seed(request.config.seed)
        return request

    @classmethod
    def _fresh(cls, spec: FamilySpec, typed: dict[str, Any], options: TrainOptions):
        if not options.data:
            raise UserError(
                "--data is required: a dataset name (see `gentool datasets`) or a folder"
            )
        config = build_config(spec.config, typed)
        out = Path(options.out or Path("runs") / f"{spec.name}-{_slug(options.data)}")
        check_out_folder(out)
        existing = [f for f in (MODEL_FILE, RESUME_FILE) if (out / f).exists()]
        if existing and not options.overwrite:
            raise UserError(
                f"{out} already holds a run; continue it with --resume, "
                "start afresh with --overwrite, or choose another --out"
            )
        if existing:
            _check_overwrite_keeps_inputs(spec, config, out)
        defaults = spec.data_defaults
        data_options = DataOptions(
            image_size=_given_or(options.image_size, defaults.get("image_size")),
            channels=_given_or(options.channels, defaults.get("channels")),
            load_size=_given_or(options.load_size, defaults.get("load_size")),
            flip=options.flip,
            normal_class=options.normal_class,
            direction=parse_direction(options.direction),
            seed=config.seed,
        )
        return cls(spec, config, options.data, data_options, out, options)

    @classmethod
    def _resumed(
        cls, spec: FamilySpec, typed: dict[str, Any], options: TrainOptions, given: frozenset
    ):
        from gentool.density import resolve_auto

        if options.out is None:
            raise UserError("--resume needs --out RUN, the run folder to continue")
        out = Path(options.out)
        path = out / RESUME_FILE
        header = read_resume_header(path)
        meta = header["meta"]
        if meta["gentool.family"] != spec.name:
            raise UserError(f"{out} is a {meta['gentool.family']!r} run, not {spec.name!r}")
        try:
            saved = config_from_json(spec.config, meta["gentool.config"])
            info = DataInfo.from_json(meta["gentool.data"])
            data, data_options = _data_from_json(header["request"])
            done = _done(meta, header.get("engine") or {})
        except (KeyError, ValueError, TypeError, AttributeError, UserError) as err:
            raise UserError(f"{path}: damaged resume state ({type(err).__name__}: {err})") from None
        config = build_config(spec.config, typed, base=saved)
        chosen = resolve_auto(config, info)  # `auto` typed again means the value it chose then
        for field in config_fields(spec.config):
            if not field.resumable and getattr(chosen, field.name) != getattr(saved, field.name):
                raise UserError(
                    f"{field.flag} cannot change when resuming (the model was built with "
                    f"{getattr(saved, field.name)!r}); start a new run for that"
                )
        _check_data_options(options, given, data, data_options, info)
        return cls(spec, config, data, data_options, out, options, done, info)

    # -- what the run does --------------------------------------------------------------------
    @property
    def resume(self) -> bool:
        return self.options.resume

    @property
    def max_steps(self) -> int | None:
        return self.options.max_steps

    def workers(self) -> int:
        """``--workers``, or auto: in-memory image sets need none; decoding photos wants a few."""
        if self.options.workers is not None:
            return self.options.workers
        return 0 if self.spec.data_kind == DataKind.IMAGES else min(4, max(1, os.cpu_count() - 1))

    def nothing_to_train(self) -> tuple[str, str] | None:
        """``(how the run ended, the line that says why nothing trains)`` for a resumed run
        that has nothing left to do; None when there is work."""
        if self.done is None:
            return None
        schedule, done, out = self.config.schedule(), self.done, self.out
        stopped = nothing_to_train(schedule, done, self.max_steps)
        if stopped == "finished":
            why = f"already has {done.epoch} epochs (--epochs {schedule.epochs})"
            flag = "--epochs"
        elif stopped == "early-stopped":
            why = (
                f"stopped early at epoch {done.epoch} (--patience {schedule.patience} epochs "
                "without improvement)"
            )
            flag = "--patience"
        elif stopped == "max-steps":
            why = f"already has {done.step} steps (--max-steps {self.max_steps})"
            flag = "--max-steps"
        else:
            return None
        return stopped, f"{out} {why}: nothing to train; pass a larger {flag} to train on"

    def to_json(self) -> dict[str, Any]:
        """The data part of the request, as the resume state keeps it."""
        return {"data": self.data, "options": dataclasses.asdict(self.data_options)}


# -- checks ---------------------------------------------------------------------------------------
def _check_options(options: TrainOptions) -> None:
    if options.resume and options.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite clears it: give one")
    if options.max_steps is not None and options.max_steps < 1:
        raise UserError(f"--max-steps must be at least 1, got {options.max_steps}")
    if options.workers is not None and options.workers < 0:
        raise UserError(
            f"--workers must be 0 (load in this process) or more, got {options.workers}"
        )
    if options.out is not None:
        check_out_folder(Path(options.out))
    check_precision(options.precision)


def _check_overwrite_keeps_inputs(spec: FamilySpec, config: Any, out: Path) -> None:
    """``--overwrite`` clears ``out``: refuse when a hyperparameter names a file or folder
    there that the run reads (a distilled IAF's ``--teacher`` run)."""
    for field in config_fields(spec.config):
        value = getattr(config, field.name)
        if isinstance(value, str) and value and Path(value).exists() and inside(Path(value), out):
            raise UserError(
                f"{field.flag} {value} lies in --out {out}, which --overwrite would clear; "
                "choose another --out"
            )


def _check_data_options(
    options: TrainOptions, given: frozenset[str], data: str, saved: DataOptions, info: DataInfo
) -> None:
    """A data option typed when resuming must be the run's own; anything else is an error."""
    stored = {"data": data, **dataclasses.asdict(saved)}
    for name in sorted(given):
        typed = getattr(options, name)
        if name == "direction":
            typed = parse_direction(typed)
        if typed == stored.get(name):
            continue
        flag = "--" + name.replace("_", "-")
        if name == "flip":
            flag, was = ("--flip", "with --no-flip") if typed else ("--no-flip", "with --flip")
        elif stored.get(name) is None:  # the run left it to the data source
            was = f"without it: {describe(info)}"
        else:
            was = f"with {stored[name]!r}"
        raise UserError(
            f"{flag} cannot change when resuming (the run was trained {was}); "
            "start a new run for that"
        )


def _data_from_json(request: Any) -> tuple[str, DataOptions]:
    """The data part of a resume state's request, checked for shape."""
    if not isinstance(request, dict):
        raise ValueError("the request must be an object")
    data, options = request["data"], request["options"]
    if not isinstance(data, str) or not isinstance(options, dict):
        raise ValueError("the data request must name the data and its options")
    unknown = set(options) - {f.name for f in dataclasses.fields(DataOptions)}
    if unknown:
        raise ValueError(f"unknown data options {sorted(unknown)}")
    return data, DataOptions(**options)


def _done(meta: dict[str, str], engine: dict[str, Any]) -> Done:
    best = engine.get("best")
    return Done(
        epoch=int(meta.get("gentool.epoch", 0)),
        step=int(meta.get("gentool.step", 0)),
        bad_epochs=int(engine.get("bad_epochs", 0)),
        best=float(best) if best is not None else None,
    )


def _given_or(value: Any, default: Any) -> Any:
    return default if value is None else value


def describe(info: DataInfo) -> str:
    """``images, 1x8x8``: a data description in a few words."""
    return f"{info.kind.value}, {info.channels}x{info.height}x{info.width}"


def _slug(text: str) -> str:
    """A run folder's name for ``--data``: a folder's own name, a dataset's whole name
    (``mvtec-ad/bottle`` -> ``mvtec-ad-bottle``, never a bare ``bottle``)."""
    name = text if not Path(text).expanduser().exists() else Path(text).name or text
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "data"
