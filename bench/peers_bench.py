"""Accord's whole round against Flower SecAgg+ on the same vector, same clients, same
dropouts, alternating, in one run (issue 16).

    make bench-peers   # once: bench/.venv-peers with flwr 1.42.0
    python bench/peers_bench.py --parameters 1000000 --clients 10 --repeats 5 \\
        --write docs/benchmarks.md

Flower: bench/flower_secaggplus.py in bench/.venv-peers (its own `SecAggPlusWorkflow`
and `secaggplus_mod`, every message serialised to protobuf; see that file), one round
per subprocess call, timed inside it. Accord: the real round machines
(`CoordinatorRound`, `ParticipantRound`), `pipeline.protect`, the coordinator's
`UpdateSum` (check and add) and `pipeline.reveal`, routed in one process by the test
suite's `FederationHarness` (no serialisation of the small protocol messages; the
chunks are the wire bytes), `ckks+masks`, b = 16, complete mask graph, plus
`quantize.encode` of the float vector for every client. Both run every client and the
server serially in one process. Writes the section "## Peers: Flower SecAgg+".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import publish  # noqa: E402

from accord.crypto import quantize  # noqa: E402
from accord.crypto.messages import Stage  # noqa: E402
from tests.crypto.harness import FederationHarness  # noqa: E402

SECTION = "## Peers: Flower SecAgg+"
PEERS = ROOT / "bench" / ".venv-peers" / "bin" / "python"


def flower(parameters: int, clients: int, drop: int) -> dict:
    out = (
        subprocess.run(
            [
                str(PEERS),
                str(ROOT / "bench" / "flower_secaggplus.py"),
                "--parameters",
                str(parameters),
                "--clients",
                str(clients),
                "--repeats",
                "1",
                "--drop",
                str(drop),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return json.loads(out)["runs"][0]


def accord(parameters: int, clients: int, drop: int) -> dict:
    vector = (np.random.default_rng(5).standard_normal(parameters) * 1e-4).astype(np.float32)
    harness = FederationHarness(clients, element_count=parameters + 1)
    spec = harness.config.quant
    start = time.perf_counter()
    for p in harness.ids:
        harness.inputs[p] = quantize.encode(vector, 5, spec, np.random.default_rng(6))
    dropped = set(harness.ids[:drop])
    result = harness.run({Stage.UPLOAD: dropped} if dropped else None)
    total = time.perf_counter() - start
    assert result.stage is Stage.AGGREGATE, result.abort_reason
    assert result.aggregate is not None and result.expected is not None
    assert (result.aggregate == result.expected).all()
    sizes = list(result.upload_bytes.values())
    return {
        "round_s": total,
        "bytes_per_param": statistics.median(sizes) / parameters,
        "uploads": len(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parameters", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--drops", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    if not PEERS.exists():
        sys.exit("run `make bench-peers` first (bench/.venv-peers with flwr 1.42.0)")
    load_before, started = os.getloadavg(), dt.datetime.now(dt.UTC)
    rows = []
    for drop in args.drops:
        f_runs, a_runs = [], []
        for _ in range(args.repeats):
            f_runs.append(flower(args.parameters, args.clients, drop))
            a_runs.append(accord(args.parameters, args.clients, drop))
        f_round = statistics.median(r["round_s"] for r in f_runs)
        a_round = statistics.median(r["round_s"] for r in a_runs)
        f_bytes = statistics.median(r["masked_bytes_per_param"] for r in f_runs)
        a_bytes = statistics.median(r["bytes_per_param"] for r in a_runs)
        rows.append(
            f"| {drop} of {args.clients} | {a_round:.2f} | {f_round:.2f} "
            f"(clients {statistics.median(r['client_s_per_client'] for r in f_runs):.3f} s "
            f"each, server {statistics.median(r['server_s'] for r in f_runs):.2f} s) "
            f"| {a_round / f_round:.2f}x | {a_bytes:.2f} | {f_bytes:.2f} "
            f"| {a_bytes / f_bytes:.2f}x | {a_runs[0]['uploads']} / {f_runs[0]['uploads']} |"
        )
        print(rows[-1], flush=True)
    load_after = os.getloadavg()
    shares = args.clients - 1 if (args.clients - 1) % 2 else args.clients
    header = (
        "| dropped at upload | Accord round s | Flower SecAgg+ round s | ratio Accord / Flower "
        "| Accord upload B/param | Flower upload B/param | ratio "
        "| uploads summed (Accord / Flower) |"
    )
    command = "python bench/peers_bench.py " + " ".join(sys.argv[1:])
    section = f"""{SECTION}

Command: `make bench-peers; {command}` (from the repository root, in `.venv`; also
`python -m bench peers ...`). Machine: {os.cpu_count()} CPUs, Python
{platform.python_version()}; {started:%Y-%m-%d %H:%M} UTC; load average (1 min)
{load_before[0]:.2f} before, {load_after[0]:.2f} after. Medians of {args.repeats} rounds
each, Flower's and Accord's rounds alternating.

Flower: {__doc__.split("Flower:", 1)[1].split("Writes the section")[0].strip()}
Settings: `SecAggPlusWorkflow(num_shares={shares}, reconstruction_threshold=
{max(2, args.clients // 2)})`, default quantization (2^22 levels, modulus 2^32); dropped
clients leave before sending their masked vector. Accord: threshold n/2 + 1, dropped
participants leave before their upload. Flower's server learns the plaintext sum;
Accord's coordinator only adds ciphertexts (and the participants decrypt).

{header}
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    publish(section, args.write, SECTION)


if __name__ == "__main__":
    main()
