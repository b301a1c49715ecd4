"""The options every family's ``gentool train`` shares: one typed list, and the reserved names.

:class:`TrainOptions` is the schema of these options, written once: the CLI builds its
flags from the fields (help, flag names, help panel, the data kinds an option applies to),
a family's hyperparameter may not take one of their names (:data:`RESERVED_NAMES`), and
the training request (:mod:`gentool.request`) reads the parsed values from it.

Light module (no gentool or torch import): the config schema imports it at start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATA_OPTIONS", "RESERVED_NAMES", "TrainOptions", "applies_to"]

#: The data kinds (``DataKind`` values) of the translation families.
_TRANSLATION = frozenset({"unpaired", "paired"})


def _option(
    default: object,
    help: str,
    *flags: str,
    panel: str = "Run",
    kinds: frozenset[str] | None = None,
) -> object:
    """A shared option: its default, help, flag names (default ``--name``), the help panel
    it shows in, and the data kinds it applies to (None: every kind)."""
    meta = {"help": help, "flags": flags, "panel": panel, "kinds": kinds}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainOptions:
    """The shared options of ``gentool train FAMILY`` as the user gave them."""

    data: str | None = _option(None, "Dataset name or folder.", "--data", "-d", panel="Data")
    out: Path | None = _option(None, "Run folder \\[runs/FAMILY-DATA].", "--out", "-o")
    image_size: int | None = _option(None, "Square image size fed to the model.", panel="Data")
    channels: int | None = _option(None, "1 (grayscale) or 3 (RGB).", panel="Data")
    normal_class: str | None = _option(
        None,
        "Train on this class only (anomaly detection).",
        panel="Data",
        kinds=frozenset({"images"}),
    )
    load_size: int | None = _option(
        None, "Resize to this before the random crop.", panel="Data", kinds=_TRANSLATION
    )
    flip: bool = _option(
        True,
        "Random horizontal flips in training.",
        "--flip/--no-flip",
        panel="Data",
        kinds=_TRANSLATION,
    )
    direction: str = _option(
        "a2b",
        "a2b or b2a: which side is the input (b2a swaps A and B).",
        panel="Data",
        kinds=_TRANSLATION,
    )
    device: str = _option("auto", "auto, cpu, cuda or cuda:N.")
    resume: bool = _option(False, "Continue the run in --out.", "--resume")
    overwrite: bool = _option(False, "Start afresh in an existing run folder.", "--overwrite")
    config: Path | None = _option(None, "TOML or JSON file of hyperparameters.", "--config")
    workers: int | None = _option(None, "DataLoader worker processes \\[auto].")
    max_steps: int | None = _option(None, "Stop after N steps in total (smoke tests).")
    quiet: bool = _option(False, "No progress display.", "--quiet", "-q")
    precision: str = _option("fp32", "fp32, tf32 (CUDA matmuls) or bf16 (autocast) for training.")


#: The options that say which data a run trains on, and how it is loaded.
DATA_OPTIONS = frozenset(
    f.name for f in dataclasses.fields(TrainOptions) if f.metadata["panel"] == "Data"
)

#: Names a family's hyperparameter may not take: the shared options, and the names the
#: CLI's generated command uses itself.
RESERVED_NAMES = frozenset(f.name for f in dataclasses.fields(TrainOptions)) | {"help", "ctx"}


def applies_to(name: str, kind: str) -> bool:
    """Whether the shared option ``name`` applies to a family on ``kind`` data."""
    kinds = TrainOptions.__dataclass_fields__[name].metadata["kinds"]
    return kinds is None or kind in kinds
