"""Aggregate integrity: a linear MAC over Z_{2^b} keyed by a secret the coordinator never holds.

Theory of operation (docs/protocol.md, "Aggregate integrity"; issue 12, finding 3).
Every member of a federation holds a 32-byte integrity key ``K`` (made in the key
ceremony and sealed to each member with the CKKS key, `ceremony.FederationSecret`).
In a secure profile the protected plaintext of participant ``i`` in round ``r`` is

    [ values (quantized deltas, noise share added) | weight | tag_1 .. tag_L ]

all in Z_{2^b}, where, with ``x_i`` everything before the tags,

    tag_l(i) = PRF_K(fed, r, i, l) + <R_l, x_i>   mod 2^b

``R_l`` is a pseudorandom vector (AES-128-CTR, `prg.Keystream`, seeded by HKDF from
``K`` and ``(fed, r, l)``) and ``PRF`` is HKDF-SHA256 from ``K`` and ``(fed, r, i)``.
Tags are linear in ``x``, so the sum over the survivor set ``S`` that the masks and
CKKS deliver satisfies ``sum tag_l = sum_{i in S} PRF(i, l) + <R_l, X>``, which `check`
verifies after reveal. The PRF term catches an aggregate that is one upload, or that
drops, duplicates or replays (another round, another federation) a contribution, or
scales the sum; the secret ``R`` catches an added forged vector.

Soundness: a change ``(D, d)`` to ``(X, tags)`` with ``D != 0`` passes tag ``l`` iff
``d_l = <R_l, D> mod 2^b``. If ``2^v`` is the largest power of two dividing every entry of
``D`` (``v < b``), ``<R_l, D>`` is uniform on the multiples of ``2^v``, so one tag passes
with probability ``2^-(b-v) <= 1/2`` (worst case: ``D`` divisible by ``2^(b-1)``). The
``L = 32`` independent tags bound a forgery by ``2^-32`` for every ``b``. A change in
the PRF term alone (``D = 0``) must guess a PRF output: ``2^-(L b)``.

Residual risk: every member holds ``K``; a coordinator colluding with one member can
forge aggregates. ``check`` trusts the survivor set it is given (the lead wires in a
member-signed one); a coordinator that lies about survivors consistently to everyone
passes the PRF check only if the aggregate really is the sum over that set.

Cost (bench/integrity_bench.py): ``L`` keystreams and an ``L x chunk`` integer
product per 64k-element chunk; no per-parameter Python.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.crypto import prg
from accord.crypto.agreement import encode_fields
from accord.crypto.profile import Profile
from accord.errors import IntegrityError, InternalError

__all__ = [
    "KEY_BYTES",
    "TAG_SLOTS",
    "adapter_parameters",
    "append_tags",
    "check",
    "protected_length",
    "tags",
]

KEY_BYTES = 32
"""Length of the federation's integrity key ``K``."""

TAG_SLOTS = 32
"""``L``: tag slots per protected vector; bounds a forgery by ``2^-L`` for every ``b``."""

CHUNK_ELEMENTS = 1 << 16
"""Elements of ``R`` generated at a time (``L x 64k`` words, 8 MiB)."""

_R_DOMAIN = b"accord/v1/integrity-r"
_PRF_DOMAIN = b"accord/v1/integrity-prf"


def protected_length(adapter_parameters: int, profile: Profile) -> int:
    """Length of the protected vector: parameters, the weight slot, and tags when secure."""
    if not isinstance(adapter_parameters, int) or adapter_parameters < 1:
        raise InternalError(f"adapter_parameters = {adapter_parameters!r}: must be an integer >= 1")
    return adapter_parameters + 1 + (TAG_SLOTS if profile.is_secure else 0)


def adapter_parameters(element_count: int, profile: Profile) -> int:
    """The inverse of `protected_length`: adapter parameters in a protected vector."""
    return element_count - 1 - (TAG_SLOTS if profile.is_secure else 0)


def tags(
    x: npt.NDArray[np.integer],
    key: bytes,
    *,
    federation_id: str,
    round: int,
    participant: str,
    modulus_bits: int,
) -> npt.NDArray[np.uint32]:
    """The ``L`` tags of ``x`` (values and weight, in Z_{2^b}) for ``participant``, uint32."""
    _check_key(key, modulus_bits)
    products = _r_products(x, key, federation_id, round)
    products += _prf(key, federation_id, round, participant)
    return _reduce(products, modulus_bits)


def append_tags(
    x: npt.NDArray[np.uint32],
    key: bytes,
    *,
    federation_id: str,
    round: int,
    participant: str,
    modulus_bits: int,
) -> npt.NDArray[np.uint32]:
    """``x`` followed by its tags: the protected plaintext, shape ``(len(x) + L,)``."""
    array = np.asarray(x)
    if array.ndim != 1 or array.size < 1 or not np.issubdtype(array.dtype, np.integer):
        raise InternalError("append_tags: x must be a non-empty 1-D integer array")
    out = np.empty(array.size + TAG_SLOTS, dtype=np.uint32)
    out[: array.size] = array
    out[array.size :] = tags(
        array,
        key,
        federation_id=federation_id,
        round=round,
        participant=participant,
        modulus_bits=modulus_bits,
    )
    return out


def check(
    sums: npt.NDArray[np.uint32],
    key: bytes,
    *,
    federation_id: str,
    round: int,
    survivors: Iterable[str],
    modulus_bits: int,
) -> npt.NDArray[np.uint32]:
    """Verify that ``sums`` is the sum of the tagged uploads of ``survivors``; strip the tags.

    Args:
        sums: the revealed aggregate mod ``2^b`` (``pipeline.reveal`` output), tags last.
        key: the federation's integrity key.
        federation_id, round: the round the aggregate claims to be.
        survivors: the participants whose uploads the aggregate must sum (each once).

    Returns:
        A view of ``sums`` without the tag slots (values and weight).

    Raises:
        IntegrityError: the aggregate is not the sum of the survivors' uploads.
        UsageError: bad arguments (too short, duplicate or empty survivor set).
    """
    array = np.asarray(sums)
    if array.ndim != 1 or array.size <= TAG_SLOTS:
        raise InternalError(f"check: sums must be 1-D and longer than {TAG_SLOTS} tag slots")
    names = list(survivors)
    if not names or len(set(names)) != len(names):
        raise InternalError(f"check: survivors must be non-empty and distinct, got {names}")
    _check_key(key, modulus_bits)
    body = array[:-TAG_SLOTS]
    expected = _r_products(body, key, federation_id, round)
    for name in names:
        expected += _prf(key, federation_id, round, name)
    received = array[-TAG_SLOTS:].astype(np.uint64)
    if not np.array_equal(_reduce(expected, modulus_bits), received):
        who = ", ".join(sorted(names))
        raise IntegrityError(
            f"the aggregate of round {round} is not the sum of the uploads of {{{who}}}"
        )
    return body


def _check_key(key: bytes, modulus_bits: int) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise InternalError(f"an integrity key must be {KEY_BYTES} bytes")
    if not isinstance(modulus_bits, int) or not 1 <= modulus_bits <= 32:
        raise InternalError(f"modulus_bits = {modulus_bits!r}: must be an integer in 1..32")


def _hkdf(key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(bytes(key))


def _prf(key: bytes, federation_id: str, round: int, participant: str) -> npt.NDArray[np.uint64]:
    """``PRF_K(fed, r, i, l)`` for every ``l``, as raw 32-bit words widened to uint64."""
    raw = _hkdf(key, _PRF_DOMAIN + encode_fields(federation_id, round, participant), 4 * TAG_SLOTS)
    return np.frombuffer(raw, dtype="<u4").astype(np.uint64)


def _r_products(
    x: npt.NDArray[np.integer], key: bytes, federation_id: str, round: int
) -> npt.NDArray[np.uint64]:
    """``<R_l, x> mod 2^64`` for every ``l`` (reduced mod ``2^b`` by the caller)."""
    seeds = _hkdf(key, _R_DOMAIN + encode_fields(federation_id, round), prg.SEED_BYTES * TAG_SLOTS)
    streams = [
        prg.Keystream(seeds[slot * prg.SEED_BYTES : (slot + 1) * prg.SEED_BYTES], 0)
        for slot in range(TAG_SLOTS)
    ]
    size = int(x.size)
    width = min(CHUNK_ELEMENTS, size)
    scratch = np.empty(4 * width + 16, dtype=np.uint8)
    rows = np.empty((TAG_SLOTS, width), dtype=np.uint64)
    piece = np.empty(width, dtype=np.uint64)
    total = np.zeros(TAG_SLOTS, dtype=np.uint64)
    for start in range(0, size, width):
        count = min(width, size - start)
        for slot, stream in enumerate(streams):
            rows[slot, :count] = stream.read_into(scratch, count)
        piece[:count] = x[start : start + count]
        # uint64 products and sums wrap mod 2^64, which 2^b divides.
        total += rows[:, :count] @ piece[:count]
    return total


def _reduce(values: npt.NDArray[np.uint64], modulus_bits: int) -> npt.NDArray[np.uint32]:
    mask = np.uint64((1 << modulus_bits) - 1)
    reduced: npt.NDArray[np.uint32] = (values & mask).astype(np.uint32)
    return reduced
