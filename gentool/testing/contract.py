"""The contract every model family keeps, as a pytest suite a plugin's tests inherit.

gentool runs every registered family through it, and so can a third-party plugin's own
tests (the same tests, on the same data, through the same engine):

.. code-block:: python

    from gentool.testing import FamilyContract

    class TestMyFlow(FamilyContract):
        family_name = "myflow"

The family's ``FamilySpec.test_config`` (hyperparameters of a small model that trains in
seconds) sizes the model; a subclass may add ``config``, ``data``, ``data_options``,
``epochs`` or ``device``. The data default to real or built-in sets: scikit-learn's digits
for image families, 32-pixel toy shapes for translation ones. The suite needs pytest.
"""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch.utils.data import default_collate

from gentool.checkpoint import MODEL_FILE, RESUME_FILE, load_resume, read_checkpoint
from gentool.config import build_config
from gentool.data.base import DataKind, DataOptions, DataSource
from gentool.data.resolve import resolve_data
from gentool.family import FamilySpec
from gentool.loading import load_model
from gentool.model import Model
from gentool.registry import get_registry
from gentool.runtime import resolve_device, seed_everything, to_device
from gentool.training import FitResult, RunOptions, fit
from gentool.training.checkpoints import Checkpointer
from gentool.training.state import TrainState

__all__ = ["DEFAULT_DATA", "Contract", "FamilyContract"]

#: Steps between the step records of the suite's runs.
LOG_EVERY = 3

#: The data each data kind is tested on: a dataset name and its options.
DEFAULT_DATA: dict[DataKind, tuple[str, dict[str, Any]]] = {
    DataKind.IMAGES: ("digits", {}),
    DataKind.UNPAIRED: ("toy-shapes", {"image_size": 32}),
    DataKind.PAIRED: ("toy-shapes-paired", {"image_size": 32}),
}


class Contract:
    """One family set up for the suite: its small config, its data, runs in a folder.

    Arguments:
        spec: the family.
        config: hyperparameters over the spec's ``test_config``.
        data, data_options: what to train on (None: :data:`DEFAULT_DATA` of its kind).
        epochs: how long the reference run trains.
        device: where (``"cpu"``, ``"cuda"``, ...).
        folder: where the runs go.
    """

    def __init__(
        self,
        spec: FamilySpec,
        config: dict[str, Any],
        data: str | None,
        data_options: dict[str, Any],
        epochs: int,
        device: str,
        folder: Path,
    ) -> None:
        self.spec, self.folder, self.epochs = spec, Path(folder), epochs
        self.device = resolve_device(device)
        values = {**spec.test_config, **config, "epochs": epochs}
        self.config = build_config(spec.config, values)
        default_data, default_options = spec.test_data or DEFAULT_DATA[spec.data_kind]
        self.data = data or default_data
        options = {**(default_options if data is None else {}), **data_options}
        self.data_options = DataOptions(seed=self.config.seed, **options)

    @cached_property
    def source(self) -> DataSource:
        return resolve_data(
            self.data, self.spec.data_kind, self.data_options, get_registry().datasets
        )

    def new_model(self) -> Model:
        """A freshly initialised model, seeded as ``gentool train`` seeds it."""
        seed_everything(self.config.seed)
        return self.spec.load_model_class()(self.config, self.source.info, self.device)

    def batch(self, split: str = "train", size: int = 4) -> Any:
        """The first ``size`` items of a split, as a batch on the model's device."""
        dataset = self.source.split(split)
        items = [dataset[i] for i in range(min(size, len(dataset)))]
        return to_device(default_collate(items), self.device)

    def fit(self, out: Path, max_steps: int | None = None, resume: bool = False):
        """Train a fresh model (or continue the run in ``out``) through the engine."""
        model = self.new_model()
        run = RunOptions(
            out=Path(out),
            device=self.device,
            resume=resume,
            max_steps=max_steps,
            progress=False,
            log_every=LOG_EVERY,
            request={"data": self.data, "options": dataclasses.asdict(self.data_options)},
        )
        return fit(self.spec, model, self.source, run), model

    @cached_property
    def whole(self) -> tuple[FitResult, Model]:
        """The reference run: ``epochs`` epochs without a stop."""
        return self.fit(self.folder / "whole")

    def outputs(self, model: Model) -> dict[str, torch.Tensor]:
        """What each of the family's capabilities gives for fixed inputs and noise."""
        model.eval()
        out: dict[str, torch.Tensor] = {}
        batch = self.batch("test")
        with torch.no_grad():
            if self.spec.can("sample"):
                seed_everything(0)
                out["sample"] = model.sample(4)
            if self.spec.can("translate"):
                out["translate"] = model.translate(_images(batch))
            if self.spec.can("score"):
                seed_everything(0)
                model.begin_scoring()
                for key, value in model.score_batch(batch).items():
                    out[f"score.{key}"] = value
        return out


def _images(batch: Any) -> torch.Tensor:
    """The input images of a batch of any data kind."""
    return batch["A"] if isinstance(batch, dict) else batch[0]


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_tensors(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]):
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(found[key], value), f"{key} differs"


class FamilyContract:
    """The family contract: subclass it in a test module and name the family."""

    #: The registered family under test.
    family_name: ClassVar[str] = ""
    #: Hyperparameters over the family's ``test_config``.
    config: ClassVar[dict[str, Any]] = {}
    #: A dataset name or folder, and its options (None: :data:`DEFAULT_DATA`).
    data: ClassVar[str | None] = None
    data_options: ClassVar[dict[str, Any]] = {}
    #: Epochs of the reference run (at least 2: a resumed run crosses an epoch's end).
    epochs: ClassVar[int] = 2
    device: ClassVar[str] = "cpu"

    @pytest.fixture(scope="class")
    @classmethod
    def family(cls) -> FamilySpec:
        """The family under test; override to test a spec that is not registered."""
        return get_registry().family(cls.family_name)

    @pytest.fixture(scope="class")
    @classmethod
    def contract(cls, family: FamilySpec, tmp_path_factory: Any) -> Contract:
        folder = tmp_path_factory.mktemp(f"contract-{family.name}")
        return Contract(
            family, cls.config, cls.data, cls.data_options, cls.epochs, cls.device, folder
        )

    def test_a_training_step_gives_finite_detached_scalar_losses(self, contract):
        model = contract.new_model()
        model.configure_training()
        model.train()
        before = {k: v.clone() for k, v in model.networks.state_dict().items()}
        for _ in range(2):
            losses = model.train_step(contract.batch())
            assert losses, "train_step returned no losses"
            for key, value in losses.items():
                assert isinstance(value, torch.Tensor) and value.dim() == 0, key
                assert not value.requires_grad, f"{key} is not detached"
                assert math.isfinite(float(value)), f"{key} is {float(value)}"
        after = model.networks.state_dict()
        assert any(not torch.equal(after[k], v) for k, v in before.items()), "nothing trained"

    def test_an_uninterrupted_run_writes_its_checkpoints_and_records(self, contract):
        result, _ = contract.whole
        out = contract.folder / "whole"
        assert (result.stopped, result.epochs) == ("finished", contract.epochs)
        epochs = [r for r in _records(out) if r["type"] == "epoch"]
        assert [r["epoch"] for r in epochs] == list(range(1, contract.epochs + 1))
        for record in epochs:
            losses = {k: v for k, v in record.items() if isinstance(v, float)}
            assert losses and all(math.isfinite(v) for v in losses.values()), record
        meta, _ = read_checkpoint(out / MODEL_FILE)
        assert meta.family == contract.spec.name and (out / RESUME_FILE).is_file()
        assert (out / "losses.png").is_file()

    def test_a_resumed_run_equals_an_uninterrupted_one(self, contract):
        """Stopped part-way through the second epoch and resumed: the same weights, bit for
        bit, the same resume state and the same ``metrics.jsonl``, byte for byte."""
        result, whole = contract.whole
        whole_out, split_out = contract.folder / "whole", contract.folder / "split"
        per_epoch = _records(whole_out)[-1]["step"] // contract.epochs
        # Part-way through the second epoch, off the log points: the stop then logs a step
        # record of its own, which an uninterrupted run does not have.
        into = next((k for k in range(per_epoch - 1, 0, -1) if k % LOG_EVERY), 0)
        stop_at = per_epoch + into
        stopped, _ = contract.fit(split_out, max_steps=stop_at)
        assert (stopped.stopped, stopped.steps) == ("max-steps", stop_at)
        resumed_result, resumed = contract.fit(split_out, resume=True)
        assert (resumed_result.epochs, resumed_result.steps) == (result.epochs, result.steps)
        _assert_same_tensors(resumed.networks.state_dict(), whole.networks.state_dict())
        metrics = "metrics.jsonl"
        assert (split_out / metrics).read_bytes() == (whole_out / metrics).read_bytes()
        _, kept = read_checkpoint(split_out / MODEL_FILE)
        _, expected = read_checkpoint(whole_out / MODEL_FILE)
        _assert_same_tensors(kept, expected)
        found, wanted = load_resume(split_out / RESUME_FILE), load_resume(whole_out / RESUME_FILE)
        assert found["engine"] == wanted["engine"]
        _assert_same_tensors(found["extra"], wanted["extra"])

    def test_a_checkpoint_reloads_to_identical_outputs(self, contract, tmp_path):
        _, model = contract.whole
        request = {"data": contract.data, "options": {}}
        saver = Checkpointer(tmp_path, contract.spec, model, contract.device, request, 0.0)
        saver.save_model(TrainState(epoch=contract.epochs), {})
        loaded = load_model(contract.spec, tmp_path, contract.device)
        _assert_same_tensors(loaded.networks.state_dict(), model.networks.state_dict())
        assert loaded.data.to_json() == model.data.to_json()
        _assert_same_tensors(contract.outputs(loaded), contract.outputs(model))

    def test_the_capabilities_give_their_shapes_and_ranges(self, contract):
        _, model = contract.whole
        info, outputs = model.data, contract.outputs(model)
        if contract.spec.can("sample"):
            assert outputs["sample"].shape == (4, *info.shape)
        if contract.spec.can("translate"):
            images = _images(contract.batch("test"))
            assert outputs["translate"].shape == images.shape
        images = _images(contract.batch("test"))
        for key, value in outputs.items():
            if key == "score.anomaly_map":  # one value per pixel, at the images' size
                assert value.shape == (len(images), *images.shape[-2:]), key
                assert torch.isfinite(value).all(), key
            elif key.startswith("score."):
                assert value.shape == (len(images),), key
                assert torch.isfinite(value).all(), key
            else:
                assert value.min() >= 0 and value.max() <= 1, f"{key} leaves [0, 1]"

    def test_the_extra_state_round_trips(self, contract):
        _, model = contract.whole
        extra = model.extra_state()
        fresh = contract.new_model()
        fresh.configure_training()
        fresh.load_extra_state({k: v.clone() for k, v in extra.items()})
        _assert_same_tensors(fresh.extra_state(), extra)

    def test_bench_times_every_operation(self, contract):
        from gentool.bench import run_bench

        model = contract.new_model()
        report = run_bench(contract.spec, model, None, 2, repeats=1)
        ops = report["ops"]
        able = {c for c in ("sample", "score", "translate") if contract.spec.can(c)}
        assert {"train_step", *able} <= set(ops), report.get("skipped")
        for name, op in ops.items():
            assert op["median_s"] > 0, name
