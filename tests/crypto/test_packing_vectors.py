"""The library reproduces ``tests/vectors/packing.json`` byte for byte, both ways.

The file is written by ``tests/vectors/generate_packing.py``, which checks each row
against a slow reference of docs/protocol.md. Here each packing row must pack to the
stored reals and unpack back to the stored elements, and each chunk row must encode
to the stored bytes and decode back to its fields and payload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accord.crypto.packing import PackingSpec, choose_packing, pack, unpack
from accord.crypto.profile import Profile
from accord.crypto.wire import ChunkHeader, decode_chunk, encode_chunk

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VECTORS / "packing.json").read_text(encoding="utf-8"))
    assert document["format"] == "accord/v1/packing"
    assert document["version"] == 1
    return document


DOCUMENT = load()


@pytest.mark.parametrize("row", DOCUMENT["packing"])
def test_packing_rows(row: dict[str, Any]) -> None:
    spec = PackingSpec(
        modulus_bits=row["modulus_bits"],
        max_participants=row["max_participants"],
        fields_per_real=row["fields_per_real"],
        field_bits=row["field_bits"],
        scale_bits=row["scale_bits"],
        poly_modulus_degree=row["poly_modulus_degree"],
    )
    assert (
        choose_packing(spec.modulus_bits, spec.max_participants, spec.poly_modulus_degree) == spec
    )
    values = np.zeros(row["count"], dtype=np.uint32)
    for index, value in row["values"]:
        values[index] = value
    expected = np.zeros(spec.reals_per_ciphertext, dtype=np.float64)
    for index, real in row["reals"]:
        expected[index] = real
    packed = pack(values, spec)
    assert packed.tobytes() == expected.tobytes()
    np.testing.assert_array_equal(unpack(expected, spec, row["count"]), values)


@pytest.mark.parametrize("row", DOCUMENT["chunks"])
def test_chunk_rows(row: dict[str, Any]) -> None:
    fields = dict(row["fields"])
    header = ChunkHeader(**{**fields, "profile": Profile(fields["profile"])})
    payload = bytes.fromhex(row["payload"])
    assert header.to_bytes().hex() == row["header"]
    assert encode_chunk(header, payload).hex() == row["chunk"]
    assert ChunkHeader.from_bytes(bytes.fromhex(row["header"])) == header
    assert decode_chunk(bytes.fromhex(row["chunk"])) == (header, payload)
