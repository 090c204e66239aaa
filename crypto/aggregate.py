"""The coordinator's running sum of uploads, chunk by chunk, in O(model) memory.

Theory of operation. Secure aggregation needs only the sum of the uploads
(Bonawitz et al. 2017, section 4): in ``masks`` the sum mod ``2^b`` of masked vectors
(pairwise masks cancel, self masks and the masks of dropped participants are removed
by a correction vector, ``add_correction``); in the CKKS profiles the homomorphic sum
of ciphertexts (Cheon et al. 2017), to which the correction is added as a packed
plaintext (BatchCrypt layout, ``packing``); in ``none`` a float32 sum. ``UpdateSum``
holds exactly one model-sized sum, so memory does not grow with the participants,
and every chunk can be added as soon as the coordinator decides to.

Invariants.

- Validate, then mutate: ``add`` parses the chunk, checks its header against the
  round (federation, round, profile, modulus, packing, chunk plan), decodes its whole
  payload (every ciphertext parsed by SEAL) and checks capacity before it touches
  the sum. A refused chunk leaves the sum exactly as it was. ``check`` runs the same
  validation without adding, so a coordinator can verify a participant's whole
  upload first and then add it knowing that no ``add`` will fail halfway.
- CKKS capacity: every ciphertext of the sum holds at most ``n_max + 1`` summands
  (uploads plus one correction); more could carry between packed fields.
- ``chunks`` emits the aggregate only when every chunk has summed the same number
  of uploads, so a partly added upload can never reach the participants.
- A sum may own only a contiguous range of the chunk plan (``owned``), so that
  several processes can each hold and add one range (DESIGN.md section 6) while
  their memory together stays one model: it holds exactly the elements (or
  ciphertexts) of its chunks, and ``add``, ``add_correction`` and ``chunks`` refuse or
  skip the others. ``check`` validates a chunk of any range.

The coordinator never decrypts: it holds a ``PublicContext``, which has no key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.crypto import packing as packing_mod
from accord.crypto import wire, wire_layout, wire_payload
from accord.crypto.ckks import CiphertextAccumulator, LoadedCiphertext, PublicContext
from accord.crypto.packing import PackingSpec
from accord.crypto.profile import Profile
from accord.errors import InternalError, Malformed

__all__ = ["PreparedChunk", "UpdateSum"]


@dataclass(frozen=True)
class PreparedChunk:
    """An upload chunk validated completely by ``UpdateSum.prepare``, not yet added."""

    header: wire.ChunkHeader
    content: Any


class UpdateSum:
    """The running sum of one round's uploads, fed with wire chunks."""

    def __init__(
        self,
        profile: Profile,
        element_count: int,
        *,
        modulus_bits: int,
        packing: PackingSpec | None,
        public: PublicContext | None,
        federation_id: str,
        round: int,
        target_chunk_bytes: int = wire.DEFAULT_TARGET_CHUNK_BYTES,
        max_chunk_bytes: int = wire.DEFAULT_MAX_CHUNK_BYTES,
        owned: range | None = None,
    ) -> None:
        """Start an empty sum.

        Args:
            profile: the round's protection profile.
            element_count: elements in each upload (adapter parameters plus the weight slot).
            modulus_bits: ``b`` (ignored for ``none``).
            packing: the packing spec; required exactly for the CKKS profiles.
            public: the coordinator's CKKS context; required exactly for the CKKS profiles.
            federation_id, round: every chunk must carry these.
            target_chunk_bytes: the chunk size the participants planned with.
            max_chunk_bytes: larger chunks are refused (``Oversized``).
            owned: the chunk indices (a contiguous ``range`` of the chunk plan) this sum
                holds and adds; all of them when None. ``range(0)`` holds nothing and
                only checks.

        Raises:
            UsageError: the arguments do not fit together.
        """
        wire_layout.check_settings(profile, modulus_bits, packing, public, "public context")
        self.profile = profile
        self.element_count = element_count
        self.modulus_bits = modulus_bits
        self.packing = packing
        self.federation_id = federation_id
        self.round = round
        self._public = public
        self._max_chunk_bytes = max_chunk_bytes
        self._plan = wire_layout.checked_plan(
            element_count,
            profile,
            packing,
            target_chunk_bytes,
            federation_id=federation_id,
            round=round,
            modulus_bits=modulus_bits,
        )
        self.owned = _owned_chunks(owned, len(self._plan))
        """The chunk indices this sum holds and adds."""
        self.elements = _elements(self._plan, self.owned)
        """The elements this sum holds: those of its ``owned`` chunks."""
        self._uploads = np.zeros(len(self.owned), dtype=np.int64)
        self._fields: npt.NDArray[np.uint32] | None = None
        self._floats: npt.NDArray[np.float32] | None = None
        self._sums: list[CiphertextAccumulator] = []
        self._allocate()

    def _allocate(self) -> None:
        """The zero sums of the held elements: field elements, floats or ciphertexts."""
        if self.packing is not None and self._public is not None:
            # CKKS chunks hold whole ciphertexts, so a chunk range starts on one.
            count = self.packing.ciphertext_count(len(self.elements))
            self._sums = [self._public.accumulator(self.packing) for _ in range(count)]
        elif self.profile is Profile.NONE:
            self._floats = np.zeros(len(self.elements), dtype=np.float32)
        else:
            self._fields = np.zeros(len(self.elements), dtype=np.uint32)

    @property
    def plan(self) -> list[tuple[int, int]]:
        """Every chunk's ``(element_start, element_count)``, from ``wire_layout.chunk_plan``."""
        return list(self._plan)

    @property
    def uploads(self) -> int:
        """Uploads fully added so far (the least count over the owned chunks; 0 if none)."""
        return int(self._uploads.min()) if self._uploads.size else 0

    @property
    def ciphertexts(self) -> int:
        """Ciphertext sums this sum holds (0 outside the CKKS profiles)."""
        return len(self._sums)

    def check(self, chunk: bytes) -> wire.ChunkHeader:
        """Validate one upload chunk completely, without adding it.

        Args:
            chunk: one chunk of a participant's upload.

        Returns:
            Its header.

        Raises:
            Oversized: above ``max_chunk_bytes``.
            Malformed: bad structure, version, or a header that does not fit the round,
                the packing or the chunk plan; a payload that does not decode (for CKKS:
                a ciphertext SEAL refuses, or of another scale).
            IntegrityError: the CRC does not match.
        """
        header, _ = self._prepare(chunk)
        return header

    def check_frame(self, chunk: bytes) -> wire.ChunkHeader:
        """The cheap part of ``check``: size, CRC, structure and the header's layout.

        The payload is not decoded (a coordinator whose workers hold the sum checks
        payloads there, ``prepare``). Raises as ``check``, except for payload errors.
        """
        header, _ = self._decode_frame(chunk)
        return header

    def _decode_frame(self, chunk: bytes) -> tuple[wire.ChunkHeader, bytes]:
        """Size, CRC, structure and layout of a chunk; its header and undecoded payload."""
        header, payload = wire.decode_chunk(chunk, max_bytes=self._max_chunk_bytes)
        wire_layout.require_layout(
            header,
            profile=self.profile,
            federation_id=self.federation_id,
            round=self.round,
            plan=self._plan,
            modulus_bits=self.modulus_bits,
            spec=self.packing,
            aggregate=False,
        )
        return header, payload

    def prepare(self, chunk: bytes) -> PreparedChunk:
        """Validate one upload chunk completely (as ``check``) and keep it decoded for
        ``add_prepared``; the sum is unchanged.

        Raises:
            Oversized, Malformed, IntegrityError: as ``check``.
            UsageError: the chunk is not one of the ``owned`` chunks.
        """
        header, content = self._prepare(chunk)
        if header.chunk_index not in self.owned:
            raise InternalError(
                f"chunk {header.chunk_index} is not one of this sum's chunks {self.owned!r}"
            )
        return PreparedChunk(header, content)

    def add(self, chunk: bytes) -> wire.ChunkHeader:
        """Validate one upload chunk completely, then add it to the sum.

        Returns:
            Its header.

        Raises:
            Oversized, Malformed, IntegrityError: as ``check``; the sum is unchanged.
            UsageError: a ciphertext of the sum already holds ``n_max + 1`` summands, or
                the chunk is not one of the ``owned`` chunks.
        """
        header, content = self._prepare(chunk)
        return self._add_content(header, content)

    def add_prepared(self, prepared: PreparedChunk) -> wire.ChunkHeader:
        """Add a chunk from ``prepare`` (each at most once). Raises as ``add``."""
        return self._add_content(prepared.header, prepared.content)

    def _add_content(self, header: wire.ChunkHeader, content: Any) -> wire.ChunkHeader:
        if header.chunk_index not in self.owned:
            raise InternalError(
                f"chunk {header.chunk_index} is not one of this sum's chunks {self.owned!r}"
            )
        low = header.element_start - self.elements.start
        high = header.element_stop - self.elements.start
        if self._fields is not None:
            target = self._fields[low:high]
            np.add(target, content, out=target)
            self._reduce(target)
        elif self._floats is not None:
            floats = self._floats[low:high]
            np.add(floats, content, out=floats)
        else:
            first = self._first_ciphertext(header.element_start)
            sums = self._sums[first : first + len(content)]
            self._require_room(sums, header.chunk_index)
            for total, loaded in zip(sums, content, strict=True):
                total.add(loaded)
        self._uploads[header.chunk_index - self.owned.start] += 1
        return header

    def add_correction(self, start: int, values: npt.ArrayLike) -> None:
        """Add a mask-correction vector for elements ``[start, start + len(values))``.

        For ``masks`` the values are added mod ``2^b``; for ``ckks+masks`` they are packed
        and added as plaintexts, so the range must cover whole ciphertexts (the last
        one may end at ``element_count``), e.g. one ``chunk_plan`` chunk, and lie within
        the sum's ``elements``.

        Args:
            start: first element covered.
            values: 1-D integer array, every value in ``[0, 2^b)``.

        Raises:
            UsageError: the profile has no masks, the range or values are invalid, a
                covered ciphertext has no upload yet or no room for another summand.
        """
        if not self.profile.uses_masks:
            raise InternalError(f"profile {self.profile} has no masks to correct")
        array = np.asarray(values)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise InternalError("add_correction: values must be a 1-D integer array")
        stop = int(start) + array.size
        held = self.elements
        if not held.start <= start < stop <= held.stop:
            raise InternalError(
                f"add_correction: elements [{start}, {stop}) are not inside "
                f"[{held.start}, {held.stop})"
            )
        if int(array.min()) < 0 or int(array.max()) >> self.modulus_bits:
            raise InternalError(f"add_correction: values must lie in [0, 2^{self.modulus_bits})")
        if self._fields is not None:
            target = self._fields[start - held.start : stop - held.start]
            np.add(target, array.astype(np.uint32), out=target)
            self._reduce(target)
            return
        spec = self._spec()
        per = spec.elements_per_ciphertext
        if start % per or (stop % per and stop != self.element_count):
            raise InternalError(
                f"add_correction: elements [{start}, {stop}) do not cover whole ciphertexts "
                f"of {per} elements"
            )
        first = self._first_ciphertext(start)
        sums = self._sums[first : first + spec.ciphertext_count(stop - start)]
        if any(total.is_empty for total in sums):
            raise InternalError("add_correction: no upload covers these elements yet")
        self._require_room(sums, None)
        reals = [
            packing_mod.pack(array[offset : offset + per], spec)
            for offset in range(0, array.size, per)
        ]
        for total, vector in zip(sums, reals, strict=True):
            total.add_plain(vector, spec)

    def chunks(self) -> Iterator[bytes]:
        """The aggregate in wire format (``FLAG_AGGREGATE`` set), one chunk at a time.

        Raises:
            UsageError: no upload has been added, or the chunks summed different
                numbers of uploads (an upload was only partly added), or the sum owns
                no chunks.
        """
        if not self.owned:
            raise InternalError("the sum owns no chunks, so it has no aggregate to emit")
        counts = sorted(set(self._uploads.tolist()))
        if len(counts) != 1:
            raise InternalError(
                f"the aggregate is incomplete: chunks summed different numbers of uploads {counts}"
            )
        if counts == [0]:
            raise InternalError("the aggregate is empty: no upload has been added")
        return self._emit()

    def _emit(self) -> Iterator[bytes]:
        for index in self.owned:
            start, count = self._plan[index]
            low, high = start - self.elements.start, start + count - self.elements.start
            if self._fields is not None:
                payload = wire_payload.encode_field_payload(
                    self._fields[low:high], self.modulus_bits
                )
            elif self._floats is not None:
                payload = wire_payload.encode_float_payload(self._floats[low:high])
            else:
                first = self._first_ciphertext(start)
                count_ct = self._spec().ciphertext_count(count)
                payload = wire_payload.encode_ciphertext_payload(
                    [total.to_bytes() for total in self._sums[first : first + count_ct]]
                )
            header = wire_layout.layout_header(
                profile=self.profile,
                federation_id=self.federation_id,
                round=self.round,
                plan=self._plan,
                chunk_index=index,
                modulus_bits=self.modulus_bits,
                spec=self.packing,
                payload_len=len(payload),
                aggregate=True,
            )
            yield wire.encode_chunk(header, payload)

    def _prepare(self, chunk: bytes) -> tuple[wire.ChunkHeader, Any]:
        """Decode and validate a chunk completely; return its header and decoded payload."""
        header, payload = self._decode_frame(chunk)
        index, count = header.chunk_index, header.element_count
        if self.profile is Profile.NONE:
            return header, wire_payload.decode_float_payload(payload, count, chunk_index=index)
        if not self.profile.uses_ckks:
            fields = wire_payload.decode_field_payload(
                payload, self.modulus_bits, count, chunk_index=index
            )
            return header, fields
        spec = self._spec()
        blobs = wire_payload.decode_ciphertext_payload(
            payload, spec.ciphertext_count(count), chunk_index=index
        )
        assert self._public is not None  # guarded in __init__
        loaded: list[LoadedCiphertext] = []
        for number, blob in enumerate(blobs):
            try:
                loaded.append(self._public.load(blob, spec))
            except Malformed as err:
                raise Malformed(f"chunk {index}: ciphertext {number}: {err}") from err
        return header, loaded

    def _spec(self) -> PackingSpec:
        if self.packing is None:
            raise InternalError("no packing spec")  # pragma: no cover - guarded in __init__
        return self.packing

    def _first_ciphertext(self, start: int) -> int:
        """Index in ``_sums`` of the ciphertext that begins at element ``start``."""
        return (start - self.elements.start) // self._spec().elements_per_ciphertext

    def _require_room(self, sums: list[CiphertextAccumulator], index: int | None) -> None:
        limit = self._spec().max_summands
        if any(total.summands >= limit for total in sums):
            where = f"chunk {index}: " if index is not None else ""
            raise InternalError(
                f"{where}the sum already holds {limit} summands (n_max + 1); "
                "more would overflow the packed fields"
            )

    def _reduce(self, target: npt.NDArray[np.uint32]) -> None:
        if self.modulus_bits < 32:
            np.bitwise_and(target, np.uint32((1 << self.modulus_bits) - 1), out=target)


def _elements(plan: list[tuple[int, int]], owned: range) -> range:
    """The elements covered by chunks ``owned`` of ``plan`` (contiguous, as the plan is)."""
    if not owned:
        return range(0)
    last_start, last_count = plan[owned.stop - 1]
    return range(plan[owned.start][0], last_start + last_count)


def _owned_chunks(owned: range | None, chunk_count: int) -> range:
    """The chunk indices a sum holds: ``owned``, or every chunk of the plan when None.

    Raises:
        InternalError: ``owned`` is not a contiguous range within the plan.
    """
    owned = range(chunk_count) if owned is None else owned
    if owned.step != 1 or not 0 <= owned.start <= owned.stop <= chunk_count:
        raise InternalError(
            f"owned = {owned!r}: must be a contiguous range within the "
            f"{chunk_count} chunks of the plan"
        )
    return owned
