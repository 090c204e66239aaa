"""How an update is laid out in chunks, and the header each chunk must then carry.

``chunk_plan`` is a pure function of the element count, the profile and the packing,
so both sides derive the same chunk boundaries: for CKKS every chunk is a whole number
of ciphertexts (the last one partial), and for ``masks`` and ``none`` the boundaries do
not depend on ``b``. ``layout_header`` is the header a chunk of that plan must carry, and
``require_layout`` checks a received header against it, naming the first field that
differs. The chunk format itself is ``wire``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from accord.crypto.packing import COEFF_MODULUS_BITS, PackingSpec
from accord.crypto.profile import Profile
from accord.crypto.wire import (
    DEFAULT_TARGET_CHUNK_BYTES,
    FLAG_AGGREGATE,
    MAX_ELEMENTS,
    U32_MAX,
    ChunkHeader,
    is_int,
)
from accord.crypto.wire_payload import LENGTH
from accord.errors import InternalError, Malformed

__all__ = ["check_settings", "checked_plan", "chunk_plan", "layout_header", "require_layout"]

_CIPHERTEXT_OVERHEAD = 256
"""Bytes of SEAL header and metadata around a seeded ciphertext's ``c0`` (measured: 204)."""


def chunk_plan(
    element_count: int,
    profile: Profile,
    spec: PackingSpec | None = None,
    target_bytes: int = DEFAULT_TARGET_CHUNK_BYTES,
) -> list[tuple[int, int]]:
    """Split a vector into chunks of about ``target_bytes``.

    Args:
        element_count: elements in the vector (>= 1).
        profile: protection profile.
        spec: the packing; required for the CKKS profiles, ignored otherwise.
        target_bytes: payload bytes aimed at per chunk.

    Returns:
        ``(element_start, element_count)`` per chunk, in order. For CKKS each chunk
        covers a whole number of ciphertexts (the last possibly partial); for ``masks``
        and ``none`` each chunk holds ``target_bytes // 4`` elements (the last fewer),
        whatever ``b`` is.

    Raises:
        UsageError: ``element_count`` or ``target_bytes`` is out of range, or a CKKS
            profile comes without ``spec``.
    """
    if not is_int(element_count) or not 1 <= element_count < MAX_ELEMENTS:
        raise InternalError(f"element_count = {element_count!r}: must be an integer >= 1")
    if not is_int(target_bytes) or target_bytes < 1:
        raise InternalError(f"target_bytes = {target_bytes!r}: must be an integer >= 1")
    if profile.uses_ckks:
        if spec is None:
            raise InternalError(f"chunk_plan: profile {profile} needs a packing spec")
        per_ciphertext = _seeded_ciphertext_bytes(spec) + LENGTH.size
        per_chunk = max(1, target_bytes // per_ciphertext) * spec.elements_per_ciphertext
    else:
        per_chunk = max(1, target_bytes // 4)
    per_chunk = min(per_chunk, 1 << 31)
    if -(-element_count // per_chunk) > U32_MAX:
        raise InternalError("chunk_plan: more than 2^32 - 1 chunks; raise target_bytes")
    return [
        (start, min(per_chunk, element_count - start))
        for start in range(0, element_count, per_chunk)
    ]


def checked_plan(
    element_count: int,
    profile: Profile,
    spec: PackingSpec | None,
    target_bytes: int,
    *,
    federation_id: str,
    round: int,
    modulus_bits: int,
) -> list[tuple[int, int]]:
    """``chunk_plan``, after checking the round's settings once by building chunk 0's header.

    Raises:
        UsageError: as ``chunk_plan``, or the settings do not form a valid header.
    """
    plan = chunk_plan(element_count, profile, spec, target_bytes)
    layout_header(
        profile=profile,
        federation_id=federation_id,
        round=round,
        plan=plan,
        chunk_index=0,
        modulus_bits=modulus_bits,
        spec=spec,
    )
    return plan


def layout_header(
    *,
    profile: Profile,
    federation_id: str,
    round: int,
    plan: Sequence[tuple[int, int]],
    chunk_index: int,
    modulus_bits: int,
    spec: PackingSpec | None,
    payload_len: int = 0,
    aggregate: bool = False,
) -> ChunkHeader:
    """The header that chunk ``chunk_index`` of an update laid out by ``plan`` must carry.

    Args:
        profile, federation_id, round: the round's settings.
        plan: ``chunk_plan`` output for the update.
        chunk_index: which chunk.
        modulus_bits: ``b`` (ignored, and 0 on the wire, for ``none``).
        spec: the packing (CKKS profiles; ignored otherwise).
        payload_len: bytes of the payload.
        aggregate: True for the coordinator's aggregate (sets ``FLAG_AGGREGATE``).

    Raises:
        UsageError: the values do not form a valid header.
    """
    start, count = plan[chunk_index]
    packed = spec if profile.uses_ckks else None
    return ChunkHeader(
        profile=profile,
        round=round,
        chunk_index=chunk_index,
        chunk_count=len(plan),
        element_start=start,
        element_count=count,
        payload_len=payload_len,
        federation_id=federation_id,
        modulus_bits=0 if profile is Profile.NONE else modulus_bits,
        fields_per_real=packed.fields_per_real if packed else 0,
        field_bits=packed.field_bits if packed else 0,
        scale_bits=packed.scale_bits if packed else 0,
        poly_degree=packed.poly_modulus_degree if packed else 0,
        flags=FLAG_AGGREGATE if aggregate else 0,
    )


def require_layout(
    header: ChunkHeader,
    *,
    profile: Profile,
    federation_id: str | None,
    round: int | None,
    plan: Sequence[tuple[int, int]],
    modulus_bits: int,
    spec: PackingSpec | None,
    aggregate: bool,
) -> None:
    """Check a received header against the round's settings and the chunk plan.

    ``federation_id`` or ``round`` set to None are not checked.

    Raises:
        Malformed: the first field that differs, with the value found and the one expected.
    """
    if header.chunk_count != len(plan):
        raise Malformed(
            f"chunk {header.chunk_index}: chunk_count = {header.chunk_count}, expected {len(plan)}"
        )
    expected = layout_header(
        profile=profile,
        federation_id=header.federation_id if federation_id is None else federation_id,
        round=header.round if round is None else round,
        plan=plan,
        chunk_index=header.chunk_index,
        modulus_bits=modulus_bits,
        spec=spec,
        payload_len=header.payload_len,
        aggregate=aggregate,
    )
    if header == expected:
        return
    for field in fields(ChunkHeader):
        found, wanted = getattr(header, field.name), getattr(expected, field.name)
        if found != wanted:
            raise Malformed(
                f"chunk {header.chunk_index}: {field.name} = {found!r}, expected {wanted!r}"
            )
    raise AssertionError("headers differ in no field")  # pragma: no cover


def _seeded_ciphertext_bytes(spec: PackingSpec) -> int:
    data_primes = len(COEFF_MODULUS_BITS[spec.poly_modulus_degree]) - 1
    return 8 * spec.poly_modulus_degree * data_primes + _CIPHERTEXT_OVERHEAD


def check_settings(
    profile: Profile,
    modulus_bits: int,
    packing: PackingSpec | None,
    context: Any,
    context_name: str,
) -> None:
    """Check that a profile, ``b``, a packing and a CKKS context fit together.

    Args:
        profile: the round's protection profile.
        modulus_bits: ``b``; an integer in 1..32 unless the profile is ``none``.
        packing: the packing spec; required exactly for the CKKS profiles.
        context: the CKKS context (public or secret, with ``poly_modulus_degree``);
            required exactly for the CKKS profiles.
        context_name: how messages name the context ("public context", ...).

    Raises:
        InternalError: they do not fit.
    """
    if not isinstance(profile, Profile):
        raise InternalError(f"profile must be a Profile, got {type(profile).__name__}")
    if profile.uses_ckks:
        if packing is None or context is None:
            raise InternalError(f"profile {profile} needs a packing spec and a {context_name}")
        if packing.modulus_bits != modulus_bits:
            raise InternalError(
                f"packing is for b = {packing.modulus_bits}, the round uses b = {modulus_bits}"
            )
        if packing.poly_modulus_degree != context.poly_modulus_degree:
            raise InternalError(f"the packing and the {context_name} have different ring degrees")
    elif packing is not None or context is not None:
        raise InternalError(f"profile {profile} takes no packing spec and no {context_name}")
    if profile is not Profile.NONE and not (
        isinstance(modulus_bits, int) and 1 <= modulus_bits <= 32
    ):
        raise InternalError(f"modulus_bits = {modulus_bits!r}: must be an integer in 1..32")
