"""Benchmark of the aggregate integrity tags (crypto/integrity.py) per 1M parameters.

Run: ``.venv/bin/python bench/integrity_bench.py [--repeats 3]``

Measures CPU time (least of ``--repeats`` runs) of ``integrity.append_tags`` (a member
tags its upload) and ``integrity.check`` (a member checks an aggregate)
for 1M parameters and b = 16, next to ``pipeline.protect`` of the same vector in the
``ckks`` profile (pack + encrypt), the cost the tags must stay well below.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from accord.crypto import integrity, pipeline
from accord.crypto.ckks import SecretContext
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile

PARAMETERS = 1_000_000
BITS = 16
KEY = bytes(32)


def best(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        action()
        times.append(time.process_time() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ckks", action="store_true", help="skip the CKKS comparison")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1 << BITS, PARAMETERS + 1).astype(np.uint32)
    common = {"federation_id": "bench", "round": 1, "modulus_bits": BITS}
    tag_s = best(lambda: integrity.append_tags(x, KEY, participant="m0", **common), args.repeats)
    sums = integrity.append_tags(x, KEY, participant="m0", **common)
    check_s = best(lambda: integrity.check(sums, KEY, survivors=["m0"], **common), args.repeats)
    print(f"append_tags, 1M parameters, L = {integrity.TAG_SLOTS}: {tag_s:.3f} s CPU")
    print(f"check, 1M parameters: {check_s:.3f} s CPU")
    if not args.no_ckks:
        secret = SecretContext.generate()
        spec = choose_packing(BITS, 10)
        tagged = np.concatenate([x, sums[-integrity.TAG_SLOTS :]])

        def protect() -> None:
            for _ in pipeline.protect(
                tagged,
                profile=Profile.CKKS,
                mask_terms=[],
                packing=spec,
                secret=secret,
                **common,
            ):
                pass

        ckks_s = best(protect, 1)
        print(f"pipeline.protect (ckks), 1M parameters: {ckks_s:.3f} s CPU")
        print(f"tags / CKKS: {tag_s / ckks_s:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
