"""Pairwise and self masks in Z_{2^b}, and the correction that removes them.

Theory of operation (Bonawitz et al. 2017, sections 3 and 4, "double masking";
Bell et al. 2020 for the sparse neighbour graph; docs/protocol.md, "Masks"):

- Participant ``u`` uploads
  ``y_u = x_u + PRG(b_u) + sum_{v in N(u), v > u} PRG(s_uv) - sum_{v in N(u), v < u} PRG(s_uv)``
  (mod ``2^b``, ids compared as Python strings). Each pairwise mask appears once with
  ``+`` (at the smaller id) and once with ``-`` (at the larger id), so over a set of
  survivors that are all neighbours of each other the pairwise masks cancel.
- What does not cancel is removed by the correction, built from secrets the
  survivors rebuild with Shamir shares: ``-PRG(b_u)`` for every survivor ``u``, and
  for every survivor ``u`` with a dropped neighbour ``v`` the term ``u`` added for
  ``v``, negated: ``-sign(u, v) PRG(s_uv)`` with ``sign(u, v) = +1 if v > u else -1``.
  Then ``sum_{u survivor} y_u + correction = sum_{u survivor} x_u (mod 2^b)``.
- The self mask ``b_u`` is what protects a participant whose upload arrives after it
  was declared dropped: its pairwise seeds were rebuilt, but ``b_u`` never was (an
  honest participant reveals at most one of the two for any id), so its input stays
  hidden.
- A mask is a list of ``MaskTerm(seed, sign)``; ``apply`` adds
  ``sum sign * PRG(seed)[start : start + len]`` to one chunk. Keystreams are added
  mod ``2^32`` in place, piece by piece, and reduced mod ``2^b`` once at the end
  (``2^b`` divides ``2^32``); memory is the output chunk plus one 128 KiB scratch
  buffer whatever the number of terms, and any chunking of a vector gives the same
  result as masking it whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.crypto.prg import MAX_ELEMENTS, SEED_BYTES, Keystream
from accord.errors import InternalError

__all__ = [
    "MaskTerm",
    "apply",
    "correction",
    "correction_terms",
    "pairwise_sign",
    "participant_terms",
]

_PIECE_ELEMENTS = 1 << 15
"""Elements masked per step (128 KiB of uint32): large enough to amortise the Python
loop, small enough that the running sum and one keystream piece stay in L2 cache."""


@dataclass(frozen=True)
class MaskTerm:
    """One PRG stream added (``sign = +1``) or subtracted (``sign = -1``).

    Attributes:
        seed: the 16-byte PRG seed; kept out of ``repr``.
        sign: ``+1`` or ``-1``.
    """

    seed: bytes = field(repr=False)
    sign: int

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES:
            raise InternalError(f"a mask seed must be {SEED_BYTES} bytes")
        if isinstance(self.sign, bool) or self.sign not in (1, -1):
            raise InternalError(f"sign = {self.sign!r}: must be +1 or -1")


def pairwise_sign(u: str, v: str) -> int:
    """Sign with which ``u`` adds the mask it shares with ``v``: +1 if ``v > u`` else -1.

    Raises:
        UsageError: ``u == v``.
    """
    if u == v:
        raise InternalError(f"{u!r} cannot share a pairwise mask with itself")
    return 1 if v > u else -1


def participant_terms(
    me: str, self_mask_seed: bytes, pairwise_seeds: Mapping[str, bytes]
) -> list[MaskTerm]:
    """List the mask terms participant ``me`` adds to its own input.

    Args:
        me: the participant's id.
        self_mask_seed: its 16-byte self-mask seed ``b_u``.
        pairwise_seeds: ``{neighbour id v: s_uv}`` for each neighbour in ``N(u)``.

    Returns:
        ``[+b_u]`` followed by ``sign(me, v) s_uv`` for each neighbour, in id order.

    Raises:
        UsageError: a seed is not 16 bytes, or ``me`` is among its own neighbours.
    """
    terms = [MaskTerm(bytes(self_mask_seed), 1)]
    for v in sorted(pairwise_seeds):
        terms.append(MaskTerm(bytes(pairwise_seeds[v]), pairwise_sign(me, v)))
    return terms


def apply(
    values: npt.ArrayLike, start: int, terms: Sequence[MaskTerm], modulus_bits: int
) -> npt.NDArray[np.uint32]:
    """Add the masks to one chunk: ``(values + sum sign * PRG(seed)[start:]) mod 2^b``.

    Args:
        values: integer array of shape ``(count,)``, elements ``[start, start + count)``
            of a vector of Z_{2^b} (read mod ``2^b``).
        start: index of the chunk's first element in the whole vector (>= 0).
        terms: the mask terms to add.
        modulus_bits: ``b``, 1..32.

    Returns:
        A new uint32 array of shape ``(count,)`` with every value ``< 2^b``.

    Raises:
        UsageError: ``values`` is not a one-dimensional integer array, or ``start``,
            ``modulus_bits`` or a term is invalid.
    """
    chunk = np.asarray(values)
    if chunk.ndim != 1 or chunk.dtype.kind not in "iu":
        raise InternalError(
            f"values has shape {chunk.shape} and dtype {chunk.dtype}: must be a "
            "one-dimensional integer array"
        )
    count = chunk.shape[0]
    _check_range(start, count, modulus_bits)
    # Casting to uint32 keeps the value mod 2^32, hence mod 2^b: negative two's
    # complement inputs and wide unreduced sums both land on the right residue.
    out = chunk.astype(np.uint32, copy=True)
    for term in terms:
        if not isinstance(term, MaskTerm):
            raise InternalError(f"terms must be MaskTerm objects, got {type(term).__name__}")
    streams = [(Keystream(term.seed, int(start)), term.sign) for term in terms]
    scratch = np.empty(_PIECE_ELEMENTS * 4 + 16, dtype=np.uint8)
    # Walk the chunk in cache-sized pieces and add every stream's piece in turn, so the
    # running sum and the keystream stay in cache whatever the chunk size.
    for offset in range(0, count if streams else 0, _PIECE_ELEMENTS):
        piece = out[offset : offset + _PIECE_ELEMENTS]
        for stream, sign in streams:
            words = stream.read_into(scratch, piece.shape[0])
            if sign > 0:
                np.add(piece, words, out=piece)
            else:
                np.subtract(piece, words, out=piece)
    if modulus_bits < 32:
        np.bitwise_and(out, np.uint32((1 << modulus_bits) - 1), out=out)
    return out


def correction_terms(
    self_mask_seeds: Mapping[str, bytes],
    dropped_pairs: Iterable[tuple[str, str, bytes]],
) -> list[MaskTerm]:
    """List the terms that strip every remaining mask from the survivors' sum.

    Args:
        self_mask_seeds: ``{survivor u: b_u}``, rebuilt from shares, for every
            participant whose upload is in the sum.
        dropped_pairs: ``(u, v, s_uv)`` for each survivor ``u`` and each dropped
            neighbour ``v`` of ``u``, with ``s_uv`` rebuilt from ``v``'s masking key.

    Returns:
        ``-b_u`` for each survivor (in id order), then ``-sign(u, v) s_uv`` for each
        pair in the order given.

    Raises:
        UsageError: a pair names ``v`` that is also a survivor, repeats a pair, has
            ``u == v``, or a seed is not 16 bytes.
    """
    terms = [MaskTerm(bytes(self_mask_seeds[u]), -1) for u in sorted(self_mask_seeds)]
    seen: set[tuple[str, str]] = set()
    for u, v, seed in dropped_pairs:
        if v in self_mask_seeds:
            raise InternalError(f"{v!r} is listed both as a survivor and as dropped")
        if (u, v) in seen:
            raise InternalError(f"the pair ({u!r}, {v!r}) is listed twice")
        seen.add((u, v))
        terms.append(MaskTerm(bytes(seed), -pairwise_sign(u, v)))
    return terms


def correction(
    start: int, count: int, terms: Sequence[MaskTerm], modulus_bits: int
) -> npt.NDArray[np.uint32]:
    """Expand correction terms over elements ``[start, start + count)``.

    Args:
        start: index of the chunk's first element (>= 0).
        count: elements in the chunk (>= 0).
        terms: usually the output of ``correction_terms``.
        modulus_bits: ``b``, 1..32.

    Returns:
        uint32 array of shape ``(count,)``; add it to the survivors' summed chunk
        mod ``2^b``.

    Raises:
        UsageError: an argument is out of range.
    """
    if not _is_int(count) or count < 0:
        raise InternalError(f"count = {count!r}: must be an integer >= 0")
    return apply(np.zeros(int(count), dtype=np.uint32), start, terms, modulus_bits)


def _check_range(start: Any, count: int, modulus_bits: Any) -> None:
    if not _is_int(start) or start < 0 or start + count > MAX_ELEMENTS:
        raise InternalError(f"start = {start!r}: must be an integer >= 0 within 2^64 elements")
    if not _is_int(modulus_bits) or not 1 <= modulus_bits <= 32:
        raise InternalError(f"modulus_bits = {modulus_bits!r}: must be an integer in 1..32")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
