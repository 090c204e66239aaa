"""Write ``tests/vectors/packing.json``: the packing layout and the wire chunk format, byte-exact.

Run it from anywhere: ``.venv/bin/python tests/vectors/generate_packing.py``. Each row
is made with the library and recomputed by a slow reference written here from
docs/protocol.md (packing with Python integers, the chunk header with
``int.to_bytes``, CRC-32 bit by bit); a mismatch stops the run and writes nothing.
Inputs come from SHAKE-256 of fixed labels, so a rerun writes the same file.

Rows:

- ``packing``: a spec as ``choose_packing`` picks it, a sparse vector of field
  elements (``[index, value]`` pairs, the rest zero) and the nonzero packed reals
  (``[index, integer]``). Real ``r`` is ``sum_j f_{r*k + j} * 2^(j*w)``; reals
  ``0 .. N/2 - 1`` are the real parts of the slots, ``N/2 .. N - 1`` the imaginary parts.
- ``chunks``: header fields, the header bytes (before the CRC), a payload and the
  whole chunk, all hex.

``tests/crypto/test_packing_vectors.py`` checks both directions against the library
(this file is separate from ``generate.py``, which another format owner maintains).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from accord.crypto.packing import choose_packing, pack
from accord.crypto.profile import Profile
from accord.crypto.wire import ChunkHeader, encode_chunk, profile_code

HERE = Path(__file__).resolve().parent
FORMAT_VERSION = 1

PACKING_CASES = [
    (16, 10, 4096),
    (8, 10, 4096),
    (12, 30, 4096),
    (16, 100, 4096),
    (32, 1, 4096),
    (8, 1, 4096),
    (16, 10, 8192),
]


def material(label: str, length: int) -> bytes:
    """Fixed pseudo-random bytes for a label (SHAKE-256)."""
    return hashlib.shake_256(b"accord/vectors/packing/" + label.encode()).digest(length)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"reference mismatch: {what}")


def reference_pack(items: list[tuple[int, int]], k: int, w: int, n: int) -> dict[int, int]:
    """Packed reals from the layout in docs/protocol.md, with Python integers."""
    reals: dict[int, int] = {}
    for index, value in items:
        real, field = divmod(index, k)
        check(real < n, "element beyond the ciphertext")
        reals[real] = reals.get(real, 0) + (value << (field * w))
    return {r: v for r, v in reals.items() if v}


def packing_rows() -> list[dict[str, Any]]:
    rows = []
    for b, n_max, degree in PACKING_CASES:
        spec = choose_packing(b, n_max, degree)
        capacity = spec.elements_per_ciphertext
        k, w = spec.fields_per_real, spec.field_bits
        # The first fields, the real/imaginary boundary, and the very last element.
        boundary = (degree // 2) * k
        indices = sorted({0, 1, k - 1, k, 2 * k + 1, boundary - 1, boundary, capacity - 1})
        for count in sorted({1, k + 1, capacity}):
            label = f"{b}/{n_max}/{degree}/{count}"
            raw = material(label, 4 * len(indices))
            chosen = [i for i in indices if i < count]
            values = [
                int.from_bytes(raw[4 * j : 4 * j + 4], "little") % (1 << b)
                for j in range(len(chosen))
            ]
            if chosen:
                values[-1] = (1 << b) - 1  # the largest value, at the last position
            items = list(zip(chosen, values, strict=True))
            dense = np.zeros(count, dtype=np.uint32)
            for index, value in items:
                dense[index] = value
            packed = pack(dense, spec)
            expected = reference_pack(items, k, w, degree)
            got = {int(i): int(packed[i]) for i in np.flatnonzero(packed)}
            check(got == expected, f"packing {label}")
            check(all(float(v) == float(int(v)) for v in expected.values()), "inexact real")
            rows.append(
                {
                    "modulus_bits": b,
                    "max_participants": n_max,
                    "poly_modulus_degree": degree,
                    "fields_per_real": k,
                    "field_bits": w,
                    "scale_bits": spec.scale_bits,
                    "count": count,
                    "values": [[i, v] for i, v in items],
                    "reals": [[i, v] for i, v in sorted(expected.items())],
                }
            )
    return rows


def crc32_reference(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def reference_header(f: dict[str, Any]) -> bytes:
    """The chunk header of docs/protocol.md, field by field."""
    identity = f["federation_id"].encode("utf-8")
    parts = [
        (1, 1),
        (profile_code(Profile(f["profile"])), 1),
        (f["flags"], 1),
        (0, 1),
        (f["round"], 4),
        (f["chunk_index"], 4),
        (f["chunk_count"], 4),
        (f["element_start"], 8),
        (f["element_count"], 4),
        (f["modulus_bits"], 1),
        (f["fields_per_real"], 1),
        (f["field_bits"], 1),
        (f["scale_bits"], 1),
        (f["poly_degree"], 4),
        (f["payload_len"], 4),
        (len(identity), 1),
    ]
    return b"".join(value.to_bytes(size, "little") for value, size in parts) + identity


def chunk_rows() -> list[dict[str, Any]]:
    spec = choose_packing(16, 10)
    cases: list[dict[str, Any]] = [
        dict(
            profile="ckks+masks",
            flags=0,
            round=3,
            chunk_index=1,
            chunk_count=4,
            element_start=31 * spec.elements_per_ciphertext,
            element_count=31 * spec.elements_per_ciphertext,
            modulus_bits=16,
            fields_per_real=spec.fields_per_real,
            field_bits=spec.field_bits,
            scale_bits=spec.scale_bits,
            poly_degree=4096,
            federation_id="acme-consortium",
            payload=12,
        ),
        dict(
            profile="ckks",
            flags=1,
            round=2**32 - 1,
            chunk_index=0,
            chunk_count=1,
            element_start=0,
            element_count=5,
            modulus_bits=16,
            fields_per_real=spec.fields_per_real,
            field_bits=spec.field_bits,
            scale_bits=spec.scale_bits,
            poly_degree=4096,
            federation_id="fédération",
            payload=0,
        ),
        dict(
            profile="masks",
            flags=0,
            round=17,
            chunk_index=2,
            chunk_count=3,
            element_start=2 << 18,
            element_count=3,
            modulus_bits=12,
            fields_per_real=0,
            field_bits=0,
            scale_bits=0,
            poly_degree=0,
            federation_id="f",
            payload=6,
        ),
        dict(
            profile="none",
            flags=1,
            round=0,
            chunk_index=0,
            chunk_count=1,
            element_start=0,
            element_count=2,
            modulus_bits=0,
            fields_per_real=0,
            field_bits=0,
            scale_bits=0,
            poly_degree=0,
            federation_id="",
            payload=8,
        ),
    ]
    rows = []
    for number, case in enumerate(cases):
        payload = material(f"chunk/{number}", case.pop("payload"))
        fields = {**case, "payload_len": len(payload)}
        header = ChunkHeader(**{**fields, "profile": Profile(fields["profile"])})
        head = reference_header(fields)
        check(header.to_bytes() == head, f"chunk header {number}")
        chunk = head + crc32_reference(head + payload).to_bytes(4, "little") + payload
        check(encode_chunk(header, payload) == chunk, f"chunk {number}")
        rows.append(
            {"fields": fields, "header": head.hex(), "payload": payload.hex(), "chunk": chunk.hex()}
        )
    return rows


def main() -> int:
    document = {
        "format": "accord/v1/packing",
        "version": FORMAT_VERSION,
        "description": (
            "BatchCrypt-style CKKS packing and the update chunk format (docs/protocol.md). "
            "packing rows: element i goes to real i // k as field i % k, real = sum_j "
            "f_j * 2^(j*w); reals 0..N/2-1 are slot real parts, N/2..N-1 imaginary parts; "
            "values and reals are sparse [index, value] lists, all else zero. chunk rows: "
            "header hex is everything before the crc32; chunk = header || crc32 || payload."
        ),
        "packing": packing_rows(),
        "chunks": chunk_rows(),
    }
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    (HERE / "packing.json").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
