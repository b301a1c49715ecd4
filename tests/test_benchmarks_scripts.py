"""The scripts under benchmarks/ still run against gentool's API, at toy sizes, and each
times the work docs/benchmarks.md says it times."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_flows_runs_and_reports_every_row(tmp_path, monkeypatch, capsys):
    compare = _script("compare_flows")
    out = tmp_path / "cf.json"
    argv = f"compare_flows.py {out} --steps 2 --hidden 8 --layers 2 --batch 10 --repeats 1"
    monkeypatch.setattr(sys, "argv", argv.split())
    compare.main()
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    rows = report["rows"]
    assert set(rows) == {"train_step_s", "sample_s", "log_prob_s", "held_out_nll_nats"}
    ran = set(rows["train_step_s"])
    assert {"gentool", "gentool-softplus"} <= ran
    assert ran | set(report["skipped"]) == set(compare.BUILDERS)  # a missing peer is named
    for values in rows.values():
        assert set(values) == ran and all(v > 0 for v in values.values())


@pytest.mark.parametrize("name", ["gentool", "gentool-softplus"])
def test_compare_flows_times_gentools_raw_flow_like_the_peers(name):
    # The peers sample their flow in its own (logit) space: base noise and the inverse,
    # nothing more. gentool's contender must time the same, not `gentool sample`'s
    # logit inverse and quantisation to pixel levels.
    compare = _script("compare_flows")
    contender = compare.BUILDERS[name](64, 8, 2)
    contender.flow.eval()
    torch.manual_seed(3)
    timed = contender.sample(5)
    torch.manual_seed(3)
    expected = contender.flow.inverse(contender.flow.noise(5))
    assert timed.shape == (5, 64) and torch.allclose(timed, expected)
    assert contender.log_prob(expected).shape == (5,)


def test_translation_speed_measures_a_setup(monkeypatch):
    speed = _script("translation_speed")
    tiny = ("cyclegan", 32, {"n_blocks": "1", "ngf": "4", "ndf": "4", "batch_size": "1"})
    monkeypatch.setitem(speed.SETUPS, "tiny", tiny)
    result = speed.measure("tiny", "cpu", 1, steps=2, warmup=1)
    assert result["setup"] == "tiny" and result["threads"] == 1 and result["parameters"] > 0
    assert len(result["step_runs_s"]) == 2 and result["step_median_s"] > 0
    assert result["peak_rss_mb"] >= result["rss_before_model_mb"] > 0


def test_translation_speed_names_an_unknown_setup(capsys):
    speed = _script("translation_speed")
    with pytest.raises(SystemExit):
        speed.main(["out.json", "--setups", "nonsense"])
    assert "unknown setup" in capsys.readouterr().err


TINY_MAF = ["--hidden-features", "8", "--num-layers", "1", "--max-steps", "2"]


def test_digits_anomaly_trains_and_scores_through_the_cli(tmp_path):
    anomaly = _script("digits_anomaly")
    row = anomaly.maf(3, 0, TINY_MAF, tmp_path)
    assert 0 <= row["auroc"] <= 1 and 0 <= row["auprc_normal"] <= 1 and row["steps"] == 2


def test_digits_density_scores_flows_from_their_checkpoints(tmp_path, monkeypatch):
    density = _script("digits_density")
    monkeypatch.setattr(density, "FLOWS", {"maf (tiny)": ("maf", TINY_MAF)})
    _, _, test_k, _ = density.digits_split()
    draws = density.dequantize(test_k[None, :20], np.random.default_rng(0))
    rows = density.flow_rows(draws, tmp_path, seed=0)
    row = rows["maf (tiny)"]
    assert row["steps"] == 2 and row["bits_per_dim"] <= row["bits_per_dim_plain"]
    assert row["gentool_score_bits_per_dim"] > 0


def test_anomaly_runs_both_families_and_reports_maps_where_there_are_some(tmp_path):
    anomaly = _script("anomaly")
    out = tmp_path / "anomaly.json"
    argv = [
        "--seeds", "0", "--epochs", "1", "--image-size", "64", "--maf-epochs", "1",
        "--fastflow-flags", "--stages layer1 --flow-steps 2", "--out", str(out),
        "--maf-flags", "--hidden-features 16 --num-layers 1",
    ]  # fmt: skip
    report = anomaly.main(argv)
    assert json.loads(out.read_text()) == report
    medians = report["median"]["defects"]
    fastflow, features, maf = (medians[f] for f in ("fastflow", "maf-features", "maf"))
    assert "auroc" in features and "pixel_auroc" not in features
    assert {"auroc", "pixel_auroc", "aupro", "f1", "score_s_per_image"} <= set(fastflow)
    assert "auroc" in maf and "pixel_auroc" not in maf  # a pixel flow makes no map
    assert all(0 <= fastflow[k] <= 1 for k in ("auroc", "pixel_auroc", "aupro"))
