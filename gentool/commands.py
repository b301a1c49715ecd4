"""What each CLI command does once its arguments are parsed (imported lazily: this needs torch)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
from pathlib import Path
from typing import Any

import torch

from gentool.checkpoint import (
    MODEL_FILE,
    RESUME_FILE,
    load_model,
    read_resume_header,
    resolve_checkpoint,
)
from gentool.config import build_config, config_fields, config_from_json, load_config_file
from gentool.data.base import DataInfo, DataOptions
from gentool.data.sources import checked_channels, checked_size
from gentool.density import resolve_auto
from gentool.engine import RunOptions, fit
from gentool.errors import NoClasses, TrainingDiverged, UserError, writing
from gentool.family import DataKind, FamilySpec
from gentool.model import Model
from gentool.progress import stderr_console
from gentool.registry import get_registry
from gentool.runtime import check_precision, resolve_device, seed_everything

__all__ = ["load_model", "sample", "score", "train", "translate"]


# -- train ----------------------------------------------------------------------------------------
def train(spec: FamilySpec, explicit: dict[str, Any], opts: dict[str, Any]) -> int:
    """``gentool train FAMILY``: ``explicit`` holds the hyperparameters the user typed.

    Returns the exit status: 0, or 128 + the signal number when a signal (Ctrl-C, SIGTERM)
    stopped the run after saving, so that a shell script stops there too.
    """
    done, done_steps = 0, 0  # epochs and steps the run has already trained
    if opts["resume"] and opts["overwrite"]:
        raise UserError("--resume continues the run in --out and --overwrite clears it: give one")
    if opts["max_steps"] is not None and opts["max_steps"] < 1:
        raise UserError(f"--max-steps must be at least 1, got {opts['max_steps']}")
    if opts["workers"] is not None and opts["workers"] < 0:
        raise UserError(
            f"--workers must be 0 (load in this process) or more, got {opts['workers']}"
        )
    if opts["out"] is not None:
        _check_out(Path(opts["out"]))
    if opts["resume"]:
        config, data_text, options, out, done, done_steps = _resumed_request(spec, explicit, opts)
    else:
        if not opts["data"]:
            raise UserError(
                "--data is required: a dataset name (see `gentool datasets`) or a folder"
            )
        data_text = opts["data"]
        file_values = load_config_file(opts["config"]) if opts["config"] else {}
        config = build_config(spec.config, {**file_values, **explicit})
        out = opts["out"] or Path("runs") / f"{spec.name}-{_slug(data_text)}"
        _check_out(Path(out))
        existing = [f for f in (MODEL_FILE, RESUME_FILE) if (out / f).exists()]
        if existing and not opts["overwrite"]:
            raise UserError(
                f"{out} already holds a run; continue it with --resume, "
                "start afresh with --overwrite, or choose another --out"
            )
        if existing:
            _check_overwrite_keeps_inputs(spec, config, Path(out))
        options = DataOptions(
            image_size=opts["image_size"],
            channels=opts["channels"],
            load_size=opts["load_size"],
            flip=opts["flip"],
            normal_class=opts["normal_class"],
            direction=_direction(opts["direction"]),
            seed=config.seed,
        )
    from gentool.distributed import setup

    _check_seed(config.seed)
    check_precision(opts["precision"])
    dist, device = setup(resolve_device(opts["device"]))
    source = _resolve_data(data_text, spec.data_kind, options)
    seed_everything(config.seed)
    model = spec.load_model_class()(config, source.info, device)
    workers = opts["workers"]
    if workers is None:  # in-memory image sets need none; decoding photos wants a few
        workers = 0 if spec.data_kind == DataKind.IMAGES else min(4, max(1, os.cpu_count() - 1))
    run = RunOptions(
        out=Path(out),
        device=device,
        resume=opts["resume"],
        workers=workers,
        max_steps=opts["max_steps"],
        progress=not opts["quiet"],
        request={"data": data_text, "options": vars(options)},
        dist=dist,
        precision=opts["precision"],
    )
    console = stderr_console()
    if dist.main and done >= config.epochs:
        console.print(
            f"{out} already has {done} epochs (--epochs {config.epochs}): nothing to train; "
            "pass a larger --epochs to train on",
            soft_wrap=True,
        )
    elif dist.main and run.max_steps is not None and done_steps >= run.max_steps:
        console.print(
            f"{out} already has {done_steps} steps (--max-steps {run.max_steps}): nothing to "
            "train; pass a larger --max-steps to train on",
            soft_wrap=True,
        )
    elif dist.main:
        where = f"{device}" + (f" x {dist.world} processes" if dist.active else "")
        console.print(
            f"training {spec.name} on {source.info.source} ({_describe(source.info)}) on {where}"
        )
    dist.barrier()  # every rank has checked the run folder before rank 0 writes to it
    try:
        result = fit(spec, model, source, run)
    except TrainingDiverged as err:
        kept = Path(out) / MODEL_FILE
        where = f"the last good checkpoint is {kept}" if kept.exists() else "no epoch finished"
        raise TrainingDiverged(f"{err}; training stopped, {where}; try a lower --lr") from None
    except KeyboardInterrupt:
        if dist.main:
            saved = (Path(out) / RESUME_FILE).is_file()
            console.print(
                "aborted by a second Ctrl-C: "
                + (
                    f"{out} keeps the state of its last save; continue with --resume --out {out}"
                    if saved
                    else "nothing was saved"
                ),
                soft_wrap=True,
            )
        raise
    except OSError as err:  # a full disk, a folder made read-only while training
        if err.filename is None or not _inside(Path(err.filename), Path(out)):
            raise
        raise UserError(f"cannot write {err.filename}: {err.strerror or err}") from None
    dist.close()
    summary = {
        "family": spec.name,
        "data": source.info.source,
        "epochs": result.epochs,
        "steps": result.steps,
        "stopped": result.stopped,
        "checkpoint": str(result.checkpoint),
    }
    if result.best_validation is not None:
        summary["best_validation_loss"] = result.best_validation
    if not dist.main:
        return 0
    if result.stopped == "interrupted":
        how = "interrupted"
        if result.signal not in (None, signal.SIGINT):
            how = f"stopped by {signal.Signals(result.signal).name}"
        console.print(f"{how}: state saved; continue with --resume --out {out}", soft_wrap=True)
    elif result.stopped == "early-stopped" and opts["resume"] and result.steps == done_steps:
        console.print(
            f"{out} stopped early at epoch {result.epochs} (--patience "
            f"{getattr(config, 'patience', 0)} epochs without improvement): nothing to train; "
            "pass a larger --patience to train on",
            soft_wrap=True,
        )
    print(json.dumps(summary))
    return 128 + result.signal if result.signal else 0


def _check_out(out: Path) -> None:
    """Refuse a run folder that cannot be written before any work starts (nothing is made)."""
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        what = "is a file" if existing == out else f"cannot be made: {existing} is a file"
        raise UserError(f"--out: {out} {what}; choose a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out: {out} cannot be written ({existing} is read-only)")


def _check_out_file(path: Path, flag: str) -> None:
    """Refuse an output file that cannot be written before the work that fills it starts."""
    if path.is_dir():
        raise UserError(f"{flag}: {path} is a folder; give a file name")
    existing = next(p for p in path.parents if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise UserError(f"{flag}: {path} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: {path} cannot be written ({existing} is read-only)")


#: Seeds are offset and multiplied (per epoch, per rank) before torch reads them, and
#: torch takes 64 bits: 32-bit seeds leave room for every such offset.
SEED_LIMIT = 2**32


def _check_seed(seed: int) -> None:
    if not -SEED_LIMIT < seed < SEED_LIMIT:
        raise UserError(
            f"--seed must lie between -{SEED_LIMIT - 1} and {SEED_LIMIT - 1}, not {seed}"
        )


def _check_overwrite_keeps_inputs(spec: FamilySpec, config: Any, out: Path) -> None:
    """``--overwrite`` clears ``out``: refuse when a hyperparameter names a file or folder
    there that the run reads (a distilled IAF's ``--teacher`` run)."""
    for field in config_fields(spec.config):
        value = getattr(config, field.name)
        if isinstance(value, str) and value and Path(value).exists() and _inside(Path(value), out):
            raise UserError(
                f"{field.flag} {value} lies in --out {out}, which --overwrite would clear; "
                "choose another --out"
            )


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _resumed_request(spec: FamilySpec, explicit: dict[str, Any], opts: dict[str, Any]):
    out = opts["out"]
    if out is None:
        raise UserError("--resume needs --out RUN, the run folder to continue")
    path = Path(out) / RESUME_FILE
    header = read_resume_header(path)
    meta, request = header["meta"], header["request"]
    if meta["gentool.family"] != spec.name:
        raise UserError(f"{out} is a {meta['gentool.family']!r} run, not {spec.name!r}")
    try:
        saved = config_from_json(spec.config, meta["gentool.config"])
        info = DataInfo.from_json(meta["gentool.data"])
    except (KeyError, ValueError, TypeError, AttributeError, UserError) as err:
        raise UserError(f"{path}: damaged resume state ({type(err).__name__}: {err})") from None
    # A --config file counts as typed: its schedule applies, and anything else must match.
    file_values = load_config_file(opts["config"]) if opts.get("config") else {}
    config = build_config(spec.config, {**file_values, **explicit}, base=saved)
    typed = resolve_auto(config, info)  # `auto` typed again means the value it chose then
    for field in config_fields(spec.config):
        if not field.resumable and getattr(typed, field.name) != getattr(saved, field.name):
            raise UserError(
                f"{field.flag} cannot change when resuming (the model was built with "
                f"{getattr(saved, field.name)!r}); start a new run for that"
            )
    _check_data_options(opts, request, info)
    options = DataOptions(**request["options"])  # what the user left out comes from the run
    done = int(meta.get("gentool.epoch", 0)), int(meta.get("gentool.step", 0))
    return config, request["data"], options, Path(out), *done


def _check_data_options(opts: dict[str, Any], request: dict[str, Any], info: DataInfo) -> None:
    """A data option typed when resuming must be the run's own; anything else is an error."""
    stored = {"data": request["data"], **request["options"]}
    for name in sorted(opts.get("given", ())):
        typed = _direction(opts[name]) if name == "direction" else opts[name]
        if typed == stored.get(name):
            continue
        flag = "--" + name.replace("_", "-")
        if name == "flip":
            flag, was = ("--flip", "with --no-flip") if typed else ("--no-flip", "with --flip")
        elif stored.get(name) is None:  # the run left it to the data source
            was = f"without it: {_describe(info)}"
        else:
            was = f"with {stored[name]!r}"
        raise UserError(
            f"{flag} cannot change when resuming (the run was trained {was}); "
            "start a new run for that"
        )


def _direction(text: str) -> str:
    value = text.lower().replace("to", "2")
    if value not in ("a2b", "b2a"):
        raise UserError(f"--direction: {text!r} is not a2b or b2a")
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(text).name or text).strip("-") or "data"


def _describe(info: DataInfo) -> str:
    return f"{info.kind.value}, {info.channels}x{info.height}x{info.width}"


def _resolve_data(text: str, kind: DataKind, options: DataOptions):
    from gentool.data.resolve import resolve_data

    return resolve_data(text, kind, options, get_registry().datasets)


# -- sample ---------------------------------------------------------------------------------------
def sample(
    spec: FamilySpec,
    checkpoint: str,
    n: int,
    out: Path,
    temperature: float,
    seed: int,
    batch_size: int,
    device_text: str,
) -> None:
    from gentool.data.images import SAVE_EXTENSIONS, save_image

    if n < 1:
        raise UserError(f"-n must be at least 1, not {n}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    if not 0 < temperature < math.inf:  # NaN too
        raise UserError(f"--temperature must be a positive number, not {temperature:g}")
    _check_seed(seed)
    as_grid = out.suffix.lower() in SAVE_EXTENSIONS and not out.is_dir()
    if not as_grid and not out.is_dir() and (out.suffix or out.exists()):
        what = (
            "is a file" if out.exists() else f"{out.suffix} is not an image format gentool writes"
        )
        raise UserError(
            f"--out {out}: {what}; give a {', '.join(SAVE_EXTENSIONS)} file for one grid, "
            "or a folder for one PNG per image"
        )
    # Checked before sampling, which can take minutes (a MAF samples pixel by pixel).
    if as_grid:
        _check_out_file(out, "--out")
    else:
        _check_out(out)
    device = resolve_device(device_text)
    model = load_model(spec, checkpoint, device)
    seed_everything(seed)
    chunks = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            chunks.append(model.sample(min(batch_size, n - start), temperature).float().cpu())
    images = torch.cat(chunks).clamp(0, 1)
    with writing("--out", out):
        if as_grid:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(images, out, nrow=max(1, int(math.ceil(math.sqrt(n)))))
            written = [out]
        else:
            out.mkdir(parents=True, exist_ok=True)
            written = [out / f"sample_{i:05d}.png" for i in range(n)]
            for image, path in zip(images, written, strict=True):
                save_image(image, path)
    print(json.dumps({"family": spec.name, "images": n, "out": str(out), "files": len(written)}))


# -- score ----------------------------------------------------------------------------------------
def score(
    spec: FamilySpec,
    checkpoint: str,
    images: Path | None,
    data: str | None,
    split: str,
    normal_class: str | None,
    as_json: bool,
    csv: Path | None,
    batch_size: int,
    seed: int,
    device_text: str,
) -> None:
    from gentool.scoring import score_source, write_results

    _check_seed(seed)
    if csv is not None:  # before scoring, which an IAF does pixel by pixel
        _check_out_file(csv, "--csv")
    device = resolve_device(device_text)
    model = load_model(spec, checkpoint, device)
    info = model.data
    options = DataOptions(
        # The checkpoint's (H, W), never squared. A plugin's loader may read image_size only:
        # for a non-square model it then gives its own size, which the model resizes.
        image_size=info.height if info.height == info.width else None,
        image_hw=(info.height, info.width),
        channels=info.channels,
        normal_class=normal_class if normal_class is not None else info.normal_class,
        direction=info.preprocessing.get("direction", "a2b"),
        seed=0,
    )
    if images is not None:
        from gentool.data.resolve import resolve_images

        dataset, labels_source = resolve_images(images, options)
        split_name = "all"
    else:
        try:
            labels_source = _resolve_data(data, spec.data_kind, options)
        except NoClasses:
            if normal_class is not None:
                raise
            # A one-class model on a folder without classes: its checkpoint's class has
            # nothing to label, so the images are scored as --images scores them.
            options = dataclasses.replace(options, normal_class=None)
            labels_source = _resolve_data(data, spec.data_kind, options)
        dataset, split_name = labels_source.split(split), split
    seed_everything(seed)
    result = score_source(model, dataset, labels_source, batch_size, device)
    result.summary = {"family": spec.name, "split": split_name, **result.summary}
    write_results(result, as_json=as_json, csv=csv)


# -- translate ------------------------------------------------------------------------------------
def translate(
    spec: FamilySpec,
    checkpoint: str,
    images: Path,
    out: Path,
    direction: str | None,
    batch_size: int,
    max_size: int | None,
    device_text: str,
) -> None:
    from gentool.translating import translate_folder

    device = resolve_device(device_text)
    model = load_model(spec, checkpoint, device)
    chosen = _direction(direction) if direction is not None else None
    written = translate_folder(model, images, out, chosen, batch_size, max_size)
    print(json.dumps({"family": spec.name, "images": written, "out": str(out)}))


# -- bench ----------------------------------------------------------------------------------------
def bench(
    spec: FamilySpec,
    checkpoint: str | None,
    batch_size: int | None,
    sample_batch: int,
    image_size: int | None,
    channels: int | None,
    config_file: Path | None,
    repeats: int,
    threads: int | None,
    as_json: bool,
    device_text: str,
    precision: str = "fp32",
) -> None:
    from gentool.bench import print_report, run_bench

    check_precision(precision)
    if repeats < 1 or sample_batch < 1 or (batch_size is not None and batch_size < 1):
        raise UserError("--repeats, --sample-batch and --batch-size must be at least 1")
    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(device_text)
    if checkpoint is not None:
        if config_file is not None or image_size is not None or channels is not None:
            raise UserError(
                "--config, --image-size and --channels describe a fresh model; "
                "a --checkpoint brings its own"
            )
        model = load_model(spec, checkpoint, device)
        source = str(resolve_checkpoint(checkpoint))
    else:
        values = load_config_file(config_file) if config_file is not None else {}
        model = _fresh_model(spec, image_size, channels, values, device)
        source = "fresh"
    report = run_bench(spec, model, batch_size, sample_batch, repeats, precision)
    report["model"] = source
    print_report(report, as_json)


def _fresh_model(
    spec: FamilySpec,
    image_size: int | None,
    channels: int | None,
    values: dict[str, Any],
    device: torch.device,
) -> Model:
    """A model with the family's defaults (or ``values``) on the data shape users train on."""
    config = build_config(spec.config, values)
    _check_seed(config.seed)
    shape = DataOptions(image_size=image_size, channels=channels)  # checked as train checks
    if spec.data_kind == DataKind.IMAGES:
        size, chans = checked_size(shape, 8), checked_channels(shape, 1)
        levels, source = 17, "digits-shaped"
    else:
        size, chans = checked_size(shape, 128), checked_channels(shape, 3)
        levels, source = 256, "rgb"
    info = DataInfo(spec.data_kind, chans, size, size, levels=levels, source=source)
    seed_everything(config.seed)
    return spec.load_model_class()(config, info, device)
