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

Payloads, one encoding per profile, are ``wire_payload``'s; how an update is cut into
chunks (``chunk_plan``) and the header each chunk must carry are ``wire_layout``'s.

Invariants. ``decode_chunk`` checks size first
``decode_chunk`` checks size first
(``Oversized``), then structure and version (``Malformed``), then the CRC
(``IntegrityError``), then field consistency (``Malformed``); every message names the
chunk index once the header is readable. The CRC detects accidents; authenticity
comes from mTLS and the signed upload receipt.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from accord.crypto.profile import Profile
from accord.errors import IntegrityError, InternalError, Malformed, Oversized

__all__ = [
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_TARGET_CHUNK_BYTES",
    "FLAG_AGGREGATE",
    "WIRE_VERSION",
    "ChunkHeader",
    "decode_chunk",
    "encode_chunk",
    "profile_code",
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
_KNOWN_FLAGS = FLAG_AGGREGATE
_MAX_ID_BYTES = 255
U32_MAX = (1 << 32) - 1
"""The largest u32 header field."""
MAX_ELEMENTS = 1 << 64
"""Elements a vector may have at most (``element_start`` is a u64)."""

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
        ("round", U32_MAX),
        ("chunk_index", U32_MAX),
        ("chunk_count", U32_MAX),
        ("element_start", MAX_ELEMENTS - 1),
        ("element_count", U32_MAX),
        ("payload_len", U32_MAX),
        ("modulus_bits", 255),
        ("fields_per_real", 255),
        ("field_bits", 255),
        ("scale_bits", 255),
        ("poly_degree", U32_MAX),
        ("flags", 255),
    ):
        value = getattr(h, name)
        if not is_int(value) or not 0 <= value <= limit:
            return f"{name} = {value!r} is out of range"
    if h.flags & ~_KNOWN_FLAGS:
        return f"flags = {h.flags:#x} has unknown bits"
    if h.chunk_index >= h.chunk_count:
        return f"chunk_index {h.chunk_index} is not below chunk_count {h.chunk_count}"
    if h.element_count < 1 or h.element_start + h.element_count > MAX_ELEMENTS:
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


def _view(data: Any) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InternalError(f"expected bytes, got {type(data).__name__}")
    return memoryview(data).cast("B")


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer that is not a boolean."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
