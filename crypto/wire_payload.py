"""The payload of a chunk on the wire, per profile (docs/protocol.md, "Wire format of an update").

``masks``: ``element_count`` little-endian ``uint16`` (``b <= 16``) or ``uint32``;
``none``: ``element_count`` little-endian ``float32``; CKKS profiles: a sequence of
``(u32 length, SEAL ciphertext bytes)``, one per ``N * k`` elements, not yet parsed by SEAL.
Each decoder checks the length and the values, and names the chunk when given its index.
The header around a payload is ``wire``'s.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from accord.crypto.profile import Profile
from accord.errors import Malformed

__all__ = [
    "LENGTH",
    "decode_ciphertext_payload",
    "decode_field_payload",
    "decode_float_payload",
    "element_width",
    "encode_ciphertext_payload",
    "encode_field_payload",
    "encode_float_payload",
]

LENGTH = struct.Struct("<I")
"""The length prefix of each ciphertext in a CKKS payload."""


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
        parts += (LENGTH.pack(len(ciphertext)), bytes(ciphertext))
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
        if position + LENGTH.size > len(view) or len(blobs) == count:
            raise Malformed(f"{_label(chunk_index)}payload does not hold {count} ciphertexts")
        (length,) = LENGTH.unpack_from(view, position)
        position += LENGTH.size
        if length == 0 or position + length > len(view):
            raise Malformed(f"{_label(chunk_index)}payload has a truncated ciphertext")
        blobs.append(bytes(view[position : position + length]))
        position += length
    if len(blobs) != count:
        raise Malformed(f"{_label(chunk_index)}payload does not hold {count} ciphertexts")
    return blobs


def _label(chunk_index: int | None) -> str:
    return f"chunk {chunk_index}: " if chunk_index is not None else ""
