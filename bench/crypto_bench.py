"""Benchmark of the crypto core: per participant and per 1M parameters, on one core.

Run: ``.venv/bin/python bench/crypto_bench.py [--write docs/benchmarks.md] [--exactness 10000]``

What it measures (least CPU time of ``--repeats`` runs in each of ``--passes`` passes, the
process pinned to one CPU):

- participant: quantize (``quantize.encode``), mask (``masks.apply`` with ``n - 1``
  pairwise terms and one self mask: the complete graph), pack + encrypt, and the
  whole ``quantize + pipeline.protect`` per profile;
- bytes per parameter on the wire (upload, and the coordinator's aggregate
  download), for b = 8, 12, 16 and n = 10, 100;
- coordinator: ``UpdateSum.check`` + ``UpdateSum.add`` of one participant's upload;
- participant: ``pipeline.reveal`` (decrypt + unpack) of the aggregate;
- with ``--exactness E``: the decryption error of packed CKKS sums over about ``E``
  fresh encryptions per configuration, against the noise model of ``packing``.

With ``--write PATH`` the "## Crypto core" section of PATH is written or replaced,
stating this command, the machine and the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import tenseal
from report import cpu_model, publish

from accord.crypto import masks, pipeline, quantize
from accord.crypto.aggregate import UpdateSum
from accord.crypto.ckks import SecretContext
from accord.crypto.masks import MaskTerm
from accord.crypto.packing import choose_packing, pack
from accord.crypto.profile import Profile
from accord.errors import ConfigError

PARAMETERS = 1_000_000
FED = "bench"
SECTION = "## Crypto core"


def timed(action: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Least CPU seconds (user + system, this process) of `repeats` runs, and the last result.

    The work is single-threaded and pinned to one CPU, so CPU time is the time one
    core spends; unlike wall time it does not count other processes' turns on a shared
    machine, and the least of several runs is the least disturbed.
    """
    times, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = action()
        times.append(time.process_time() - start)
    return min(times), result


def mask_terms(n: int, rng: np.random.Generator) -> list[MaskTerm]:
    """One self mask and n - 1 pairwise masks (the complete graph)."""
    return [MaskTerm(rng.bytes(16), 1)] + [
        MaskTerm(rng.bytes(16), 1 if i % 2 else -1) for i in range(n - 1)
    ]


class Setup:
    """Inputs for one (b, n): a quantized update, masks, packing, keys."""

    def __init__(self, b: int, n: int, secret: SecretContext, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.b, self.n = b, n
        self.delta = (rng.standard_normal(PARAMETERS) * 1e-3).astype(np.float32)
        self.rng = rng
        self.quant: quantize.QuantSpec | None
        try:
            self.quant = quantize.QuantSpec(modulus_bits=b, max_participants=n)
            self.values = quantize.encode(self.delta, 100, self.quant, rng)
        except ConfigError:  # b too small for n: no quantization level is left
            self.quant = None
            self.values = rng.integers(0, 2**b, PARAMETERS + 1).astype(np.uint32)
        self.count = self.values.size
        self.terms = mask_terms(n, rng)
        self.packing = choose_packing(b, n)
        self.secret = secret

    def kwargs(self, profile: Profile) -> dict[str, Any]:
        return dict(
            profile=profile,
            federation_id=FED,
            round=1,
            mask_terms=self.terms if profile.uses_masks else [],
            modulus_bits=self.b,
            packing=self.packing if profile.uses_ckks else None,
            secret=self.secret if profile.uses_ckks else None,
        )

    def protect(self, profile: Profile) -> list[bytes]:
        if profile is Profile.NONE:
            return list(pipeline.protect(self.delta, **self.kwargs(profile)))
        return list(pipeline.protect(self.quantize(), **self.kwargs(profile)))

    def quantize(self) -> np.ndarray:
        if self.quant is None:
            return self.values
        return quantize.encode(self.delta, 100, self.quant, self.rng)

    def new_sum(self, profile: Profile) -> UpdateSum:
        return UpdateSum(
            profile,
            PARAMETERS if profile is Profile.NONE else self.count,
            modulus_bits=self.b,
            packing=self.packing if profile.uses_ckks else None,
            public=self.secret.public() if profile.uses_ckks else None,
            federation_id=FED,
            round=1,
        )

    def reveal(self, profile: Profile, chunks: list[bytes]) -> Any:
        return pipeline.reveal(
            chunks,
            profile=profile,
            element_count=PARAMETERS if profile is Profile.NONE else self.count,
            modulus_bits=self.b,
            packing=self.packing if profile.uses_ckks else None,
            secret=self.secret if profile.uses_ckks else None,
        )


def coordinator_times(
    setup: Setup, profile: Profile, chunks: list[bytes], repeats: int
) -> dict[str, float]:
    total = setup.new_sum(profile)
    check_s, _ = timed(lambda: [total.check(c) for c in chunks], repeats)
    add_s, _ = timed(lambda: [total.add(c) for c in chunks], min(repeats, setup.n))
    aggregate = list(total.chunks())
    reveal_s, _ = timed(lambda: setup.reveal(profile, aggregate), repeats)
    return {
        "check_s": check_s,
        "add_s": add_s,
        "download_bpp": sum(len(c) for c in aggregate) / PARAMETERS,
        "reveal_s": reveal_s,
    }


def participant_table(
    secret: SecretContext, repeats: int
) -> tuple[list[str], list[dict[str, Any]]]:
    rows = []
    for n in (10, 100):
        setup = Setup(16, n, secret)
        quantize_s, _ = timed(setup.quantize, repeats)
        mask_s, _ = timed(partial(masks.apply, setup.values, 0, setup.terms, setup.b), repeats)
        per = setup.packing.elements_per_ciphertext

        def encrypt_all(s: Setup = setup, per: int = per) -> int:
            return sum(
                len(s.secret.encrypt(pack(s.values[o : o + per], s.packing), s.packing))
                for o in range(0, s.count, per)
            )

        encrypt_s, _ = timed(encrypt_all, repeats)
        for profile in (Profile.CKKS_MASKS, Profile.CKKS, Profile.MASKS, Profile.NONE):
            if n == 100 and profile is Profile.NONE:
                continue
            total_s, chunks = timed(partial(setup.protect, profile), repeats)
            coordinator = coordinator_times(setup, profile, chunks, repeats)
            rows.append(
                {
                    "profile": profile.value,
                    "n": n,
                    "k": setup.packing.fields_per_real if profile.uses_ckks else "-",
                    "quantize_s": quantize_s if profile is not Profile.NONE else None,
                    "mask_s": mask_s if profile.uses_masks else None,
                    "encrypt_s": encrypt_s if profile.uses_ckks else None,
                    "total_s": total_s,
                    "upload_bpp": sum(len(c) for c in chunks) / PARAMETERS,
                    **coordinator,
                }
            )
    header = [
        "profile",
        "n",
        "k",
        "quantize s",
        "mask s (n terms)",
        "pack+encrypt s",
        "quantize+protect s",
        "upload B/param",
        "coord check s",
        "coord add s",
        "download B/param",
        "reveal s",
    ]
    return header, rows


def size_table(secret: SecretContext) -> list[dict[str, Any]]:
    rows = []
    for b in (8, 12, 16):
        for n in (10, 100):
            spec = choose_packing(b, n)
            setup = Setup(b, n, secret)
            setup.terms = setup.terms[:2]  # sizes do not depend on the masks
            upload = setup.protect(Profile.CKKS_MASKS)
            masked = setup.protect(Profile.MASKS)
            rows.append(
                {
                    "b": b,
                    "n": n,
                    "k": spec.fields_per_real,
                    "w": spec.field_bits,
                    "S": spec.scale_bits,
                    "levels": setup.quant.max_level if setup.quant else None,
                    "ckks_bpp": sum(len(c) for c in upload) / PARAMETERS,
                    "masks_bpp": sum(len(c) for c in masked) / PARAMETERS,
                }
            )
    return rows


EXACTNESS_CONFIGS = ((16, 1), (8, 2), (16, 10), (8, 10), (16, 30), (12, 100), (16, 100), (32, 10))


def exactness_table(
    budget: int, seed: int = 1, configs: tuple[tuple[int, int], ...] = EXACTNESS_CONFIGS
) -> list[dict[str, Any]]:
    """Decryption error of packed sums: n fresh encryptions plus one plaintext correction."""
    secret = SecretContext.generate()
    public = secret.public()
    rng = np.random.default_rng(seed)
    rows = []
    for b, n in configs:
        spec = choose_packing(b, n)
        sigma = 3.2 * math.sqrt(spec.poly_modulus_degree / 2) * math.sqrt(n) / spec.scale
        errors = []
        for _ in range(max(1, budget // n)):
            total = public.accumulator(spec)
            exact = np.zeros(spec.reals_per_ciphertext)
            for _ in range(n):
                values = rng.integers(0, 2**b, spec.elements_per_ciphertext).astype(np.uint32)
                reals = pack(values, spec)
                exact += reals
                total.add(secret.encrypt(reals, spec))
            fix = pack(rng.integers(0, 2**b, spec.elements_per_ciphertext).astype(np.uint32), spec)
            exact += fix
            total.add_plain(fix, spec)
            errors.append(_raw_decrypt(secret, total.to_bytes(), spec) - exact)
        e = np.concatenate(errors)
        rows.append(
            {
                "b": b,
                "n": n,
                "kw": spec.payload_bits,
                "S": spec.scale_bits,
                "reals": e.size,
                "sigma_coeff": float(e.std() * spec.scale / math.sqrt(n)),
                "std": float(e.std()),
                "max": float(np.abs(e).max()),
                "max_sigmas": float(np.abs(e).max() / sigma),
            }
        )
    return rows


def noise_tail(ciphertexts: int) -> dict[str, Any]:
    """Tail of pure encryption noise: encryptions of zero at scale 1 (coefficient units)."""
    import tenseal.sealapi as sealapi

    secret = SecretContext.generate()
    parameters = secret._parameters
    plain = sealapi.Plaintext()
    parameters.encoder.encode([0j] * (parameters.poly_modulus_degree // 2), 1.0, plain)
    ciphertext, out = sealapi.Ciphertext(parameters.context), sealapi.Plaintext()
    thresholds = (4.0, 5.0, 5.5, 6.0)
    counts = dict.fromkeys(thresholds, 0)
    squares, largest, total = 0.0, 0.0, 0
    errors = []
    for number in range(ciphertexts):
        secret._encryptor.encrypt_symmetric(plain, ciphertext)
        secret._decryptor.decrypt(ciphertext, out)
        slots = np.asarray(parameters.encoder.decode_complex(out))
        errors.append(np.abs(np.concatenate([slots.real, slots.imag])))
        if len(errors) == 256 or number == ciphertexts - 1:
            block = np.concatenate(errors)
            errors = []
            squares += float(np.square(block).sum())
            largest = max(largest, float(block.max()))
            total += block.size
            for t in thresholds:
                counts[t] += int((block > t * 144.8).sum())
    std = math.sqrt(squares / total)
    return {
        "reals": total,
        "std": std,
        "max_sigmas": largest / std,
        "tail": [
            (
                t,
                counts[t] / total,
                math.erfc(t * 144.8 / std / math.sqrt(2)),
                2 * math.exp(-((t * 144.8 / std) ** 2) / 2),
            )
            for t in thresholds
        ],
    }


def _raw_decrypt(secret: SecretContext, ciphertext: bytes, spec: Any) -> np.ndarray:
    """Float decryption, for this measurement only (the library never exposes one)."""
    import tenseal.sealapi as sealapi

    parameters = secret._parameters
    loaded = parameters.load_ciphertext(ciphertext, spec, "a ciphertext")
    plain = sealapi.Plaintext()
    secret._decryptor.decrypt(loaded, plain)
    slots = np.asarray(parameters.encoder.decode_complex(plain))
    return np.concatenate([slots.real, slots.imag])


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    return (
        f'{os.cpu_count()} CPUs (nproc), CPU model "{cpu_model()}", '
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"TenSEAL {tenseal.__version__}, {platform.system()} "
        f"{platform.release()}; the benchmark process pinned to one CPU"
    )


def report(args: argparse.Namespace) -> str:
    secret = SecretContext.generate()
    # Several passes, spread over time, and the least time per cell: a neighbour that
    # hogs the CPU for a few seconds spoils one pass, not the figure.
    passes = [participant_table(secret, args.repeats) for _ in range(args.passes)]
    header, rows = passes[0]
    for _, other in passes[1:]:
        for row, again in zip(rows, other, strict=True):
            for key, value in again.items():
                if key.endswith("_s") and value is not None:
                    row[key] = min(row[key], value)
    participant = markdown(
        header,
        [
            [
                r["profile"],
                str(r["n"]),
                str(r["k"]),
                fmt(r["quantize_s"]),
                fmt(r["mask_s"]),
                fmt(r["encrypt_s"]),
                fmt(r["total_s"]),
                fmt(r["upload_bpp"], 2),
                fmt(r["check_s"]),
                fmt(r["add_s"]),
                fmt(r["download_bpp"], 2),
                fmt(r["reveal_s"]),
            ]
            for r in rows
        ],
    )
    sizes = markdown(
        [
            "b",
            "n",
            "quantization levels Q",
            "k",
            "w",
            "S",
            "ckks+masks / ckks upload B/param",
            "masks upload B/param",
        ],
        [
            [
                str(r["b"]),
                str(r["n"]),
                str(r["levels"]) if r["levels"] else "none: b too small for n",
                str(r["k"]),
                str(r["w"]),
                str(r["S"]),
                fmt(r["ckks_bpp"], 2),
                fmt(r["masks_bpp"], 2),
            ]
            for r in size_table(secret)
        ],
    )
    command = "python bench/crypto_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    parts = [
        SECTION,
        "",
        f"Command: `{command.strip()}` (from the repository root, in `.venv`).",
        "",
        f"Machine: {machine()}.",
        "",
        "All times are CPU seconds (user + system of the single-threaded benchmark process, "
        "pinned to one core) per participant for 1,000,000 parameters (1,000,001 elements "
        f"with the weight slot), best of {args.repeats} runs in each of {args.passes} passes "
        "(the machine was shared with other jobs: CPU time does not count their turns, and "
        "the least of several runs is the least disturbed); b = 16 unless "
        "stated. `mask` adds n masks (n - 1 pairwise, complete graph, and the self mask). "
        "`quantize+protect` is `quantize.encode` followed by the whole "
        "`pipeline.protect` (mask, pack, encrypt, frame). `coord check` and `coord add` are "
        "`UpdateSum.check` and `UpdateSum.add` of one participant's whole upload on the "
        "coordinator (a coordinator runs both: check the upload, then add it). `download` is "
        "the aggregate the coordinator serves (CKKS sums are full ciphertexts, no longer "
        "seeded: about twice the upload). `reveal` is `pipeline.reveal` (decrypt, decode, "
        "exact-integer check, unpack) on the participant.",
        "",
        participant,
        "",
        "### Upload size by aggregation bits and participants",
        "",
        "k fields of w bits per CKKS real, scale 2^S (`packing.choose_packing`). Seeded "
        "symmetric ciphertexts carry about 8 bytes per ring coefficient, so the upload is "
        "about 8/k bytes per parameter.",
        "",
        sizes,
    ]
    if args.exactness:
        exact = exactness_table(args.exactness)
        tail = noise_tail(5 * args.exactness)
        parts += [
            "",
            "### Exactness of packed sums",
            "",
            f"About {args.exactness} fresh encryptions per row, summed n at a time with one "
            "plaintext correction, full-range random fields at the densest packing. "
            "`sigma*2^S/sqrt(n)` is the measured per-real error standard deviation in "
            "coefficient units (theory with SEAL's sigma 3.2: 144.8; `packing` budgets "
            "3.3 * 45.25 = 149.3); `max/sigma` is the largest error in units of the 3.2-based "
            "prediction. `unpack` refuses anything farther than 0.25 from an integer; "
            "`choose_packing` keeps 8 sigma + 0.0625 (float64 FFT error) within 0.25.",
            "",
            markdown(
                [
                    "b",
                    "n",
                    "k*w",
                    "S",
                    "reals",
                    "sigma*2^S/sqrt(n)",
                    "error std",
                    "max abs error",
                    "max/sigma",
                ],
                [
                    [
                        str(r["b"]),
                        str(r["n"]),
                        str(r["kw"]),
                        str(r["S"]),
                        str(r["reals"]),
                        fmt(r["sigma_coeff"], 1),
                        fmt(r["std"], 4),
                        fmt(r["max"], 4),
                        fmt(r["max_sigmas"], 2),
                    ]
                    for r in exact
                ],
            ),
            "",
            f"Pure encryption noise ({tail['reals']:,} reals: encryptions of zero at scale 1): "
            f"standard deviation {tail['std']:.1f} per real in coefficient units (SEAL sigma "
            f"{tail['std'] / math.sqrt(2048):.2f}), largest {tail['max_sigmas']:.2f} sigma.",
            "",
            markdown(
                [
                    "t (x 144.8)",
                    "measured P(abs(e) > t)",
                    "Gaussian, measured std",
                    "sub-Gaussian bound 2 exp(-t^2/2)",
                ],
                [[f"{t}", f"{p:.2e}", f"{g:.2e}", f"{u:.2e}"] for t, p, g, u in tail["tail"]],
            ),
            "",
            "SEAL's noise is bounded and symmetric (centered binomial, variance 10.5), hence "
            "strictly sub-Gaussian, and so is each real's error: the rigorous bound in the last "
            "column, not the Gaussian, is what the safety argument in `crypto/packing.py` uses.",
        ]
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the section into this markdown file")
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing (best)")
    parser.add_argument("--passes", type=int, default=3, help="passes over the timings (best)")
    parser.add_argument("--exactness", type=int, default=0, help="encryptions per exactness row")
    parser.add_argument(
        "--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)"
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {args.cpu if args.cpu is not None else allowed[0]})
    publish(report(args), args.write, "## Crypto core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
