"""The mask generator: a seekable AES-128-CTR keystream read as elements of Z_{2^b}.

Theory of operation (docs/protocol.md, "Masks"; Bonawitz et al. 2017, section 4,
where PRG expands a seed into a vector of the aggregation group):

- The 16-byte seed is an AES-128 key. The keystream is AES-CTR with a 16-byte
  big-endian counter block that starts at zero, i.e. block ``j`` of the stream is
  ``AES_seed(j as 128-bit big-endian)``.
- The stream is read as little-endian ``uint32`` words; element ``i`` is the word at
  keystream bytes ``[4i, 4i + 4)``, masked to its low ``b`` bits (``b <= 32``).
  Because ``2^b`` divides ``2^32``, the masked words are uniform on Z_{2^b}.
- Element ``i`` lives in block ``floor(4i / 16)`` at byte offset ``4i mod 16``, so
  ``expand(seed, start, count)`` starts the counter at ``floor(4 * start / 16)``
  and skips ``4 * start mod 16`` bytes. Any chunk therefore expands on its own and
  equals the same slice of the full expansion; no caller ever needs a full-size
  buffer.

Invariants: ``expand(s, a, m + k) == concat(expand(s, a, m), expand(s, a + m, k))``
and every value is ``< 2^b``. Element indices are below ``2^64`` (the wire header's
``element_start`` is a u64), so the 128-bit counter never wraps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from accord.errors import InternalError

__all__ = ["MAX_ELEMENTS", "SEED_BYTES", "Keystream", "expand"]

SEED_BYTES = 16
"""Length of a PRG seed: one AES-128 key."""

MAX_ELEMENTS = 1 << 64
"""Element indices ``start + count`` must stay at or below this (u64 on the wire)."""

_WORD_BYTES = 4
_BLOCK_BYTES = 16
_SLACK_BYTES = _BLOCK_BYTES
"""Spare output bytes; older ``cryptography`` releases want ``len(data) + 15`` in update_into."""

_ZERO_BLOCK = bytes(1 << 16)
"""Plaintext of zeros, encrypted piece by piece to produce the keystream."""


def expand(seed: bytes, start: int, count: int, modulus_bits: int) -> npt.NDArray[np.uint32]:
    """Expand ``seed`` into elements ``[start, start + count)`` of its mask vector.

    Args:
        seed: the 16-byte PRG seed (a pairwise seed ``s_uv`` or a self-mask seed ``b_u``).
        start: index of the first element wanted (>= 0).
        count: number of elements (>= 0).
        modulus_bits: ``b``, 1..32; each element is the keystream word mod ``2^b``.

    Returns:
        uint32 array of shape ``(count,)``, every value ``< 2^b``.

    Raises:
        UsageError: the seed is not 16 bytes, ``start`` or ``count`` is negative or runs
            past ``2^64`` elements, or ``modulus_bits`` is outside 1..32.
    """
    if not isinstance(seed, (bytes, bytearray, memoryview)) or len(seed) != SEED_BYTES:
        raise InternalError(f"a PRG seed must be {SEED_BYTES} bytes")
    if not _is_int(start) or not _is_int(count) or start < 0 or count < 0:
        raise InternalError(f"start = {start!r}, count = {count!r}: must be integers >= 0")
    if start + count > MAX_ELEMENTS:
        raise InternalError(f"start + count = {start + count}: must be at most 2^64 elements")
    if not _is_int(modulus_bits) or not 1 <= modulus_bits <= 32:
        raise InternalError(f"modulus_bits = {modulus_bits!r}: must be an integer in 1..32")
    stream = Keystream(bytes(seed), int(start))
    scratch = np.empty(int(count) * _WORD_BYTES + _SLACK_BYTES, dtype=np.uint8)
    words = stream.read_into(scratch, int(count)).astype(np.uint32, copy=False)
    if modulus_bits < 32:
        np.bitwise_and(words, np.uint32((1 << int(modulus_bits)) - 1), out=words)
    return words


class Keystream:
    """Sequential reader of one seed's raw 32-bit keystream words from element ``start`` on.

    This is the core of ``expand`` without range reduction. ``masks`` keeps one reader
    per term and reads them piece by piece in step, adding mod ``2^32`` into a
    cache-sized buffer and reducing once at the end.
    """

    def __init__(self, seed: bytes, start: int) -> None:
        """Position a reader at element ``start`` of the stream of a 16-byte ``seed``.

        Raises:
            UsageError: the seed is not 16 bytes (a longer key would silently select
                AES-192 or AES-256) or ``start`` is negative.
        """
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise InternalError(f"a PRG seed must be {SEED_BYTES} bytes")
        if start < 0:
            raise InternalError(f"start = {start}: must be >= 0")
        first_block, skip = divmod(start * _WORD_BYTES, _BLOCK_BYTES)
        self._encryptor = Cipher(
            algorithms.AES(seed), modes.CTR(first_block.to_bytes(_BLOCK_BYTES, "big"))
        ).encryptor()
        if skip:
            self._encryptor.update(_ZERO_BLOCK[:skip])

    def read_into(self, scratch: npt.NDArray[np.uint8], count: int) -> npt.NDArray[np.uint32]:
        """Write the next ``count`` words into ``scratch`` and return them as a view.

        Args:
            scratch: uint8 buffer of at least ``4 * count + 16`` bytes (the 16 spare
                bytes are what older ``cryptography`` releases require of update_into).
            count: words to read (>= 0).

        Returns:
            A little-endian uint32 view of ``scratch[: 4 * count]``, valid until the
            buffer is reused.
        """
        length = count * _WORD_BYTES
        if (
            scratch.dtype != np.uint8
            or scratch.ndim != 1
            or not scratch.flags.c_contiguous
            or scratch.shape[0] < length + _SLACK_BYTES
        ):
            raise InternalError(
                f"scratch must be contiguous uint8 of at least {length + _SLACK_BYTES} bytes"
            )
        output = scratch.data
        zeros = memoryview(_ZERO_BLOCK)
        # Encrypting a shared block of zeros piece by piece avoids allocating (and
        # page-faulting) a zero input as large as the output; the cipher state carries
        # the counter across pieces, so the stream is the same as one call.
        for offset in range(0, length, len(_ZERO_BLOCK)):
            piece = min(len(_ZERO_BLOCK), length - offset)
            written = self._encryptor.update_into(
                zeros[:piece], output[offset : offset + piece + _SLACK_BYTES]
            )
            if written != piece:  # CTR is a stream mode: one output byte per input byte.
                raise AssertionError("AES-CTR returned a short keystream")
        view: npt.NDArray[np.uint32] = scratch[:length].view(np.dtype("<u4"))
        return view


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
