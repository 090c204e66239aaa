"""Scaling of one in-process `ckks+masks` round (crypto only), as plots under docs/img/.

    python bench/scaling_bench.py --write docs/benchmarks.md

Each point is one round of the real round machines, `pipeline.protect`, the coordinator's
`UpdateSum` and one `pipeline.reveal` (the test suite's `FederationHarness`), every
participant and the coordinator serially in one process, median of `--repeats`: so
round time here is the sum of all participants' work plus the coordinator's, what one
machine does with no parallelism at all. No gRPC, no coordinator memory (the gRPC
figures are `round_bench.py`'s). Writes the section "## Scaling (in-process)".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import publish  # noqa: E402

from accord.crypto.messages import Stage  # noqa: E402
from tests.crypto.harness import FederationHarness  # noqa: E402

SECTION = "## Scaling (in-process)"


def one_round(n: int, d: int, degree: int = 0, drop: int = 0) -> float:
    threshold = max(2, (degree or n) // 2 + 1)  # a majority of each neighbourhood
    harness = FederationHarness(
        n, element_count=d + 1, neighbour_degree=degree, threshold=threshold
    )
    start = time.perf_counter()
    dropped = set(harness.ids[:drop])
    result = harness.run({Stage.UPLOAD: dropped} if dropped else None)
    elapsed = time.perf_counter() - start
    assert result.stage is Stage.AGGREGATE, result.abort_reason
    return elapsed


def median(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def plot(path: Path, xs, ys, xlabel: str, title: str, logx: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("round s (one process)")
    ax.set_title(title, fontsize=10)
    if logx:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--participants", type=int, nargs="+", default=[3, 10, 30, 100])
    parser.add_argument("--parameters", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--base-parameters", type=int, default=100_000)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    load_before, started = os.getloadavg()[0], dt.datetime.now(dt.UTC)
    d0, r = args.base_parameters, args.repeats
    by_n = [median(lambda n=n: one_round(n, d0), r) for n in args.participants]
    by_d = [median(lambda d=d: one_round(3, d), r) for d in args.parameters]
    degrees = [4, 8, 16, 29]
    by_k = [median(lambda k=k: one_round(30, d0, degree=k), r) for k in degrees]
    drops = [0, 1, 3]
    by_drop = [median(lambda x=x: one_round(10, d0, drop=x), r) for x in drops]
    plot(
        img / "scaling_participants.png",
        args.participants,
        by_n,
        "participants",
        f"ckks+masks, {d0:,} parameters",
        logx=True,
    )
    plot(
        img / "scaling_parameters.png",
        args.parameters,
        by_d,
        "parameters",
        "ckks+masks, 3 participants",
        logx=True,
    )
    plot(
        img / "scaling_degree.png",
        degrees,
        by_k,
        "mask graph degree",
        f"ckks+masks, 30 participants, {d0:,} parameters",
    )
    plot(
        img / "scaling_dropouts.png",
        [10 * x for x in drops],
        by_drop,
        "% dropped at upload",
        f"ckks+masks, 10 participants, {d0:,} parameters",
    )

    def table(label: str, xs, ys) -> str:
        head = f"| {label} | " + " | ".join(f"{x:,}" for x in xs) + " |"
        rule = "|---" * (len(xs) + 1) + "|"
        return "\n".join([head, rule, "| round s | " + " | ".join(f"{y:.2f}" for y in ys) + " |"])

    command = "python bench/scaling_bench.py " + " ".join(sys.argv[1:])
    section = f"""{SECTION}

Command: `{command}` (from the repository root, in `.venv`; also `python -m bench
scaling ...`). {os.cpu_count()} CPUs; {started:%Y-%m-%d %H:%M} UTC; load average
(1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; median of {r}.

{__doc__.split(chr(10) + chr(10), 2)[2].split("Writes the section")[0].strip()}

![round time vs participants](img/scaling_participants.png)
![round time vs parameters](img/scaling_parameters.png)
![round time vs graph degree](img/scaling_degree.png)
![round time vs dropouts](img/scaling_dropouts.png)

{table("participants", args.participants, by_n)}

{table("parameters (3 participants)", args.parameters, by_d)}

{table("graph degree (30 participants)", degrees, by_k)}

{table("dropped at upload (of 10)", drops, by_drop)}
"""
    publish(section, args.write, SECTION)


if __name__ == "__main__":
    main()
