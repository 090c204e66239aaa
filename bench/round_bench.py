"""Round time over gRPC and the coordinator's peak memory, per protection profile (issue #4).

Each run is one `accord demo` (separate coordinator and participant processes on
loopback) with the hidden `--bench-parameters N`: every participant uses the
benchmark-only `SyntheticTrainer` (accord/demo/synthetic_trainer.py), whose "training"
returns a precomputed random delta, so a round's time is the protocol's: encoding,
masking, encryption, gRPC transfer, aggregation, decryption and applying the mean.
Round and stage times come from the coordinator's records in the demo's `--json`
summary; the coordinator's peak RSS is `VmHWM` in `/proc/<pid>/status`, polled while
the demo runs (it only grows, so the last reading is the peak up to the poll interval).

    python bench/round_bench.py run --results bench-rounds.json RUN [RUN ...]
    python bench/round_bench.py write --results bench-rounds.json --doc docs/benchmarks.md

A RUN is `PARAMETERS:PARTICIPANTS:PROFILE:TRANSPORT`, e.g. `10M:10:ckks+masks:mtls`
or `1M:10:none:plaintext` (`none` needs plaintext). `write` replaces the section
"## Rounds over gRPC" in the document and leaves every other section as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from report import cpu_model, replace_section

SECTION = "## Rounds over gRPC"
STAGES = ("advertise", "share", "upload", "unmask", "aggregate")
PROFILES = ("none", "masks", "ckks", "ckks+masks")


def parse_count(text: str) -> int:
    """`10M` -> 10_000_000, `500k` -> 500_000, `1234` -> 1234."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def human(count: int) -> str:
    return f"{count // 1_000_000}M" if count % 1_000_000 == 0 else f"{count:,}"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(unknown=""),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def _find_coordinator(config: Path) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"accord.coordinator" in argv and str(config).encode() in argv:
            return int(entry.name)
    return None


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the coordinator's sum workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _status_kib(int(entry.name), "PPid") == pid:
            found.append(int(entry.name))
    return found


class RssWatch(threading.Thread):
    """Polls the coordinator's VmHWM until stopped."""

    def __init__(self, config: Path, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.interval_s = interval_s
        self.pid: int | None = None
        self.peak_kib = 0
        self.worker_peaks_kib: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.pid is None:
                self.pid = _find_coordinator(self.config)
            if self.pid is not None:
                value = _status_kib(self.pid, "VmHWM")
                if value is not None:
                    self.peak_kib = max(self.peak_kib, value)
                    # The sum workers hold the running sum in their own processes: their
                    # peaks count too (a sum of peaks, so an upper bound of the total).
                    for child in _children(self.pid):
                        self.worker_peaks_kib[child] = max(
                            self.worker_peaks_kib.get(child, 0),
                            _status_kib(child, "VmHWM") or 0,
                        )
                elif not Path(f"/proc/{self.pid}").exists():
                    self.pid = None
            self.stop.wait(self.interval_s)


def run_one(spec: str, rounds: int, timeout_s: float, stage_deadline_s: float) -> dict[str, Any]:
    size, participants, profile, transport = spec.split(":")
    parameters = parse_count(size)
    assert profile in PROFILES, profile
    assert transport in ("mtls", "plaintext"), transport
    with tempfile.TemporaryDirectory(prefix="accord-round-bench-") as scratch:
        workdir = Path(scratch) / "demo"
        summary_path = Path(scratch) / "summary.json"
        command = [
            sys.executable, "-m", "accord", "demo",
            "--participants", participants,
            "--rounds", str(rounds),
            "--profile", profile,
            "--workdir", str(workdir),
            "--json", str(summary_path),
            "--bench-parameters", str(parameters),
            "--timeout-s", str(timeout_s),
            "--stage-deadline-s", str(stage_deadline_s),
        ]  # fmt: skip
        if transport == "plaintext":
            command.append("--insecure-plaintext")
        watch = RssWatch(workdir / "coordinator" / "coordinator.toml")
        watch.start()
        load = os.getloadavg()[0]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall_s = time.monotonic() - started
        watch.stop.set()
        watch.join()
        if done.returncode != 0 or not summary_path.exists():
            return {
                "spec": spec,
                "error": f"exit {done.returncode}: {(done.stdout + done.stderr)[-2000:]}",
            }
        summary = json.loads(summary_path.read_text())
    return {
        "spec": spec,
        "parameters": parameters,
        "participants": int(participants),
        "profile": profile,
        "transport": transport,
        "rounds": [
            {
                "round": r["round"],
                "outcome": r["outcome"],
                "duration_s": r["duration_s"],
                "stages_s": r["stage_durations_s"],
                "bytes_up": max(r["bytes_up"].values()),
                "bytes_down": max(r["bytes_down"].values()),
            }
            for r in summary["rounds"]
        ],
        "coordinator_peak_rss_mib": round(watch.peak_kib / 1024, 1) if watch.peak_kib else None,
        "workers_peak_rss_mib": round(sum(watch.worker_peaks_kib.values()) / 1024, 1),
        "workers": len(watch.worker_peaks_kib),
        "demo_wall_s": round(wall_s, 1),
        "load_at_start": round(load, 2),
        "command": " ".join(["accord", *command[3:]]),
    }


def cmd_run(arguments: argparse.Namespace) -> None:
    results_path = Path(arguments.results)
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
    results["machine"] = machine()
    for spec in arguments.runs:
        print(f"{time.strftime('%H:%M:%S')} {spec} ...", flush=True)
        result = run_one(spec, arguments.rounds, arguments.timeout_s, arguments.stage_deadline_s)
        results["runs"] = [r for r in results["runs"] if r["spec"] != spec] + [result]
        results_path.write_text(json.dumps(results, indent=1))
        print(json.dumps(result)[:600], flush=True)


def _round_s(run: dict[str, Any]) -> float:
    """Mean round time over completed rounds."""
    return statistics.fmean(r["duration_s"] for r in run["rounds"] if r["outcome"] == "done")


def _stage_s(run: dict[str, Any], stage: str) -> float | None:
    values = [r["stages_s"][stage] for r in run["rounds"] if stage in r["stages_s"]]
    return statistics.fmean(values) if values else None


def render(results: dict[str, Any], command: str) -> str:
    runs = [r for r in results["runs"] if "error" not in r]
    failed = [r for r in results["runs"] if "error" in r]
    m = results["machine"]
    lines = [
        SECTION,
        "",
        f"Command: `{command}` (from the repository root, in `.venv`); each RUN is one "
        "`accord demo --bench-parameters N` (hidden option: every participant uses the "
        "benchmark-only `SyntheticTrainer`, whose training returns a precomputed delta at "
        "once, so a round's time is the protocol's alone).",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python "
        f"{m['python']}, Linux {m['kernel']}. The coordinator and all participants share "
        "these cores: per-participant work (encoding, masking, encryption) is serialised "
        "here, where separate hosts would do it in parallel, so secure-profile times are "
        "upper bounds. Other engineers' tests may have shared the machine (load at each "
        "run's start is listed).",
        "",
        "Round time = the coordinator's record of the round (`duration_s` in the demo's "
        "`--json` summary), the mean over the run's rounds; stages are the coordinator's "
        "`stage_durations_s`, in seconds. `none` runs with `--insecure-plaintext` (it "
        "must); the others with mTLS unless the transport column says plaintext. Up and "
        "down MB: one participant's bytes in one round (the coordinator's count).",
        "",
    ]
    for parameters in sorted({r["parameters"] for r in runs}):
        group = [r for r in runs if r["parameters"] == parameters]
        for participants in sorted({r["participants"] for r in group}):
            rows = [r for r in group if r["participants"] == participants]
            if not any(r["profile"] == "none" for r in rows) and len(rows) < 2:
                continue
            base = next((r for r in rows if r["profile"] == "none"), None)
            lines += [
                f"### {human(parameters)} parameters, {participants} participants",
                "",
                "| profile | transport | rounds | round s | vs none | "
                + " | ".join(STAGES)
                + " | up MB | down MB | load |",
                "|---|---|---|---|---|" + "---|" * len(STAGES) + "---|---|---|",
            ]
            rows.sort(key=lambda r: (PROFILES.index(r["profile"]), r["transport"]))
            for r in rows:
                seconds = _round_s(r)
                ratio = f"{seconds / _round_s(base):.2f}x" if base is not None else "-"
                stages = [_stage_s(r, s) for s in STAGES]
                done = sum(1 for x in r["rounds"] if x["outcome"] == "done")
                lines.append(
                    f"| {r['profile']} | {r['transport']} | {done}/{len(r['rounds'])} | "
                    f"{seconds:.2f} | {ratio} | "
                    + " | ".join("-" if s is None else f"{s:.2f}" for s in stages)
                    + f" | {r['rounds'][0]['bytes_up'] / 1e6:.1f}"
                    + f" | {r['rounds'][0]['bytes_down'] / 1e6:.1f} | {r['load_at_start']} |"
                )
            lines.append("")
    lines += [
        "### Coordinator peak RSS",
        "",
        "VmHWM of the coordinator process over the whole demo (startup, every round, "
        "shutdown), polled every 0.2 s, and of its child processes (the sum workers, and "
        "multiprocessing's resource tracker); the total adds the peaks, an upper bound.",
        "",
        "| parameters | participants | profile | transport | coordinator MiB | child "
        "processes | their peaks MiB | total MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["parameters"], r["profile"], r["participants"])):
        if r["coordinator_peak_rss_mib"] is not None:
            workers = r.get("workers_peak_rss_mib", 0.0)
            lines.append(
                f"| {human(r['parameters'])} | {r['participants']} | {r['profile']} | "
                f"{r['transport']} | {r['coordinator_peak_rss_mib']:.0f} | "
                f"{r.get('workers', 0)} | {workers:.0f} | "
                f"{r['coordinator_peak_rss_mib'] + workers:.0f} |"
            )
    lines.append("")
    for r in failed:
        lines += [f"Run `{r['spec']}` failed: {r['error'][-300:]!r}", ""]
    return "\n".join(lines)


def cmd_write(arguments: argparse.Namespace) -> None:
    results = json.loads(Path(arguments.results).read_text())
    doc = Path(arguments.doc)
    section = render(results, arguments.command) + arguments.notes
    replace_section(doc, SECTION, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(required=True)
    run = commands.add_parser("run", help="run demos and add their figures to --results")
    run.add_argument("--results", required=True)
    run.add_argument("--rounds", type=int, default=2)
    run.add_argument("--timeout-s", type=float, default=900.0)
    run.add_argument(
        "--stage-deadline-s",
        type=float,
        default=120.0,
        help="the demo's --stage-deadline-s: 2 shared cores need more than its 30 s default "
        "for 20 participants at 10M",
    )
    run.add_argument("runs", nargs="+", metavar="RUN")
    run.set_defaults(handler=cmd_run)
    write = commands.add_parser("write", help="replace the section in --doc")
    write.add_argument("--results", required=True)
    write.add_argument("--doc", default="docs/benchmarks.md")
    write.add_argument(
        "--command",
        default="python bench/round_bench.py run --results FILE RUN ...",
    )
    write.add_argument("--notes", default="", help="text appended to the section")
    write.set_defaults(handler=cmd_write)
    arguments = parser.parse_args()
    arguments.handler(arguments)


if __name__ == "__main__":
    main()
