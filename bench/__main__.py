"""One entry point for the benchmarks: `python -m bench NAME [ARGS ...]` (or `make bench`).

Each NAME runs one script of this folder with ARGS; each script writes its own section
of docs/benchmarks.md (with `--write docs/benchmarks.md`, or `write` for `rounds`),
recording machine, date, load and command there.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

SCRIPTS = {
    "crypto": "crypto_bench.py",  # crypto core: per-step CPU s, sizes, exactness
    "rounds": "round_bench.py",  # whole rounds over gRPC, per profile; coordinator memory
    "sums": "sum_bench.py",  # the coordinator's sum workers
    "noise": "noise_bench.py",  # client-level noise
    "ml": "ml_bench.py",  # federated learning quality
    "speed": "speed_bench.py",  # issue 16: quantize floor, participant workers, FLARE
    "peers": "peers_bench.py",  # issue 16: Flower SecAgg+ (make bench-peers first)
    "scaling": "scaling_bench.py",  # issue 16: in-process round scaling, plots
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in SCRIPTS:
        names = ", ".join(SCRIPTS)
        sys.exit(f"usage: python -m bench NAME [ARGS ...]; NAME is one of {names}")
    folder = Path(__file__).resolve().parent
    script = folder / SCRIPTS[sys.argv[1]]
    sys.argv = [str(script), *sys.argv[2:]]
    sys.path.insert(0, str(folder))  # the scripts import their neighbour `report`
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":  # the spawned workers import this module again
    main()
