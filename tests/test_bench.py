"""``gentool bench``: every family reports its timings, memory and the report's ratio as JSON."""

import json
import shlex
import shutil

import pytest

from gentool import cli
from gentool.registry import get_registry
from gentool.testing import DEFAULT_DATA

FAMILIES = sorted(get_registry().families)


def _bench(capsys, arguments: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(shlex.split(f"bench {arguments}"))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("family", FAMILIES)
def test_bench_json_reports_every_figure(family, tmp_path, capsys):
    spec = get_registry().family(family)
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.test_config.items()}
    size = (spec.test_data or DEFAULT_DATA[spec.data_kind])[1].get("image_size")
    options = f"--image-size {size}" if size else ""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(values))
    code, out, err = _bench(
        capsys,
        f"{family} --config {config} {options} --batch-size 4 --sample-batch 3 --repeats 2 "
        "--threads 1 --device cpu --json",
    )
    assert code == 0, err
    report = json.loads(out)
    # What was measured, and how.
    assert report["family"] == family and report["model"] == "fresh"
    assert (report["device"], report["dtype"], report["threads"]) == ("cpu", "float32", 1)
    assert (report["train_batch"], report["sample_batch"], report["repeats"]) == (4, 3, 2)
    assert report["device_name"] and report["torch"] and report["parameters"] > 0
    assert all(report["config"][k] == v for k, v in values.items())
    # A fresh model is digits-shaped, or of the family's data defaults, or 3 x size^2.
    if spec.data_kind == "images" and not spec.data_defaults:
        assert report["data_shape"] == [1, 8, 8]
    else:
        assert report["data_shape"] == [spec.data_defaults.get("channels", 3), size, size]
    # One training step, per batch and per image, and the peak memory of each operation.
    ops = report["ops"]
    able = {c for c in ("sample", "translate") if spec.can(c)}
    generate = next(iter(able), "score")  # the report's ratio: generating, else scoring
    assert {"train_step", "score", *able} <= set(ops)
    assert ops["train_step"]["items"] == 4 and ops[generate]["items"] == 3
    for op in ops.values():
        assert len(op["runs_s"]) == 2 and op["median_s"] > 0
        assert op["per_item_s"] == pytest.approx(op["median_s"] / op["items"])
        assert op["peak_rss_mb"] > 0  # CPU: the process's high-water mark
    assert report["peak_rss_mb"] > 0
    assert report["skipped"] == {}
    # The report's ratio: generating a batch over one training batch.
    ratio = ops[generate]["median_s"] / ops["train_step"]["median_s"]
    assert report[f"{generate}_over_train_step"] == pytest.approx(ratio)
    if spec.plugin == "flows":  # the sequential direction, fast and as the plain loop
        assert {"parallel_pass", "sequential_fast", "sequential_plain_loop"} <= set(ops)


def test_bench_table_names_the_setup(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = _bench(capsys, "maf --batch-size 8 --sample-batch 2 --repeats 1 --device cpu")
    assert code == 0, err
    for text in ("maf (fresh) on cpu", "float32", "1 thread,", "training batch 8", "train_step"):
        assert text in out
    assert "the report's ratio" in out


def test_bench_config_only_describes_a_fresh_model(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text("{}")
    code, _, err = _bench(capsys, f"maf --checkpoint {tmp_path} --config {config} --device cpu")
    assert code == 2 and "fresh model" in err


def test_bench_of_a_distilled_iaf_times_its_distillation_step_and_survives_a_lost_teacher(
    tmp_path, capsys
):
    tiny = "--hidden-features 8 --num-layers 1 --max-steps 1 --device cpu --quiet"
    teacher, student = tmp_path / "maf", tmp_path / "iaf"
    assert cli.main(shlex.split(f"train maf --data digits --out {teacher} {tiny}")) == 0
    arguments = f"train iaf --data digits --teacher {teacher} --out {student} {tiny}"
    assert cli.main(shlex.split(arguments)) == 0
    bench = f"iaf -c {student} --batch-size 4 --sample-batch 3 --repeats 1 --device cpu --json"
    code, out, err = _bench(capsys, bench)
    assert code == 0, err
    report = json.loads(out)
    assert report["config"]["teacher"] and report["skipped"] == {}
    assert {"train_step", "sample", "score"} <= set(report["ops"])
    # The teacher is gone: sampling and scoring are still timed, the step is named as missing.
    shutil.rmtree(teacher)
    code, out, err = _bench(capsys, bench)
    assert code == 0, err
    report = json.loads(out)
    assert "train_step" not in report["ops"] and {"sample", "score"} <= set(report["ops"])
    assert "--teacher" in report["skipped"]["train_step"] and "sample_over_train_step" not in report
    assert "train_step not timed" in err


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bench_times_the_training_step_in_the_precision_train_uses(precision, capsys, monkeypatch):
    import torch

    from gentool.registry import get_registry

    model_class = get_registry().family("maf").load_model_class()
    seen: dict[str, bool] = {}
    for name in ("train_step", "sample"):
        original = getattr(model_class, name)

        def recording(self, *args, _name=name, _original=original, **kwargs):
            seen[_name] = torch.is_autocast_enabled("cpu")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(model_class, name, recording)
    code, out, err = _bench(
        capsys,
        f"maf --batch-size 4 --sample-batch 2 --repeats 1 --device cpu --json "
        f"--precision {precision}",
    )
    assert code == 0, err
    assert json.loads(out)["precision"] == precision
    # The step in train's arithmetic; sampling as `gentool sample` runs it, in float32.
    assert seen == {"train_step": precision == "bf16", "sample": False}
    assert not torch.is_autocast_enabled("cpu")


def test_bench_refuses_an_unknown_precision(capsys):
    code, out, err = _bench(capsys, "maf --device cpu --precision fp16")
    assert code == 2 and out == ""
    assert "--precision: 'fp16' is not one of fp32, tf32, bf16" in err
