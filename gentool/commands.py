"""What each CLI command does once its arguments are parsed (imported lazily: this needs torch)."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
from pathlib import Path
from typing import Any

import torch

from gentool.checkpoint import (
    MODEL_FILE,
    RESUME_FILE,
    resolve_checkpoint,
)
from gentool.checks import check_out_file, check_out_folder, check_seed, inside
from gentool.config import build_config, load_config_file
from gentool.data.base import DataInfo, DataOptions, parse_direction
from gentool.data.sources import checked_channels, checked_size
from gentool.errors import NoClasses, TrainingDiverged, UserError, writing
from gentool.family import DataKind, FamilySpec
from gentool.interrupts import SecondInterrupt
from gentool.loading import load_model
from gentool.model import Model
from gentool.options import TrainOptions
from gentool.progress import stderr_console
from gentool.registry import get_registry
from gentool.request import TrainRequest, describe
from gentool.runtime import check_precision, resolve_device, seed_everything
from gentool.training import RunOptions, fit
from gentool.training.lock import lock_run_folder

__all__ = ["load_model", "sample", "score", "train", "translate"]


# -- train ----------------------------------------------------------------------------------------
def train(
    spec: FamilySpec,
    explicit: dict[str, Any],
    options: TrainOptions,
    given: frozenset[str] = frozenset(),
) -> int:
    """``gentool train FAMILY``: ``explicit`` holds the hyperparameters the user typed,
    ``given`` the names of the data options typed.

    Returns the exit status: 0, or 128 + the signal number when a signal (Ctrl-C, SIGTERM)
    stopped the run after saving, so that a shell script stops there too.
    """
    from gentool.distributed import setup

    request = TrainRequest.from_cli(spec, explicit, options, given)
    dist, device = setup(resolve_device(options.device))
    console = stderr_console()
    lock = lock_run_folder(
        request.out, dist, lambda line: console.print(line, markup=False, soft_wrap=True)
    )
    try:
        return _train(request, dist, device, console)
    finally:
        lock.release()


def _train(request: TrainRequest, dist: Any, device: torch.device, console: Any) -> int:
    """The run of a request, its folder locked."""
    spec, options = request.spec, request.options
    idle = request.nothing_to_train()
    if idle is not None:
        if dist.main:
            console.print(idle[1], soft_wrap=True)
            print(json.dumps(_idle_summary(request, idle[0])))
        dist.close()
        return 0
    source = _resolve_data(request.data, spec.data_kind, request.data_options)
    seed_everything(request.config.seed)
    model = spec.load_model_class()(request.config, source.info, device)
    run = RunOptions(
        out=request.out,
        device=device,
        resume=request.resume,
        workers=request.workers(),
        max_steps=request.max_steps,
        progress=not options.quiet,
        request=request.to_json(),
        dist=dist,
        precision=options.precision,
    )
    if dist.main:
        where = f"{device}" + (f" x {dist.world} processes" if dist.active else "")
        console.print(
            f"training {spec.name} on {source.info.source} ({describe(source.info)}) on {where}"
        )
    dist.barrier()  # every rank has checked the run folder before rank 0 writes to it
    result = _fit(spec, model, source, run, console)
    dist.close()
    if not dist.main:
        return 0
    if result.stopped == "interrupted":
        how = "interrupted"
        if result.signal not in (None, signal.SIGINT):
            how = f"stopped by {signal.Signals(result.signal).name}"
        console.print(f"{how}: state saved; continue with --resume --out {run.out}", soft_wrap=True)
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
    print(json.dumps(summary))
    return 128 + result.signal if result.signal else 0


def _fit(spec: FamilySpec, model: Model, source: Any, run: RunOptions, console: Any):
    """:func:`gentool.training.fit`, its endings said in one line each."""
    out = run.out
    try:
        return fit(spec, model, source, run)
    except TrainingDiverged as err:
        kept = out / MODEL_FILE
        where = f"the last good checkpoint is {kept}" if kept.exists() else "no epoch finished"
        raise TrainingDiverged(f"{err}; training stopped, {where}; try a lower --lr") from None
    except SecondInterrupt:  # a Ctrl-C before the loop's own handler is the CLI's to say
        if run.dist.main:
            saved = (out / RESUME_FILE).is_file()
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
        if err.filename is None or not inside(Path(err.filename), out):
            raise
        raise UserError(f"cannot write {err.filename}: {err.strerror or err}") from None


def _idle_summary(request: TrainRequest, stopped: str) -> dict[str, Any]:
    """What ``train`` prints for a resumed run that has nothing left to train."""
    done = request.done
    summary = {
        "family": request.spec.name,
        "data": request.trained_on.source,
        "epochs": done.epoch,
        "steps": done.step,
        "stopped": stopped,
        "checkpoint": str(request.out / MODEL_FILE),
    }
    if done.best is not None:
        summary["best_validation_loss"] = done.best
    return summary


# Argument checks shared with the other commands.
_check_out, _check_out_file, _check_seed = check_out_folder, check_out_file, check_seed


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
    maps: Path | None = None,
) -> None:
    from gentool.scoring import score_source, write_results

    _check_seed(seed)
    if csv is not None:  # before scoring, which an IAF does pixel by pixel
        _check_out_file(csv, "--csv")
    if maps is not None:
        _check_out(maps)
    device = resolve_device(device_text)
    model = load_model(spec, checkpoint, device)
    if maps is not None and not model.localizes:
        able = sorted(
            name
            for name, other in get_registry().families.items()
            if other.can("score") and getattr(other.load_model_class(), "localizes", False)
        )
        raise UserError(
            f"--maps: {spec.name} scores whole images and makes no anomaly maps; families "
            f"that do: {', '.join(able) or 'none installed'}"
        )
    # The data read as the model saw its training data, from the checkpoint's description.
    options = DataOptions.from_info(model.data, normal_class=normal_class)
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
    result = score_source(model, dataset, labels_source, batch_size, device, maps)
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
    chosen = parse_direction(direction) if direction is not None else None  # None: its own
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
    if threads is not None and threads < 1:
        raise UserError(
            f"--threads must be at least 1, not {threads}; leave it out for torch's default"
        )
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
    defaults = spec.data_defaults
    shape = DataOptions(  # checked as train checks
        image_size=defaults.get("image_size") if image_size is None else image_size,
        channels=defaults.get("channels") if channels is None else channels,
    )
    if spec.data_kind == DataKind.IMAGES and not defaults:
        size, chans = checked_size(shape, 8), checked_channels(shape, 1)
        levels, source = 17, "digits-shaped"
    else:
        size, chans = checked_size(shape, 128), checked_channels(shape, 3)
        levels, source = 256, "rgb"
    info = DataInfo(spec.data_kind, chans, size, size, levels=levels, source=source)
    seed_everything(config.seed)
    return spec.load_model_class()(config, info, device)
