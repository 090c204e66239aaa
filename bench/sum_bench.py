"""Benchmark of the coordinator's running sum: uploads added per second, in process and by workers.

Run: ``.venv/bin/python bench/sum_bench.py [--parameters 10000000] [--uploads 10]
[--workers 1 2] [--repeats 3] [--write docs/benchmarks.md]``

What it measures: n participants' ``ckks+masks`` uploads (b = 16, complete-graph masks,
n = ``--uploads``) are protected once and spooled to disk, as the coordinator keeps
them until their receipts verify. Then, for each ``--workers`` count, a fresh
``RoundSum`` (``aggregation_workers``: 1 sums in process, more spreads the sum over a
``SumWorkers`` pool by chunk range) adds every upload, and finishes (the self-mask
correction of every survivor, added per range, and the aggregate's chunks). Times are
wall seconds, the least of ``--repeats`` runs: the work spans processes, so CPU time
of one process would not show it. The aggregates of every worker count must be equal
byte for byte, or the benchmark fails. The pool is started once, before the timed
runs, as a coordinator starts it on its first large round; that start is reported
apart. Peak RSS (VmHWM) of each worker process is read from /proc after the runs.

With ``--write PATH`` the "## Coordinator sum workers" section of PATH is written or
replaced, stating this command, the machine and the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tenseal
from report import cpu_model, publish

from accord.coordinator.aggregation.round_sum import RoundSum
from accord.coordinator.aggregation.spool import Spool
from accord.coordinator.aggregation.sum_workers import SumWorkers
from accord.core.transport import DEFAULT_MAX_MESSAGE_BYTES
from accord.crypto import masks, pipeline
from accord.crypto.ckks import SecretContext
from accord.crypto.messages import RoundConfig
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec

SECTION = "## Coordinator sum workers"
B = 16


def setup(parameters: int, uploads: int, directory: Path) -> dict[str, Any]:
    """Protect and spool `uploads` random updates; return the round, spools and correction."""
    names = tuple(f"p{i:02d}" for i in range(uploads))
    secret = SecretContext.generate()
    config = RoundConfig(
        federation_id="bench",
        round=1,
        profile=Profile.CKKS_MASKS,
        selected=names,
        threshold=2,
        quant=QuantSpec(modulus_bits=B, max_participants=uploads),
        element_count=parameters + 1,
        packing=choose_packing(B, uploads),
        graph_seed=b"\x00" * 32,
    )
    rng = np.random.default_rng(0)
    self_seeds = {name: rng.bytes(16) for name in names}
    pair_seeds = {(u, v): rng.bytes(16) for u in names for v in names if u < v}
    spools = []
    for name in names:
        pairwise = {v: pair_seeds[tuple(sorted((name, v)))] for v in names if v != name}
        terms = masks.participant_terms(name, self_seeds[name], pairwise)
        values = rng.integers(0, 2**B, parameters + 1, dtype=np.uint32)
        spool = Spool(directory)
        for chunk in pipeline.protect(
            values,
            profile=config.profile,
            federation_id=config.federation_id,
            round=config.round,
            mask_terms=terms,
            modulus_bits=B,
            packing=config.packing,
            secret=secret,
        ):
            spool.append(chunk)
        spools.append(spool)
    return {
        "config": config,
        "public": secret.public(),
        "spools": spools,
        "correction": masks.correction_terms(self_seeds, []),
    }


def run(inputs: dict[str, Any], pool: SumWorkers | None) -> dict[str, Any]:
    """Add every upload to a fresh sum and finish it; wall seconds and the aggregate's digest."""
    total = RoundSum(
        inputs["config"],
        public=inputs["public"],
        max_chunk_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        workers=pool,
    )
    assert total.fallback_reason == "", total.fallback_reason
    pids = pool.pids if pool is not None and total.workers > 1 else []
    cpu_before = time.process_time() + sum(cpu_s(pid) for pid in pids)
    start = time.perf_counter()
    for spool in inputs["spools"]:
        total.add(spool)
    added = time.perf_counter()
    add_cpu_s = time.process_time() + sum(cpu_s(pid) for pid in pids) - cpu_before
    aggregate = list(total.finish(inputs["correction"]))
    finished = time.perf_counter()
    digest = hashlib.sha256(b"".join(aggregate)).hexdigest()
    return {
        "workers": total.workers,
        "add_s": added - start,
        "add_cpu_s": add_cpu_s,
        "finish_s": finished - added,
        "digest": digest,
        "aggregate_bytes": sum(len(c) for c in aggregate),
    }


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    return (
        f'{len(os.sched_getaffinity(0))} CPUs, CPU model "{cpu_model()}", Python '
        f"{platform.python_version()}, numpy {np.__version__}, TenSEAL {tenseal.__version__}, "
        f"{platform.system()} {platform.release()}"
    )


def report(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="accord-sum-bench-") as folder:
        load = os.getloadavg()
        begun = time.perf_counter()
        inputs = setup(args.parameters, args.uploads, Path(folder))
        setup_s = time.perf_counter() - begun
        upload_bytes = inputs["spools"][0].bytes
        pools: list[SumWorkers | None] = []
        start_s = []
        for count in args.workers:
            pool = SumWorkers(count) if count >= 2 else None
            begun = time.perf_counter()
            if pool is not None:  # start the processes, as a coordinator's first large round does
                RoundSum(
                    inputs["config"],
                    public=inputs["public"],
                    max_chunk_bytes=DEFAULT_MAX_MESSAGE_BYTES,
                    workers=pool,
                )
            start_s.append(time.perf_counter() - begun if pool is not None else 0.0)
            pools.append(pool)
        # Interleaved (1, 2, 1, 2, ...), so that every count meets the same neighbours.
        runs: list[list[dict[str, Any]]] = [[] for _ in pools]
        for _ in range(args.repeats):
            for index, pool in enumerate(pools):
                runs[index].append(run(inputs, pool))
        rows = []
        for pool, timed, started in zip(pools, runs, start_s, strict=True):
            rows.append(
                {
                    "workers": timed[0]["workers"],
                    "add_s": min(r["add_s"] for r in timed),
                    "add_median_s": float(np.median([r["add_s"] for r in timed])),
                    "add_cpu_s": min(r["add_cpu_s"] for r in timed),
                    "finish_s": min(r["finish_s"] for r in timed),
                    "digests": {r["digest"] for r in timed},
                    "aggregate_bytes": timed[0]["aggregate_bytes"],
                    "start_s": started,
                    "worker_rss_mib": [peak_rss_mib(pid) for pid in pool.pids] if pool else [],
                }
            )
            if pool is not None:
                pool.close()
        for spool in inputs["spools"]:
            spool.close()
    digests = set().union(*(row["digests"] for row in rows))
    if len(digests) != 1:
        raise SystemExit(f"the aggregates differ between worker counts: {sorted(digests)}")
    base = rows[0]["add_s"]
    table = [
        "| aggregation_workers | processes summing | add s (all uploads) | median add s | "
        "add CPU s | "
        "uploads/s | M params/s | MB/s | vs first row | finish s | pool start s | "
        "worker peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, count in zip(rows, args.workers, strict=True):
        add_s = row["add_s"]
        table.append(
            f"| {count} | {row['workers']} | {add_s:.2f} | {row['add_median_s']:.2f} | "
            f"{row['add_cpu_s']:.2f} | "
            f"{args.uploads / add_s:.2f} | "
            f"{args.uploads * args.parameters / add_s / 1e6:.1f} | "
            f"{args.uploads * upload_bytes / add_s / 1e6:.0f} | {base / add_s:.2f}x | "
            f"{row['finish_s']:.2f} | {row['start_s']:.2f} | "
            + (", ".join(f"{r:.0f}" for r in row["worker_rss_mib"]) or "-")
            + " |"
        )
    command = "python bench/sum_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command.strip()}` (from the repository root, in `.venv`).",
            "",
            f"Machine: {machine()}; load average {load[0]:.2f} at the start (the machine "
            "is shared with other jobs).",
            "",
            f"{args.uploads} `ckks+masks` uploads (b = 16, n = {args.uploads}, complete-graph "
            f"masks) of {args.parameters:,} parameters ({upload_bytes / 1e6:.1f} MB each, "
            f"protected and spooled in {setup_s:.0f} s beforehand) added to one round's sum by "
            "`RoundSum.add`, then `RoundSum.finish` (self-mask correction of every survivor, "
            f"aggregate of {rows[0]['aggregate_bytes'] / 1e6:.1f} MB). Wall seconds, the "
            f"least (and the median) of {args.repeats} runs per row, the rows' runs "
            "interleaved so that each meets the same neighbours; `add CPU s` is the CPU "
            "time of the coordinator's process and the workers together during the adds "
            "(the least of the runs), so "
            "that its ratio to `add s` shows how much of the time the processes really ran "
            "in parallel on a shared machine. `aggregation_workers = 1` sums in the "
            "coordinator's process; 2 spreads the sum over two worker processes by chunk "
            "range, each reading its chunks from the spool file. The aggregates were equal "
            "byte for byte across rows. `pool start` is the one-time start of the worker "
            "processes (a coordinator's first large round); worker peak RSS includes the "
            "interpreter, numpy and TenSEAL. The per-chunk `check` that runs while an upload "
            "streams in stays in the coordinator's process and is not included.",
            "",
            "\n".join(table),
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parameters", type=int, default=10_000_000, help="adapter parameters")
    parser.add_argument("--uploads", type=int, default=10, help="uploads (participants)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="counts to run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per count (least time)")
    parser.add_argument("--write", type=Path, help="write the section into this markdown file")
    args = parser.parse_args()
    publish(report(args), args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
