"""Issue 16: quantize against the memory floor, the participant's chunk workers, the
coordinator's check in its sum workers, and NVIDIA FLARE's default CKKS context.

    python bench/speed_bench.py --parameters 10000000 --peer-parameters 1000000 \\
        --repeats 5 --write docs/benchmarks.md

Every row's runs alternate with the other rows' (same process, same minute), and the
tables give medians (and the least) of `--repeats` runs, in wall seconds; the load
average is read before and after. Writes the section "## Participant workers and peers".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts
from report import publish

from accord.coordinator.aggregation.round_sum import RoundSum
from accord.coordinator.aggregation.spool import Spool
from accord.coordinator.aggregation.sum_workers import SumWorkers
from accord.core.transport import DEFAULT_MAX_MESSAGE_BYTES
from accord.crypto import masks, pipeline, quantize
from accord.crypto.aggregate import UpdateSum
from accord.crypto.ckks import SecretContext
from accord.crypto.messages import RoundConfig
from accord.crypto.packing import PackingSpec, choose_packing
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.participant.workers import ChunkWorkers

SECTION = "## Participant workers and peers"
INGEST: dict[str, float] = {}
WORKERS: dict[str, float] = {}
B = 16
N = 10  # n_max: the packing of a 10-participant federation (k = 2 at b = 16)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f})"


def protect_update(
    values: np.ndarray,
    terms: list[masks.MaskTerm],
    packing: PackingSpec,
    secret: SecretContext,
    runner: pipeline.ChunkRunner = pipeline.SERIAL,
) -> Iterator[bytes]:
    """`pipeline.protect` as every row here runs it: `ckks+masks`, b = B, round 1."""
    return pipeline.protect(
        values,
        profile=Profile.CKKS_MASKS,
        federation_id="bench",
        round=1,
        mask_terms=terms,
        modulus_bits=B,
        packing=packing,
        secret=secret,
        runner=runner,
    )


def reveal_aggregate(
    aggregate: list[bytes],
    d: int,
    packing: PackingSpec,
    secret: SecretContext,
    runner: pipeline.ChunkRunner = pipeline.SERIAL,
) -> Any:
    """`pipeline.reveal` of the aggregate of `d` parameters (and the weight slot)."""
    return pipeline.reveal(
        aggregate,
        profile=Profile.CKKS_MASKS,
        element_count=d + 1,
        modulus_bits=B,
        packing=packing,
        secret=secret,
        runner=runner,
    )


def update_sum(d: int, packing: PackingSpec, secret: SecretContext) -> UpdateSum:
    """An empty coordinator sum of `d` parameters (and the weight slot)."""
    return UpdateSum(
        Profile.CKKS_MASKS,
        d + 1,
        modulus_bits=B,
        packing=packing,
        public=secret.public(),
        federation_id="bench",
        round=1,
    )


def reference_encode(delta: np.ndarray, weight: int, spec: QuantSpec, rng: Any) -> np.ndarray:
    """The whole-vector formula `quantize.encode` used before issue 16 (same values)."""
    capped = min(weight, spec.cap)
    clipped = quantize.clip_l2(delta, spec.clip_norm)
    scaled = clipped.astype(np.float64) * (capped / spec.cap)
    values = np.clip(scaled, -spec.bound, spec.bound) / spec.step
    values += rng.random(values.shape)
    np.floor(values, out=values)
    np.clip(values, -spec.max_level, spec.max_level, out=values)
    out = np.empty(delta.size + 1, dtype=np.uint32)
    out[:-1] = (values.astype(np.int64) & ((1 << spec.modulus_bits) - 1)).astype(np.uint32)
    out[-1] = capped
    return out


def bench_quantize(d: int, repeats: int) -> list[str]:
    delta = (np.random.default_rng(0).standard_normal(d) * 1e-4).astype(np.float32)
    spec = QuantSpec(modulus_bits=B, max_participants=N)
    rows: dict[str, list[float]] = {k: [] for k in ("copy", "random", "old", "new")}
    for _ in range(repeats):
        rows["copy"].append(timed(lambda: delta.copy())[0])
        rows["random"].append(timed(lambda: np.random.default_rng(1).random(d))[0])
        t_old, a = timed(lambda: reference_encode(delta, 5, spec, np.random.default_rng(1)))
        t_new, c = timed(lambda: quantize.encode(delta, 5, spec, np.random.default_rng(1)))
        assert a.tobytes() == c.tobytes(), "encode differs from the whole-vector formula"
        rows["old"].append(t_old)
        rows["new"].append(t_new)
    names = {
        "copy": "numpy copy of the float32 delta (the memory floor)",
        "random": "`Generator.random(d)` alone (the rounding noise: a floor of the formula)",
        "old": "whole-vector formula (before: full-size float64 temporaries)",
        "new": "`quantize.encode` now (64k-element blocks, same values)",
    }
    lines = ["| step | median s (least) | ns/param |", "|---|---|---|"]
    for key, label in names.items():
        ns = statistics.median(rows[key]) / d * 1e9
        lines.append(f"| {label} | {med(rows[key])} | {ns:.1f} |")
    return lines


def bench_workers(d: int, repeats: int, secret: SecretContext) -> tuple[list[str], float]:
    packing = choose_packing(B, N)
    values = np.random.default_rng(2).integers(0, 2**B, d + 1, dtype=np.uint32)
    rng = np.random.default_rng(3)
    terms = [masks.MaskTerm(rng.bytes(16), 1)] + [
        masks.MaskTerm(rng.bytes(16), 1 if i % 2 else -1) for i in range(N - 1)
    ]
    total = update_sum(d, packing, secret)
    for chunk in protect_update(values, terms, packing, secret):
        total.add(chunk)
    aggregate = list(total.chunks())
    pools = {1: ChunkWorkers(1), 2: ChunkWorkers(2)}
    start_s, _ = timed(
        lambda: list(
            pools[2].map(pipeline.protect_chunk, _warm_jobs(values, terms, packing), secret)
        )
    )
    protect: dict[int, list[float]] = {1: [], 2: []}
    reveal: dict[int, list[float]] = {1: [], 2: []}
    revealed: dict[int, bytes] = {}
    for _ in range(repeats):
        for count, pool in pools.items():
            t, _ = timed(
                lambda pool=pool: sum(
                    len(c) for c in protect_update(values, terms, packing, secret, pool)
                )
            )
            protect[count].append(t)
            t, out = timed(lambda pool=pool: reveal_aggregate(aggregate, d, packing, secret, pool))
            reveal[count].append(t)
            revealed[count] = out.tobytes()
    assert revealed[1] == revealed[2], "aggregates differ between 1 and 2 workers"
    WORKERS.update(
        protect_s=statistics.median(protect[2]),
        reveal_s=statistics.median(reveal[2]),
        download_bytes=sum(len(c) for c in aggregate),
    )
    pools[2].close()
    lines = [
        "| participant workers | protect s, median (least) | reveal s, median (least) "
        "| protect + reveal ns/param | x cores: ns/param/core | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    base = statistics.median(protect[1]) + statistics.median(reveal[1])
    for count in (1, 2):
        both = statistics.median(protect[count]) + statistics.median(reveal[count])
        lines.append(
            f"| {count} | {med(protect[count])} | {med(reveal[count])} | {both / d * 1e9:.0f} "
            f"| {both * count / d * 1e9:.0f} | {base / both:.2f}x |"
        )
    return lines, start_s


def _warm_jobs(values: np.ndarray, terms: list[masks.MaskTerm], packing: PackingSpec) -> Any:
    """Two small chunks' jobs: starts the pool's processes (they load TenSEAL)."""
    head = values[: 2 * 16384]
    return (
        pipeline.ProtectJob(
            index=i,
            piece=head[i * 16384 : (i + 1) * 16384],
            start=i * 16384,
            profile=Profile.CKKS_MASKS,
            federation_id="bench",
            round=1,
            terms=tuple(terms),
            modulus_bits=B,
            packing=packing,
            plan=((0, 16384), (16384, 16384)),
        )
        for i in range(2)
    )


def bench_ingest(d: int, repeats: int, secret: SecretContext, directory: Path) -> list[str]:
    packing = choose_packing(B, N)
    config = RoundConfig(
        federation_id="bench",
        round=1,
        profile=Profile.CKKS_MASKS,
        selected=tuple(f"p{i}" for i in range(N)),
        threshold=2,
        quant=QuantSpec(modulus_bits=B, max_participants=N),
        element_count=d + 1,
        packing=packing,
        graph_seed=b"\x00" * 32,
    )
    values = np.random.default_rng(4).integers(0, 2**B, d + 1, dtype=np.uint32)
    chunks = list(protect_update(values, [masks.MaskTerm(b"\x01" * 16, 1)], packing, secret))
    size = sum(len(c) for c in chunks)
    spool = Spool(directory)
    for chunk in chunks:
        spool.append(chunk)
    pool = SumWorkers(2)
    thread: dict[int, list[float]] = {1: [], 2: []}
    staged: dict[int, list[float]] = {1: [], 2: []}
    added: dict[int, list[float]] = {1: [], 2: []}
    finished: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for count in (1, 2):
            total = RoundSum(
                config,
                public=secret.public(),
                max_chunk_bytes=DEFAULT_MAX_MESSAGE_BYTES,
                workers=pool if count == 2 else None,
            )
            assert total.workers == count, total.fallback_reason

            def receive(total: RoundSum = total) -> None:
                for index, chunk in enumerate(chunks):
                    total.check(chunk, index=index)

            thread[count].append(timed(receive)[0])
            staged[count].append(timed(lambda total=total: total.stage(spool))[0])
            added[count].append(timed(lambda total=total: total.add(spool))[0])
            finished[count].append(timed(lambda total=total: list(total.finish([])))[0])
    spool.close()
    pool.close()
    lines = [
        "| sum workers | receiving thread: check s per upload | workers: check s per upload "
        "| check, all s | ciphertext MB/s | MB/s per worker | add s | finish s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for count in (1, 2):
        every = statistics.median(thread[count]) + statistics.median(staged[count])
        rate = size / every / 1e6
        lines.append(
            f"| {count} | {med(thread[count])} | {med(staged[count])} | {every:.3f} "
            f"| {rate:.0f} | {rate / count:.0f} | {med(added[count])} | {med(finished[count])} |"
        )
    INGEST.update(
        check_s=statistics.median(thread[2]) + statistics.median(staged[2]),
        add_s=statistics.median(added[2]),
        finish_s=statistics.median(finished[2]),
        upload_bytes=size,
    )
    return [*lines, f"\nOne upload: {size / 1e6:.1f} MB of ciphertext, {len(chunks)} chunks."]


def bench_peers(d: int, repeats: int, secret: SecretContext) -> list[str]:
    """NVIDIA FLARE's default TenSEAL context against Accord on the same float vector."""
    delta = (np.random.default_rng(5).standard_normal(d) * 1e-4).astype(np.float32)
    # NVIDIA FLARE's provisioning (nvflare/lighter/impl/he.py: HEBuilder defaults):
    # CKKS, poly_modulus_degree 8192, coeff_mod_bit_sizes [60, 40, 40], global scale
    # 2^40; clients hold the secret key and encrypt with the public key
    # (ts.ckks_vector, asymmetric); the server gets the context without the secret key.
    flare = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40])
    flare.global_scale = 2**40
    server_ctx = ts.context_from(flare.serialize(save_secret_key=False))
    spec = QuantSpec(modulus_bits=B, max_participants=N)
    packing = choose_packing(B, N)
    terms = [masks.MaskTerm(b"\x02" * 16, 1)]
    rows: dict[str, list[float]] = {
        k: [] for k in ("f_enc", "f_add", "f_dec", "a_enc", "a_add", "a_dec")
    }
    f_bytes = a_bytes = 0
    for _ in range(repeats):
        t, blob = timed(lambda: ts.ckks_vector(flare, delta.tolist()).serialize())
        rows["f_enc"].append(t)
        f_bytes = len(blob)

        def server_add(blob: bytes = blob) -> bytes:
            a = ts.ckks_vector_from(server_ctx, blob)
            b = ts.ckks_vector_from(server_ctx, blob)
            return (a + b).serialize()

        t, summed = timed(server_add)
        rows["f_add"].append(t)
        t, _ = timed(lambda summed=summed: ts.ckks_vector_from(flare, summed).decrypt())
        rows["f_dec"].append(t)

        def accord_protect() -> list[bytes]:
            values = quantize.encode(delta, 5, spec, np.random.default_rng(6))
            return list(protect_update(values, terms, packing, secret))

        t, chunks = timed(accord_protect)
        rows["a_enc"].append(t)
        a_bytes = sum(len(c) for c in chunks)
        fresh = update_sum(d, packing, secret)

        def accord_add(fresh: UpdateSum = fresh, chunks: list[bytes] = chunks) -> None:
            for chunk in chunks:  # one upload checked and added (FLARE's: 2 loads, 1 add)
                fresh.add(chunk)

        rows["a_add"].append(timed(accord_add)[0])
        aggregate = list(fresh.chunks())
        t, _ = timed(lambda aggregate=aggregate: reveal_aggregate(aggregate, d, packing, secret))
        rows["a_dec"].append(t)
    lines = [
        "| | client protect/encrypt s | server add s (per upload) | client reveal/decrypt s "
        "| upload B/param |",
        "|---|---|---|---|---|",
        f"| Accord `ckks+masks` (b = 16, n_max = 10, 1 worker) | {med(rows['a_enc'])} "
        f"| {med(rows['a_add'])} | {med(rows['a_dec'])} | {a_bytes / d:.2f} |",
        f"| NVIDIA FLARE default context | {med(rows['f_enc'])} | {med(rows['f_add'])} "
        f"| {med(rows['f_dec'])} | {f_bytes / d:.2f} |",
    ]
    ratio = [
        statistics.median(rows[a]) / statistics.median(rows[f])
        for a, f in (("a_enc", "f_enc"), ("a_add", "f_add"), ("a_dec", "f_dec"))
    ]
    lines.append(
        f"| ratio Accord / FLARE | {ratio[0]:.3f}x | {ratio[1]:.3f}x | {ratio[2]:.3f}x "
        f"| {a_bytes / f_bytes:.3f}x |"
    )
    return lines


def loopback_rate(total: int = 200 << 20) -> float:
    """Bytes per second through one TCP connection on 127.0.0.1 (a reader thread)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    got = [0]

    def read() -> None:
        conn, _ = server.accept()
        while chunk := conn.recv(1 << 20):
            got[0] += len(chunk)
        conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    block = b"\x00" * (1 << 20)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as client:
        for _ in range(total >> 20):
            client.sendall(block)
    reader.join()
    server.close()
    return got[0] / (time.perf_counter() - start)


def critical_path(participants: int, rate: float) -> list[str]:
    up, down = INGEST["upload_bytes"], WORKERS["download_bytes"]
    protect, reveal = WORKERS["protect_s"], WORKERS["reveal_s"]
    ingest = participants * (INGEST["check_s"] + INGEST["add_s"])
    up_wire = participants * up / rate
    down_wire = participants * down / rate
    total = protect + max(up_wire, ingest) + INGEST["finish_s"] + down_wire + reveal
    return [
        "| step | s |",
        "|---|---|",
        f"| slowest participant's protect (alone, 2 workers) | {protect:.2f} |",
        f"| {participants} uploads into the coordinator: max(wire {up_wire:.2f}, "
        f"check + add in 2 sum workers {ingest:.2f}) | {max(up_wire, ingest):.2f} |",
        f"| coordinator finish (aggregate chunks) | {INGEST['finish_s']:.2f} |",
        f"| {participants} aggregate downloads on the wire | {down_wire:.2f} |",
        f"| participant's reveal (alone, 2 workers) | {reveal:.2f} |",
        f"| **critical path, separate hosts (model)** | **{total:.2f}** |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parameters", type=int, default=10_000_000)
    parser.add_argument("--peer-parameters", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    command = "python bench/speed_bench.py " + " ".join(sys.argv[1:])
    started, load_before = dt.datetime.now(dt.UTC), load()
    secret = SecretContext.generate()
    q = bench_quantize(args.parameters, args.repeats)
    print("\n".join(q), flush=True)
    w, pool_start_s = bench_workers(args.parameters, args.repeats, secret)
    print("\n".join(w), flush=True)
    with tempfile.TemporaryDirectory() as directory:
        i = bench_ingest(args.parameters, args.repeats, secret, Path(directory))
    print("\n".join(i), flush=True)
    p = bench_peers(args.peer_parameters, args.repeats, secret)
    print("\n".join(p), flush=True)
    rate = statistics.median(loopback_rate() for _ in range(3))
    c = critical_path(10, rate)
    print("\n".join(c), flush=True)
    load_after = load()
    d = args.parameters
    section = f"""{SECTION}

Command: `{command}` (from the repository root, in `.venv`; also `python -m bench speed ...`).

Machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()},
numpy {np.__version__}, TenSEAL {ts.__version__}, {platform.system()} {platform.release()};
{started:%Y-%m-%d %H:%M} UTC; load average (1 / 5 / 15 min) {load_before} before and
{load_after} after. Wall seconds, median (least) of {args.repeats} runs, the rows' runs
alternating; `ckks+masks`, b = 16, packing for n_max = 10 (k = 2).

### Quantize against the memory floor ({d:,} parameters)

{chr(10).join(q)}

### Participant protect and reveal over its cores ({d:,} parameters)

`pipeline.protect` (mask with {N} terms, pack, encrypt, frame; all chunks consumed) and
`pipeline.reveal` (decrypt, exact-integer check, unpack) of one participant, with
`[participant] workers` = 1 (the calling thread) and 2 (`participant.workers.ChunkWorkers`:
'spawn' processes, chunks a window ahead). The revealed aggregates were equal byte for
byte. The pool's one-time start (2 processes loading TenSEAL and the secret context):
{pool_start_s:.2f} s. ns/param/core multiplies by the processes used.

{chr(10).join(w)}

### Coordinator check: in the receiving thread or in the sum workers ({d:,} parameters)

With 1 sum worker the receiving thread checks each chunk completely (`UpdateSum.check`:
CRC, header, SEAL's load of each ciphertext); with 2 it checks only the frame (CRC and
header) and the workers check the payloads (`RoundSum.stage`) before any is added.

{chr(10).join(i)}

### Critical path on separate hosts: 10 participants x {d:,} parameters (a model)

On one machine all participants share the cores; on separate hosts each protects and
reveals on its own. This adds the measured pieces above: one participant's protect
and reveal alone with 2 workers, the coordinator's ingest of 10 uploads (frame check,
worker check and add of each, with 2 sum workers; overlapped with the wire, whichever is
longer), its finish, and the uploads and downloads at the measured loopback TCP rate
({rate / 1e6:.0f} MB/s, one connection, median of 3; gRPC and TLS cost more). The
advertise, share and unmask stages (milliseconds at 10 participants, "Rounds over gRPC")
are left out. A model from measured parts, not a measured round.

{chr(10).join(c)}

### NVIDIA FLARE's default CKKS context on the same vector ({args.peer_parameters:,} parameters)

FLARE's provisioned context (CKKS, N = 8192, coefficient moduli [60, 40, 40], scale 2^40,
public-key encryption with `ts.ckks_vector`, one float per slot, 4096 per ciphertext),
recreated with TenSEAL here (FLARE itself is not installed), against Accord on the same
float32 vector (`quantize.encode` + `pipeline.protect`, one worker). Server add: FLARE
loads two uploads and adds them, Accord checks and adds one upload into a running sum.
FLARE's aggregate is approximate CKKS floats and is decrypted by clients as such; Accord
reveals exact integers only.

{chr(10).join(p)}
"""
    publish(section, args.write, SECTION)


if __name__ == "__main__":
    main()
