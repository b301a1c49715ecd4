"""The same MAF in gentool, zuko, nflows and normflows, measured side by side in one run.

    pip install zuko nflows normflows    # or: pip install -e .[bench]
    python benchmarks/compare_flows.py results.json [--steps 500] [--hidden 1024] ...

Every contender gets the same flow: D = 64 (scikit-learn digits), ``--layers`` masked affine
autoregressive layers of one MADE each with ``--hidden`` units per hidden layer, ReLU, the
order reversed between layers, no batch normalisation (zuko has none), a standard normal
base. They train on the same batches with the same dequantisation noise, the same optimiser
(Adam, ``--lr``, no weight decay, no clipping) and the same number of steps, then report:

- ``train_step``: forward, backward and Adam step on a batch of ``--batch``;
- ``sample``: ``--batch`` samples (the sequential direction of a MAF);
- ``log_prob``: the log-density of ``--batch`` points (the parallel direction);
- ``held_out_nll``: nats per test image of the discrete digits (logit transform and
  dequantisation accounted for, as ``gentool score`` reports it), with fixed noise.

Contenders alternate: each training step, and each round of the timed operations, runs
every contender once in turn, so drift in the machine's speed hits them all alike. Times
are medians (all training steps; ``--repeats`` rounds after a warm-up for the others), on
``--threads`` CPU threads (1 by default). A contender whose package is missing is skipped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gentool.bench import device_name

LEVELS = 17  # digits: pixel values 0..16
LOGIT_LAMBDA = 1e-6  # gentool's default (the MAF paper's for MNIST)


class Contender:
    """One library's MAF behind the three calls the benchmark makes."""

    def __init__(
        self,
        name: str,
        flow: nn.Module,
        log_prob: Callable[[Tensor], Tensor],
        sample: Callable[[int], Tensor],
    ) -> None:
        self.name, self.flow, self.log_prob, self.sample = name, flow, log_prob, sample
        self.optimizer: torch.optim.Optimizer | None = None

    def train_step(self, w: Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = -self.log_prob(w).mean()
        loss.backward()
        self.optimizer.step()
        return loss.item()


def gentool_maf(features: int, hidden: int, layers: int, scale: str = "exp") -> Contender:
    from gentool_flows.maf import MAF

    flow = MAF(features, layers, (hidden,), order="natural", batch_norm=False, scale=scale)
    name = "gentool" if scale == "exp" else f"gentool-{scale}"
    return Contender(name, flow, flow.log_prob, flow.sample)


def gentool_softplus_maf(features: int, hidden: int, layers: int) -> Contender:
    """gentool's MAF with ``--scale softplus`` (the default is the paper's exp)."""
    return gentool_maf(features, hidden, layers, scale="softplus")


def zuko_maf(features: int, hidden: int, layers: int) -> Contender:
    import zuko

    # randperm=False: ascending order in even layers, descending in odd ones.
    flow = zuko.flows.MAF(features, transforms=layers, hidden_features=(hidden,))
    return Contender("zuko", flow, lambda w: flow().log_prob(w), lambda n: flow().sample((n,)))


def nflows_maf(features: int, hidden: int, layers: int) -> Contender:
    from nflows.flows import MaskedAutoregressiveFlow

    # One hidden layer: the input layer, no residual blocks, the output layer. A reverse
    # permutation precedes every layer.
    flow = MaskedAutoregressiveFlow(
        features=features,
        hidden_features=hidden,
        num_layers=layers,
        num_blocks_per_layer=0,
        use_residual_blocks=False,
        batch_norm_within_layers=False,
        batch_norm_between_layers=False,
    )
    return Contender("nflows", flow, flow.log_prob, flow.sample)


def normflows_maf(features: int, hidden: int, layers: int) -> Contender:
    import normflows as nf

    # normflows reads its flow list from noise to data and takes each layer's inverse for the
    # density; its MaskedAffineAutoregressive is a MAF layer in the data -> noise direction,
    # so each is wrapped in Reverse to keep the density one parallel pass (as in a MAF).
    flows: list[nn.Module] = []
    for k in range(layers):
        if k:
            reverse = nf.flows.Permute(features, mode="shuffle")
            reverse.perm.copy_(torch.arange(features - 1, -1, -1))
            reverse.inv_perm.copy_(torch.arange(features - 1, -1, -1))
            flows.append(reverse)
        made = nf.flows.MaskedAffineAutoregressive(
            features, hidden, num_blocks=0, use_residual_blocks=False
        )
        flows.append(nf.flows.Reverse(made))
    base = nf.distributions.DiagGaussian(features, trainable=False)
    flow = nf.NormalizingFlow(q0=base, flows=flows[::-1])
    return Contender("normflows", flow, flow.log_prob, lambda n: flow.sample(n)[0])


BUILDERS = {
    "gentool": gentool_maf,
    "gentool-softplus": gentool_softplus_maf,
    "zuko": zuko_maf,
    "nflows": nflows_maf,
    "normflows": normflows_maf,
}
PACKAGES = {
    "gentool": "gentool",
    "gentool-softplus": "gentool",
    "zuko": "zuko",
    "nflows": "nflows",
    "normflows": "normflows",
}


# -- data: digits in the flows' logit space ---------------------------------------------------
def digits() -> tuple[Tensor, Tensor]:
    """Train and test pixels as integer levels 0..16, [N, 64] (the split the tests use)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    train, test, _, _ = train_test_split(x, y, stratify=y, random_state=0, test_size=0.2)
    return torch.tensor(train, dtype=torch.float32), torch.tensor(test, dtype=torch.float32)


def to_logit(levels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Dequantise and map to logit space; ``w`` and ``sum log |dw/dy|`` per row."""
    y = (levels + torch.rand(levels.shape, generator=generator)) / LEVELS
    s = LOGIT_LAMBDA + (1.0 - 2.0 * LOGIT_LAMBDA) * y
    w = torch.log(s) - torch.log1p(-s)
    log_det = math.log1p(-2.0 * LOGIT_LAMBDA) - torch.log(s) - torch.log1p(-s)
    return w, log_det.sum(-1)


def held_out_nll(contender: Contender, test: Tensor) -> float:
    """Nats per discrete test image, averaged over the same noise for every contender."""
    w, log_det = to_logit(test, torch.Generator().manual_seed(1))
    contender.flow.eval()
    with torch.no_grad():
        log_p = contender.log_prob(w) + log_det
    contender.flow.train()
    return float((-log_p + test.shape[1] * math.log(LEVELS)).mean())


# -- the run --------------------------------------------------------------------------------
def train_all(
    contenders: list[Contender], train: Tensor, steps: int, batch: int
) -> dict[str, list[float]]:
    """The same batches and noise for every contender, stepping them in turn."""
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    order = torch.Generator().manual_seed(0)
    noise = torch.Generator().manual_seed(0)
    for step in range(steps):
        w, _ = to_logit(train[torch.randint(len(train), (batch,), generator=order)], noise)
        # Rotate who goes first, so no contender always runs on a cold or warm cache.
        first = step % len(contenders)
        for contender in contenders[first:] + contenders[:first]:
            start = time.perf_counter()
            loss = contender.train_step(w)
            times[contender.name].append(time.perf_counter() - start)
            if not math.isfinite(loss):
                raise RuntimeError(f"{contender.name} diverged at step {step}: loss {loss}")
    return times


def time_rounds(
    contenders: list[Contender], operations: dict[str, Callable[[Contender], Any]], repeats: int
) -> dict[str, dict[str, float]]:
    """Median seconds of each operation per contender, contenders alternating each round."""
    runs = {op: {c.name: [] for c in contenders} for op in operations}
    with torch.inference_mode():
        for op, fn in operations.items():
            for contender in contenders:  # warm-up
                fn(contender)
            for _ in range(repeats):
                for contender in contenders:
                    start = time.perf_counter()
                    fn(contender)
                    runs[op][contender.name].append(time.perf_counter() - start)
    return {
        op: {name: statistics.median(values) for name, values in by_name.items()}
        for op, by_name in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", help="write the JSON here too")
    parser.add_argument("--hidden", type=int, default=1024, help="units of the MADE hidden layer")
    parser.add_argument("--layers", type=int, default=5, help="autoregressive layers")
    parser.add_argument("--batch", type=int, default=100, help="batch of every operation")
    parser.add_argument("--steps", type=int, default=500, help="training steps per contender")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds of sample/log-prob")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--contenders", default="gentool,gentool-softplus,zuko,nflows,normflows")
    parser.add_argument("--seed", type=int, default=0, help="seed of every contender's weights")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    train, test = digits()
    features = train.shape[1]
    contenders, skipped = [], {}
    for name in args.contenders.split(","):
        torch.manual_seed(args.seed)
        try:
            contender = BUILDERS[name](features, args.hidden, args.layers)
        except ImportError as err:
            skipped[name] = f"not installed: {err}"
            continue
        contender.optimizer = torch.optim.Adam(contender.flow.parameters(), lr=args.lr)
        contenders.append(contender)

    train_times = train_all(contenders, train, args.steps, args.batch)
    nll = {c.name: held_out_nll(c, test) for c in contenders}
    for contender in contenders:
        contender.flow.eval()
    points, _ = to_logit(test[: args.batch], torch.Generator().manual_seed(2))
    timed = time_rounds(
        contenders,
        {
            "sample": lambda c: c.sample(args.batch),
            "log_prob": lambda c: c.log_prob(points),
        },
        args.repeats,
    )
    rows = {
        "train_step_s": {name: statistics.median(t) for name, t in train_times.items()},
        "sample_s": timed["sample"],
        "log_prob_s": timed["log_prob"],
        "held_out_nll_nats": nll,
    }
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": device_name(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {"torch": torch.__version__, **_versions(contenders)},
        "setup": {
            "data": "scikit-learn digits, 1437 train / 360 test, 17 levels, logit lambda 1e-6",
            "features": features,
            "hidden_features": args.hidden,
            "layers": args.layers,
            "batch": args.batch,
            "steps": args.steps,
            "optimizer": f"Adam lr={args.lr}",
            "repeats": args.repeats,
            "dtype": "float32",
            "weight_seed": args.seed,
        },
        "rows": rows,
        "gentool_speedup_over_fastest_peer": _speedups(rows),
        "skipped": skipped,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


def _speedups(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per timing row: the fastest peer's time over gentool's (> 1: gentool is faster)."""
    out = {}
    for row, values in rows.items():
        peers = [v for name, v in values.items() if not name.startswith("gentool")]
        if row.endswith("_s") and "gentool" in values and peers:
            out[row] = min(peers) / values["gentool"]
    return out


def _versions(contenders: list[Contender]) -> dict[str, str]:
    return {c.name: metadata.version(PACKAGES[c.name]) for c in contenders}


if __name__ == "__main__":
    main()
