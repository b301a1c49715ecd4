"""Anomaly detection and localisation: ``fastflow`` beside the pixel ``maf``, per dataset.

    python benchmarks/anomaly.py [--data defects,mvtec-ad/bottle,...] [--seeds 0,1]
        [--backbone-weights none|imagenet|FILE] [--backbone resnet18] [--epochs 100]
        [--image-size 256] [--device cpu|cuda] [--threads 1] [--families fastflow,maf-features,maf]
        [--fastflow-flags "..."] [--maf-flags "..."] [--out benchmarks/results/anomaly.json]

For each dataset (a name or a folder in MVTec AD layout) and seed, each family is trained
by the CLI on the normal training images and scored on the test split by ``gentool score
--json``, the code a user runs. Reported: image AUROC and AUPRC (anomaly positive), pixel
AUROC and AUPRO (families with maps, data with masks), F1 at the stored threshold (chosen
on held-out normal images only), training time, scoring time per image and the process's
peak memory. The table shows the median over seeds.

- ``fastflow``: the family's defaults, the backbone and its weights as given (``none``: a
  seeded random ResNet, what this machine can run offline; ``imagenet``: torchvision's
  weights, the published setting).
- ``maf-features``: ``maf --features BACKBONE``, the flow on the image's pooled features of
  the same backbone (an image-level detector: no map), at ``--image-size``.
- ``maf``: the pixel flow on the same images at ``--maf-size`` pixels (default 16: a pixel
  MAF has ~3 D H parameters per layer, 47 M at 3x32x32), one-class defaults.

The MVTec AD table of docs/anomaly.md needs internet once (the data, and for ``imagenet``
the backbone's weights) and is best run on a GPU:
``python benchmarks/anomaly.py --data mvtec-ad --backbone-weights imagenet --device cuda``
(``mvtec-ad`` alone means all 15 categories).
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits_common import cli, versions  # noqa: E402

MVTEC = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
FIGURES = ("auroc", "auprc", "pixel_auroc", "aupro", "f1")


def run_one(family: str, data: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    """Train and score one family on one dataset; the summary figures and the timings."""
    out = folder / f"{family}-{data.replace('/', '-')}-{seed}"
    common = ["--device", args.device, "--quiet", "--seed", str(seed), "--out", str(out)]
    backbone = ["--backbone-weights", args.backbone_weights, "--image-size", str(args.image_size)]
    if family == "fastflow":
        flags = ["--backbone", args.backbone, *backbone, "--epochs", str(args.epochs)]
        flags += shlex.split(args.fastflow_flags)
    elif family == "maf-features":
        flags = ["--features", args.backbone, *backbone, "--channels", "3"]
        flags += ["--epochs", str(args.maf_epochs), *shlex.split(args.maf_flags)]
    else:
        flags = ["--image-size", str(args.maf_size), "--channels", "3"]
        flags += ["--epochs", str(args.maf_epochs), *shlex.split(args.maf_flags)]
    started = time.perf_counter()
    name = family.partition("-")[0]  # maf-features is the maf family on features
    cli(["train", name, "--data", data, *common, *flags])
    trained = time.perf_counter() - started
    started = time.perf_counter()
    summary = json.loads(
        cli(["score", name, "-c", str(out), "--data", data, "--json", "--device", args.device])
    )
    scored = time.perf_counter() - started
    row = {k: summary[k] for k in FIGURES if k in summary}
    row.update(
        train_s=trained,
        score_s_per_image=scored / summary["images"],
        images=summary["images"],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="defects")
    parser.add_argument("--families", default="fastflow,maf-features,maf")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--backbone-weights", default="none")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--maf-size", type=int, default=16)
    parser.add_argument("--maf-epochs", type=int, default=200)
    parser.add_argument("--fastflow-flags", default="", help="more flags for fastflow's train")
    parser.add_argument("--maf-flags", default="", help="more flags for maf's train")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.data.split(",") if n]
    names = [f"mvtec-ad/{c}" for c in MVTEC] if names == ["mvtec-ad"] else names
    seeds = [int(s) for s in args.seeds.split(",")]
    families = [f for f in args.families.split(",") if f]
    runs: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for data in names:
            for seed in seeds:
                for family in families:  # alternated per seed on a shared machine
                    row = run_one(family, data, seed, args, Path(folder))
                    runs.setdefault(data, {}).setdefault(family, []).append(row)
                    print(f"{data} {family} seed {seed}: {json.dumps(row)}", file=sys.stderr)
    report = {
        "date": datetime.date.today().isoformat(),
        "setup": {**vars(args), "out": str(args.out), "versions": versions()},
        "runs": runs,
        "median": {
            data: {family: _median(rows) for family, rows in by_family.items()}
            for data, by_family in runs.items()
        },
    }
    _print_table(report["median"])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return report


def _median(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def _print_table(medians: dict) -> None:
    columns = [*FIGURES, "train_s", "score_s_per_image", "peak_rss_mb"]
    print("| data | family | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for data, by_family in medians.items():
        for family, row in by_family.items():
            cells = [f"{row[c]:.4g}" if c in row else "" for c in columns]
            print(f"| {data} | {family} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
