"""Benchmark of a participant's client-level noise share: Skellam draws from the CSPRNG.

Run: ``.venv/bin/python bench/noise_bench.py [--parameters 1000000] [--repeats 3]
[--write docs/benchmarks.md]``

What it measures: `participant.client_noise.skellam` (two Poisson draws per
coordinate, every uniform from the AES-CTR `CsprngGaussian`) for a vector of
``--parameters`` coordinates, at a range of mu (the share's Poisson mean; inversion
below 10, PTRS above). Times are CPU seconds of this process, the least of
``--repeats`` runs, per million coordinates, and are what each participant adds to its
protect time per round when ``[coordinator.client_dp]`` is on. The variance of each
draw is checked against 2 mu (the benchmark fails when it is off by more than 1%).

With ``--write PATH`` the "## Client-level noise" section of PATH is written or
replaced, stating this command, the machine and the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from report import publish

from accord.participant.client_dp_share import skellam
from accord.participant.training.csprng import CsprngGaussian

SECTION = "## Client-level noise"
MUS = (0.5, 5.0, 50.0, 500.0, 50_000.0)


def measure(parameters: int, repeats: int) -> list[tuple[float, float, float]]:
    """(mu, CPU seconds per million coordinates, variance / (2 mu)) for each mu."""
    source = CsprngGaussian()
    rows = []
    for mu in MUS:
        best = float("inf")
        for _ in range(repeats):
            started = time.process_time()
            draws = skellam(parameters, mu, source)
            best = min(best, time.process_time() - started)
        ratio = float(draws.var()) / (2 * mu)
        if abs(ratio - 1) > 0.01:
            raise SystemExit(f"mu {mu}: variance ratio {ratio:.4f}, expected 1")
        rows.append((mu, best * 1e6 / parameters, ratio))
    return rows


def render(rows: list[tuple[float, float, float]], command: str) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        SECTION,
        "",
        f"Command: `{command}`. Machine: {os.cpu_count()} CPUs ({cpu}), Python "
        f"{platform.python_version()}; CPU seconds of one process, least of the repeats.",
        "",
        "Each participant of a round with `[coordinator.client_dp]` draws one Skellam "
        "share per coordinate (two Poisson draws, every uniform from the AES-CTR CSPRNG) "
        "and adds it before masking; this is its cost per round, on top of the protect "
        "time of the crypto core. mu is sigma^2 / (2h) in quantized levels; the demo's "
        "setting (z = 0.01, clip 40, 16-bit, 3 participants) gives sigma = 82 levels, "
        "mu = 1,118 per share.",
        "",
        "| mu | s per 1M coordinates | variance / 2 mu |",
        "|---|---|---|",
    ]
    lines += [f"| {mu:g} | {seconds:.3f} | {ratio:.4f} |" for mu, seconds, ratio in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parameters", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None)
    arguments = parser.parse_args()
    rows = measure(arguments.parameters, arguments.repeats)
    command = "python bench/noise_bench.py " + shlex.join(sys.argv[1:])
    publish(render(rows, command.strip()), arguments.write, SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
