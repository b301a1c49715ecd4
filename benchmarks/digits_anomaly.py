"""One-class anomaly detection on digits: gentool's ``maf`` beside classical detectors.

    python benchmarks/digits_anomaly.py [--out benchmarks/results/digits_anomaly.json]
        [--seeds 0,1,2] [--classes 0,1,...,9] [--no-plain] [--maf-flags "--scale softplus"]

For each digit k: train on the train split's images of k only (about 145), score the whole
fixed test split (360 images, about 36 of them k), anomaly = not k. Reported per class and
as the mean over the ten classes: AUROC, AUPRC with the anomaly as the positive class (90%
of the test images are anomalies, so it is near 1 for everyone) and AUPRC with the normal
class as positive (the informative one here). All metrics come from
:func:`gentool.scoring.anomaly_metrics`, the code ``gentool score`` uses.

- ``maf (defaults)``: ``gentool train maf --data digits --normal-class k --seed s`` with no
  other flag, then ``gentool score maf --checkpoint RUN --data digits --split test``; the
  score is the NLL, importance-weighted over dequantisation draws. With several seeds the
  table shows the mean over seeds, and the JSON every seed. ``--maf-flags`` appends flags to
  this run, to try a setting against the same detectors (the row is then named by them).
- ``maf (plain)``: the family's defaults before this benchmark (MAF paper, MNIST: 5 MADEs of
  1024 units, batch norm, logit lambda 1e-6, no smoothing), one seed.
- The classical detectors see the pixel values k/16 of the same images; each chooses its
  hyperparameters from the normal training images alone: exact Gaussian KDE (bandwidth by
  5-fold cross-validated likelihood, brute-force log-sum-exp), GaussianMixture (components,
  covariance type and reg_covar by 5-fold CV likelihood on dequantised pixels),
  IsolationForest (200 trees), OneClassSVM (RBF, gamma "scale", nu 0.1) and PCA
  reconstruction error (components for 90% of the variance). One more GMM row is an
  oracle: the single grid setting of best mean test AUROC, chosen on the test set, a
  ceiling rather than a method.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits_common import (  # noqa: E402
    cli,
    dequantize,
    digits_split,
    kde_bandwidth_cv,
    kde_log_density,
    versions,
)

PLAIN_FLAGS = [
    "--hidden-features", "1024", "--num-layers", "5", "--batch-norm", "--logit-lambda", "1e-6",
    "--smoothing", "0", "--batch-size", "100", "--val-fraction", "0.1", "--patience", "30",
    "--epochs", "200",
]  # fmt: skip
GMM_GRID = list(itertools.product(("full", "diag"), (1, 2, 4, 8), (1e-3, 1e-2, 1e-1)))
METRICS = ("auroc", "auprc", "auprc_normal")


def metrics(scores: np.ndarray, anomaly: np.ndarray) -> dict[str, float]:
    from gentool.metrics import anomaly_metrics

    out = anomaly_metrics(torch.as_tensor(scores), torch.as_tensor(anomaly.astype(np.int64)))
    return {m: out[m] for m in METRICS}


def maf(k: int, seed: int, flags: list[str], workdir: Path) -> dict:
    """Train ``maf`` on digit k through the CLI and score the test split with ``gentool score``."""
    run = workdir / f"maf-{k}-{seed}-{len(flags)}"
    started = time.perf_counter()
    trained = cli(["train", "maf", "--data", "digits", "--normal-class", str(k), "--seed",
                   str(seed), "--out", str(run), "--device", "cpu", "--quiet", "--overwrite",
                   *flags])  # fmt: skip
    seconds = time.perf_counter() - started
    scored = json.loads(cli(["score", "maf", "--checkpoint", str(run), "--data", "digits",
                             "--split", "test", "--json", "--device", "cpu"]))  # fmt: skip
    assert scored["normal_class"] == str(k) and scored["anomaly_score"] == "nll"
    trained = json.loads(trained.strip().splitlines()[-1])
    return {
        **{m: scored[m] for m in METRICS},
        "seconds": round(seconds, 1),
        "epochs": trained["epochs"],
        "steps": trained["steps"],
    }


def gmm_scores(x: np.ndarray, query: np.ndarray, cov: str, n: int, reg: float) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(n, covariance_type=cov, reg_covar=reg, random_state=0).fit(x)
    return -model.score_samples(query)


def gmm_cv(x: np.ndarray) -> tuple[str, int, float]:
    """The GMM grid setting of best 5-fold held-out likelihood."""
    from sklearn.mixture import GaussianMixture
    from sklearn.model_selection import KFold

    folds = list(KFold(5, shuffle=True, random_state=0).split(x))

    def held_out(setting: tuple[str, int, float]) -> float:
        cov, n, reg = setting
        return np.mean([
            GaussianMixture(n, covariance_type=cov, reg_covar=reg, random_state=0)
            .fit(x[a]).score(x[b]) for a, b in folds
        ])  # fmt: skip

    return max(GMM_GRID, key=held_out)


def classical(k: int, train_k, train_labels, test_k, test_labels, oracle_scores: dict) -> dict:
    """Every classical detector on digit k; also fills ``oracle_scores`` for the GMM grid."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    x = train_k[train_labels == k] / 16.0
    query = test_k / 16.0
    anomaly = test_labels != k
    rows = {}

    bandwidth, _ = kde_bandwidth_cv(x, np.geomspace(0.05, 1.0, 19))
    rows["KDE (exact, CV bandwidth)"] = {
        **metrics(-kde_log_density(x, query, bandwidth), anomaly),
        "bandwidth": bandwidth,
    }

    # The GMM's likelihood is chosen on dequantised pixels: on k/16 the always-zero pixels
    # have zero variance, and the held-out likelihood would only reward the smallest reg_covar.
    rng = np.random.default_rng(k)
    y = dequantize(train_k[train_labels == k], rng)
    y_query = (test_k + 0.5) / 17.0
    cov, n, reg = gmm_cv(y)
    rows["GMM (CV)"] = {**metrics(gmm_scores(y, y_query, cov, n, reg), anomaly),
                        "setting": f"{cov}, {n} components, reg {reg:g}"}  # fmt: skip
    for setting in GMM_GRID:
        oracle_scores.setdefault(setting, []).append(
            metrics(gmm_scores(y, y_query, *setting), anomaly)
        )

    forest = IsolationForest(n_estimators=200, random_state=0).fit(x)
    rows["IsolationForest"] = metrics(-forest.score_samples(query), anomaly)
    svm = OneClassSVM(gamma="scale", nu=0.1).fit(x)
    rows["OneClassSVM"] = metrics(-svm.score_samples(query), anomaly)
    pca = PCA(0.9, random_state=0).fit(x)
    error = ((query - pca.inverse_transform(pca.transform(query))) ** 2).sum(axis=1)
    rows["PCA reconstruction"] = {**metrics(error, anomaly), "components": int(pca.n_components_)}
    return rows


def mean_row(per_class: dict[int, dict]) -> dict[str, float]:
    return {m: float(np.mean([row[m] for row in per_class.values()])) for m in METRICS}


def print_tables(table: dict[str, dict[int, dict]], classes: list[int]) -> None:
    names = list(table)
    for metric, title in (("auroc", "AUROC"), ("auprc_normal", "AUPRC, normal = positive"),
                          ("auprc", "AUPRC, anomaly = positive")):  # fmt: skip
        print(f"\n{title}\n")
        print("| digit | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for k in classes:
            print(f"| {k} | " + " | ".join(f"{table[n][k][metric]:.4f}" for n in names) + " |")
        means = [mean_row(table[n])[metric] for n in names]
        print("| **mean** | " + " | ".join(f"**{v:.4f}**" for v in means) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/digits_anomaly.json"))
    parser.add_argument("--seeds", default="0", help="seeds of the maf runs, comma-separated")
    parser.add_argument("--classes", default=",".join(map(str, range(10))))
    parser.add_argument("--no-plain", action="store_true", help="skip the plain MAF row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--maf-flags", default="", help='flags appended to the defaults run, '
                        'as one string: --maf-flags "--num-layers 3"')  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)  # sklearn convergence chatter
    seeds = [int(s) for s in args.seeds.split(",")]
    classes = [int(c) for c in args.classes.split(",")]
    maf_flags = shlex.split(args.maf_flags)
    maf_row = f"maf ({' '.join(maf_flags)})" if maf_flags else "maf (defaults)"

    train_k, train_labels, test_k, test_labels = digits_split()
    table: dict[str, dict[int, dict]] = {}
    runs: dict[str, dict] = {}
    oracle_scores: dict[tuple, list] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for k in classes:
            seeded = [maf(k, s, maf_flags, Path(workdir)) for s in seeds]
            runs.setdefault(maf_row, {})[k] = seeded
            table.setdefault(maf_row, {})[k] = {
                m: float(np.mean([r[m] for r in seeded])) for m in METRICS}  # fmt: skip
            if not args.no_plain:
                plain = maf(k, seeds[0], PLAIN_FLAGS, Path(workdir))
                runs.setdefault("maf (plain)", {})[k] = [plain]
                table.setdefault("maf (plain)", {})[k] = plain
            for name, row in classical(
                k, train_k, train_labels, test_k, test_labels, oracle_scores
            ).items():
                table.setdefault(name, {})[k] = row
            line = ", ".join(f"{n} {table[n][k]['auroc']:.4f}" for n in table)
            print(f"digit {k}: AUROC {line}", file=sys.stderr, flush=True)

    best = max(oracle_scores, key=lambda s: np.mean([r["auroc"] for r in oracle_scores[s]]))
    label = f"GMM (oracle: {best[0]}, {best[1]}, reg {best[2]:g})"
    table[label] = dict(zip(classes, oracle_scores[best], strict=True))

    seed_means = {
        str(s): {m: float(np.mean([runs[maf_row][k][i][m] for k in classes]))
                 for m in METRICS}
        for i, s in enumerate(seeds)
    }  # fmt: skip
    result = {
        "benchmark": "digits one-class anomaly detection",
        "date": datetime.date.today().isoformat(),
        "machine": versions(),
        "classes": classes,
        "seeds": seeds,
        "maf_flags": maf_flags,
        "table": {n: {str(k): v for k, v in rows.items()} for n, rows in table.items()},
        "means": {n: mean_row(rows) for n, rows in table.items()},
        "maf_runs": {n: {str(k): v for k, v in rows.items()} for n, rows in runs.items()},
        "maf_defaults_mean_per_seed": seed_means,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print_tables(table, classes)
    if len(seeds) > 1:
        aurocs = [v["auroc"] for v in seed_means.values()]
        print(f"\n{maf_row} mean AUROC per seed: {', '.join(f'{a:.4f}' for a in aurocs)} "
              f"(std {np.std(aurocs, ddof=1):.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
