"""The chunk format of an update on the wire (docs/protocol.md, "Wire format of an update").

Theory of operation. An update (a participant's upload, or the coordinator's
aggregate) travels as a sequence of chunks of about 1 MiB, so neither side ever
holds a second full-size copy and the coordinator can add chunks as they arrive. A
chunk is ``header || payload``; the header is little-endian ``struct``::

    version u8 (=1) | profile u8 | flags u8 | reserved u8 (=0) | round u32
    | chunk_index u32 | chunk_count u32 | element_start u64 | element_count u32
    | modulus_bits u8 | fields_per_real u8 | field_bits u8 | scale_bits u8
    | poly_degree u32 | payload_len u32 | federation_id (u8 length + utf-8)
    | crc32 u32 over everything before it and the payload

Payloads: ``masks`` -- ``element_count`` little-endian ``uint16`` (``b <= 16``) or
``uint32``; ``none`` -- ``element_count`` little-endian ``float32``; CKKS profiles -- a
sequence of ``(u32 length, SEAL ciphertext bytes)``, one per ``N * k`` elements.

Invariants. ``chunk_plan`` is a pure function of the element count, the profile and
the packing, so both sides derive the same chunk boundaries: for CKKS every chunk
is a whole number of ciphertexts (the last one partial), and for ``masks`` and
``none`` the boundaries do not depend on ``b``. ``decode_chunk`` checks size first
(``Oversized``), then structure and version (``Malformed``), then the CRC
(``IntegrityError``), then field consistency (``Malformed``); every message names the
chunk index once the header is readable. The CRC detects accidents; authenticity
comes from mTLS and the signed upload receipt.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.crypto.packing import COEFF_MODULUS_BITS, PackingSpec
from accord.crypto.profile import Profile
from accord.errors import IntegrityError, InternalError, Malformed, Oversized

__all__ = [
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_TARGET_CHUNK_BYTES",
    "FLAG_AGGREGATE",
    "WIRE_VERSION",
    "ChunkHeader",
    "chunk_plan",
    "decode_chunk",
    "decode_ciphertext_payload",
    "decode_field_payload",
    "decode_float_payload",
    "element_width",
    "encode_chunk",
    "encode_ciphertext_payload",
    "encode_field_payload",
    "encode_float_payload",
    "layout_header",
    "profile_code",
    "require_layout",
]

WIRE_VERSION = 1
"""The version byte every chunk starts with."""

FLAG_AGGREGATE = 0x01
"""Flag bit: the chunk belongs to the coordinator's aggregate, not to one upload."""

DEFAULT_TARGET_CHUNK_BYTES = 1 << 20
"""Chunks are planned to about 1 MiB of payload."""

DEFAULT_MAX_CHUNK_BYTES = 8 << 20
"""``decode_chunk`` refuses anything longer (an aggregate CKKS chunk is about 2 MiB)."""

_FIXED = struct.Struct("<BBBBIIIQIBBBBII")
_CRC = struct.Struct("<I")
_LENGTH = struct.Struct("<I")
_KNOWN_FLAGS = FLAG_AGGREGATE
_MAX_ID_BYTES = 255
_U32 = (1 << 32) - 1
_MAX_ELEMENTS = 1 << 64
_CIPHERTEXT_OVERHEAD = 256
"""Bytes of SEAL header and metadata around a seeded ciphertext's ``c0`` (measured: 204)."""

_PROFILE_CODES: dict[Profile, int] = {
    Profile.CKKS_MASKS: 1,
    Profile.CKKS: 2,
    Profile.MASKS: 3,
    Profile.NONE: 4,
}
_PROFILES_BY_CODE = {code: profile for profile, code in _PROFILE_CODES.items()}


def profile_code(profile: Profile) -> int:
    """The ``profile`` byte of the header for ``profile``."""
    return _PROFILE_CODES[profile]


@dataclass(frozen=True)
class ChunkHeader:
    """The header of one chunk (the version byte is always ``WIRE_VERSION``).

    Attributes:
        profile: protection profile of the update.
        round: round number (u32).
        chunk_index: position of this chunk, ``0 .. chunk_count - 1``.
        chunk_count: chunks in the whole update.
        element_start: index of the chunk's first element in the vector (u64).
        element_count: elements the chunk carries (>= 1, u32).
        payload_len: bytes of payload that follow the header.
        federation_id: the federation, at most 255 utf-8 bytes.
        modulus_bits: ``b`` for secure profiles, 0 for ``none``.
        fields_per_real, field_bits, scale_bits, poly_degree: the packing (CKKS
            profiles), else 0.
        flags: ``FLAG_AGGREGATE`` for the coordinator's aggregate, else 0.

    Raises:
        UsageError: a field is out of range or inconsistent with the profile.
    """

    profile: Profile
    round: int
    chunk_index: int
    chunk_count: int
    element_start: int
    element_count: int
    payload_len: int
    federation_id: str
    modulus_bits: int = 0
    fields_per_real: int = 0
    field_bits: int = 0
    scale_bits: int = 0
    poly_degree: int = 0
    flags: int = 0

    def __post_init__(self) -> None:
        problem = _header_problem(self)
        if problem is not None:
            raise InternalError(f"chunk header: {problem}")

    @property
    def version(self) -> int:
        """The format version, ``WIRE_VERSION``."""
        return WIRE_VERSION

    @property
    def is_aggregate(self) -> bool:
        """True for a chunk of the coordinator's aggregate."""
        return bool(self.flags & FLAG_AGGREGATE)

    @property
    def element_stop(self) -> int:
        """One past the chunk's last element."""
        return self.element_start + self.element_count

    def to_bytes(self) -> bytes:
        """The header bytes up to, not including, the CRC (which also covers the payload)."""
        identity = self.federation_id.encode("utf-8")
        fixed = _FIXED.pack(
            WIRE_VERSION,
            _PROFILE_CODES[self.profile],
            self.flags,
            0,
            self.round,
            self.chunk_index,
            self.chunk_count,
            self.element_start,
            self.element_count,
            self.modulus_bits,
            self.fields_per_real,
            self.field_bits,
            self.scale_bits,
            self.poly_degree,
            self.payload_len,
        )
        return fixed + bytes([len(identity)]) + identity

    @classmethod
    def from_bytes(cls, data: bytes) -> ChunkHeader:
        """Parse exactly the bytes that ``to_bytes`` wrote.

        Raises:
            Malformed: wrong length, version, reserved bits, profile or field values.
        """
        view = _view(data)
        header, end = _parse_header(view)
        if end != len(view):
            raise Malformed(f"chunk {header.chunk_index}: header has trailing bytes")
        return header


def encode_chunk(header: ChunkHeader, payload: bytes) -> bytes:
    """Frame one chunk: ``header || crc32 || payload``.

    Raises:
        UsageError: ``len(payload)`` differs from ``header.payload_len``.
    """
    if len(payload) != header.payload_len:
        raise InternalError(
            f"chunk {header.chunk_index}: payload is {len(payload)} bytes, header says "
            f"{header.payload_len}"
        )
    head = header.to_bytes()
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, _CRC.pack(crc), payload))


def decode_chunk(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_CHUNK_BYTES
) -> tuple[ChunkHeader, bytes]:
    """Parse and check one chunk.

    Args:
        data: the chunk as received.
        max_bytes: largest chunk accepted.

    Returns:
        The header and the payload bytes.

    Raises:
        Oversized: the chunk, or the payload it announces, exceeds ``max_bytes``.
        Malformed: truncated, trailing bytes, wrong version, unknown profile or flags,
            nonzero reserved byte, or fields inconsistent with the profile.
        IntegrityError: the CRC does not match.
    """
    view = _view(data)
    if len(view) > max_bytes:
        raise Oversized(f"{_which(view)}is {len(view)} bytes, above the {max_bytes}-byte limit")
    header, end = _parse_header(view)
    if header.payload_len > max_bytes:
        raise Oversized(
            f"chunk {header.chunk_index}: announces {header.payload_len} payload bytes, above "
            f"the {max_bytes}-byte limit"
        )
    total = end + _CRC.size + header.payload_len
    if len(view) != total:
        state = "truncated" if len(view) < total else "followed by trailing bytes"
        raise Malformed(f"chunk {header.chunk_index}: is {state}")
    (crc,) = _CRC.unpack_from(view, end)
    payload = view[end + _CRC.size :]
    if zlib.crc32(payload, zlib.crc32(view[:end])) != crc:
        raise IntegrityError(f"chunk {header.chunk_index}: CRC mismatch")
    return header, bytes(payload)


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
    if not _is_int(element_count) or not 1 <= element_count < _MAX_ELEMENTS:
        raise InternalError(f"element_count = {element_count!r}: must be an integer >= 1")
    if not _is_int(target_bytes) or target_bytes < 1:
        raise InternalError(f"target_bytes = {target_bytes!r}: must be an integer >= 1")
    if profile.uses_ckks:
        if spec is None:
            raise InternalError(f"chunk_plan: profile {profile} needs a packing spec")
        per_ciphertext = _seeded_ciphertext_bytes(spec) + _LENGTH.size
        per_chunk = max(1, target_bytes // per_ciphertext) * spec.elements_per_ciphertext
    else:
        per_chunk = max(1, target_bytes // 4)
    per_chunk = min(per_chunk, 1 << 31)
    if -(-element_count // per_chunk) > _U32:
        raise InternalError("chunk_plan: more than 2^32 - 1 chunks; raise target_bytes")
    return [
        (start, min(per_chunk, element_count - start))
        for start in range(0, element_count, per_chunk)
    ]


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


def element_width(profile: Profile, modulus_bits: int) -> int:
    """Bytes per element in a ``masks`` (2 or 4) or ``none`` (4) payload."""
    if profile is Profile.NONE:
        return 4
    return 2 if modulus_bits <= 16 else 4


def encode_field_payload(values: npt.ArrayLike, modulus_bits: int) -> bytes:
    """Encode elements of Z_{2^b} as little-endian ``uint16`` (``b <= 16``) or ``uint32``."""
    dtype = "<u2" if modulus_bits <= 16 else "<u4"
    return np.asarray(values).astype(dtype, copy=False).tobytes()


def decode_field_payload(
    payload: bytes, modulus_bits: int, count: int, *, chunk_index: int | None = None
) -> npt.NDArray[np.uint32]:
    """Decode ``count`` elements of Z_{2^b}.

    Raises:
        Malformed: wrong length, or a value ``>= 2^b``.
    """
    width = 2 if modulus_bits <= 16 else 4
    if len(payload) != width * count:
        raise Malformed(f"{_label(chunk_index)}payload is not {count} elements")
    values = np.frombuffer(payload, dtype="<u2" if width == 2 else "<u4").astype(np.uint32)
    if modulus_bits < 32 and count and int(values.max()) >> modulus_bits:
        raise Malformed(f"{_label(chunk_index)}payload holds values outside Z_2^{modulus_bits}")
    return values


def encode_float_payload(values: npt.ArrayLike) -> bytes:
    """Encode plaintext values (profile ``none``) as little-endian ``float32``."""
    return np.asarray(values).astype("<f4", copy=False).tobytes()


def decode_float_payload(
    payload: bytes, count: int, *, chunk_index: int | None = None
) -> npt.NDArray[np.float32]:
    """Decode ``count`` little-endian ``float32`` values.

    Raises:
        Malformed: wrong length, or a NaN or infinity.
    """
    if len(payload) != 4 * count:
        raise Malformed(f"{_label(chunk_index)}payload is not {count} float32 values")
    values = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    if not np.isfinite(values).all():
        raise Malformed(f"{_label(chunk_index)}payload holds a NaN or an infinity")
    return values


def encode_ciphertext_payload(ciphertexts: Sequence[bytes]) -> bytes:
    """Frame ciphertexts as ``(u32 length, bytes)`` pairs."""
    parts: list[bytes] = []
    for ciphertext in ciphertexts:
        parts += (_LENGTH.pack(len(ciphertext)), bytes(ciphertext))
    return b"".join(parts)


def decode_ciphertext_payload(
    payload: bytes, count: int, *, chunk_index: int | None = None
) -> list[bytes]:
    """Split a CKKS payload into exactly ``count`` ciphertexts (not yet parsed by SEAL).

    Raises:
        Malformed: the framing is broken or the number of ciphertexts differs.
    """
    view = memoryview(payload)
    blobs: list[bytes] = []
    position = 0
    while position < len(view):
        if position + _LENGTH.size > len(view) or len(blobs) == count:
            raise Malformed(f"{_label(chunk_index)}payload does not hold {count} ciphertexts")
        (length,) = _LENGTH.unpack_from(view, position)
        position += _LENGTH.size
        if length == 0 or position + length > len(view):
            raise Malformed(f"{_label(chunk_index)}payload has a truncated ciphertext")
        blobs.append(bytes(view[position : position + length]))
        position += length
    if len(blobs) != count:
        raise Malformed(f"{_label(chunk_index)}payload does not hold {count} ciphertexts")
    return blobs


def _seeded_ciphertext_bytes(spec: PackingSpec) -> int:
    data_primes = len(COEFF_MODULUS_BITS[spec.poly_modulus_degree]) - 1
    return 8 * spec.poly_modulus_degree * data_primes + _CIPHERTEXT_OVERHEAD


def _parse_header(view: memoryview) -> tuple[ChunkHeader, int]:
    if len(view) < _FIXED.size + 1:
        raise Malformed(f"{_which(view)}is truncated")
    fields = _FIXED.unpack_from(view)
    version, code, flags, reserved = fields[:4]
    index = fields[5]
    if version != WIRE_VERSION:
        raise Malformed(f"chunk {index}: format version {version}, expected {WIRE_VERSION}")
    if reserved != 0 or flags & ~_KNOWN_FLAGS:
        raise Malformed(f"chunk {index}: unknown flags or reserved bits")
    if code not in _PROFILES_BY_CODE:
        raise Malformed(f"chunk {index}: unknown profile code {code}")
    id_length = view[_FIXED.size]
    end = _FIXED.size + 1 + id_length
    if len(view) < end:
        raise Malformed(f"chunk {index}: is truncated")
    try:
        federation_id = bytes(view[_FIXED.size + 1 : end]).decode("utf-8")
    except UnicodeDecodeError as err:
        raise Malformed(f"chunk {index}: federation id is not utf-8") from err
    values: dict[str, Any] = dict(
        profile=_PROFILES_BY_CODE[code],
        flags=flags,
        round=fields[4],
        chunk_index=index,
        chunk_count=fields[6],
        element_start=fields[7],
        element_count=fields[8],
        modulus_bits=fields[9],
        fields_per_real=fields[10],
        field_bits=fields[11],
        scale_bits=fields[12],
        poly_degree=fields[13],
        payload_len=fields[14],
        federation_id=federation_id,
    )
    problem = _header_problem(_Fields(values))
    if problem is not None:
        raise Malformed(f"chunk {index}: {problem}")
    return ChunkHeader(**values), end


class _Fields:
    """Attribute access over a dict, so raw parsed fields share ``_header_problem``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _header_problem(h: Any) -> str | None:
    """Why these header fields are not a valid combination, or None."""
    if not isinstance(h.profile, Profile):
        return "profile must be a Profile"
    if not isinstance(h.federation_id, str) or len(h.federation_id.encode()) > _MAX_ID_BYTES:
        return f"federation_id must be a string of at most {_MAX_ID_BYTES} utf-8 bytes"
    for name, limit in (
        ("round", _U32),
        ("chunk_index", _U32),
        ("chunk_count", _U32),
        ("element_start", _MAX_ELEMENTS - 1),
        ("element_count", _U32),
        ("payload_len", _U32),
        ("modulus_bits", 255),
        ("fields_per_real", 255),
        ("field_bits", 255),
        ("scale_bits", 255),
        ("poly_degree", _U32),
        ("flags", 255),
    ):
        value = getattr(h, name)
        if not _is_int(value) or not 0 <= value <= limit:
            return f"{name} = {value!r} is out of range"
    if h.flags & ~_KNOWN_FLAGS:
        return f"flags = {h.flags:#x} has unknown bits"
    if h.chunk_index >= h.chunk_count:
        return f"chunk_index {h.chunk_index} is not below chunk_count {h.chunk_count}"
    if h.element_count < 1 or h.element_start + h.element_count > _MAX_ELEMENTS:
        return "the element range is empty or runs past 2^64"
    packing = (h.fields_per_real, h.field_bits, h.scale_bits, h.poly_degree)
    if h.profile is Profile.NONE:
        if h.modulus_bits or any(packing):
            return "profile none carries no modulus or packing fields"
    elif not 1 <= h.modulus_bits <= 32:
        return f"modulus_bits = {h.modulus_bits} must be in 1..32"
    elif h.profile.uses_ckks and not all(packing):
        return f"profile {h.profile} needs every packing field"
    elif not h.profile.uses_ckks and any(packing):
        return f"profile {h.profile} carries no packing fields"
    return None


def _which(view: memoryview) -> str:
    """'chunk i: ' when the index is readable from a version-1 header, else 'chunk: '."""
    if len(view) >= _FIXED.size and view[0] == WIRE_VERSION:
        return f"chunk {_FIXED.unpack_from(view)[5]}: "
    return "chunk: "


def _label(chunk_index: int | None) -> str:
    return f"chunk {chunk_index}: " if chunk_index is not None else ""


def _view(data: Any) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InternalError(f"expected bytes, got {type(data).__name__}")
    return memoryview(data).cast("B")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
