"""The participant's side of an update: protect it chunk by chunk, reveal the aggregate.

Theory of operation (DESIGN.md section 2; docs/protocol.md). ``protect`` walks the
``wire_layout.chunk_plan`` of the quantized update and, for each chunk only:

1. adds the pairwise and self masks mod ``2^b`` (``masks.apply``; Bonawitz et al.
   2017, SecAgg+ of Bell et al. 2020) when the profile masks;
2. packs ``k`` elements per real and encrypts each ciphertext's worth
   (``packing.pack``, ``SecretContext.encrypt``; BatchCrypt of Zhang et al. 2020 over
   CKKS of Cheon et al. 2017) when the profile encrypts;
3. frames the result as one wire chunk.

So the only buffers besides the caller's vector are chunk-sized, and a caller can
stream the chunks to the coordinator as they come. ``reveal`` reverses step 2 on the
coordinator's aggregate: it decrypts each ciphertext and keeps only exact integers
(``SecretContext.decrypt_packed``, after Li and Micciancio 2021), giving field sums
mod ``2^b``; dequantizing is the caller's next step.

Both walk chunks through a ``ChunkRunner``: ``SERIAL`` (the default) runs each chunk's
work in the calling thread; the participant passes its process pool
(``accord.participant.workers``), which runs ``protect_chunk`` and ``reveal_chunk`` on
its cores, a bounded window ahead of the caller (chunk ``k + 1`` is encrypted while the
caller streams chunk ``k``; the aggregate is decrypted while it streams in). A chunk's
bytes depend on its job alone, so the output is byte-identical with any runner, in
chunk order; an error is raised as the same class, naming the chunk.

Invariants: ``reveal(sum of protect(x_u)) == sum(x_u) mod 2^b`` for the secure
profiles whenever the masks cancel (with the coordinator's correction); arguments
are validated before the first chunk is produced, so a wrong call yields nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from accord.crypto import masks, wire, wire_layout, wire_payload
from accord.crypto.ckks import SecretContext
from accord.crypto.packing import PackingSpec, pack
from accord.crypto.profile import Profile
from accord.errors import AccordError, IntegrityError, InternalError, Malformed

__all__ = [
    "SERIAL",
    "ChunkRunner",
    "ProtectJob",
    "RevealJob",
    "protect",
    "protect_chunk",
    "reveal",
    "reveal_chunk",
]

_J = TypeVar("_J")
_R = TypeVar("_R")


class ChunkRunner(Protocol):
    """Runs one function over chunk jobs and yields the results in job order."""

    def map(
        self,
        fn: Callable[[SecretContext | None, _J], _R],
        jobs: Iterable[_J],
        secret: SecretContext | None,
    ) -> Iterator[_R]:
        """``fn(secret, job)`` for each job, lazily, in order; ``fn``'s errors propagate."""
        ...


class _Serial:
    """The in-thread runner: one chunk after the other, nothing ahead."""

    def map(
        self,
        fn: Callable[[SecretContext | None, _J], _R],
        jobs: Iterable[_J],
        secret: SecretContext | None,
    ) -> Iterator[_R]:
        return (fn(secret, job) for job in jobs)


SERIAL: ChunkRunner = _Serial()
"""Runs each chunk in the calling thread (``protect`` and ``reveal``'s default)."""


@dataclass(frozen=True)
class ProtectJob:
    """One chunk of ``protect``: its elements and everything its header needs (picklable)."""

    index: int
    piece: npt.NDArray[np.generic]
    start: int
    profile: Profile
    federation_id: str
    round: int
    terms: tuple[masks.MaskTerm, ...]
    modulus_bits: int
    packing: PackingSpec | None
    plan: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class RevealJob:
    """One ciphertext chunk of ``reveal``: its checked payload and place (picklable)."""

    index: int
    payload: bytes
    start: int
    count: int
    packing: PackingSpec


def protect(
    values: npt.ArrayLike,
    *,
    profile: Profile,
    federation_id: str,
    round: int,
    mask_terms: Sequence[masks.MaskTerm],
    modulus_bits: int,
    packing: PackingSpec | None,
    secret: SecretContext | None,
    target_chunk_bytes: int = wire.DEFAULT_TARGET_CHUNK_BYTES,
    runner: ChunkRunner = SERIAL,
) -> Iterator[bytes]:
    """Mask, pack, encrypt and frame an update, one wire chunk at a time.

    Args:
        values: 1-D array; for the secure profiles unsigned integers in ``[0, 2^b)``
            (``quantize.encode`` output, uint32), for ``none`` finite floats (float32).
        profile: the round's protection profile.
        federation_id, round: written into every chunk header.
        mask_terms: this participant's masks (``ParticipantRound.mask_terms()``); must be
            empty for profiles without masks.
        modulus_bits: ``b``.
        packing: the packing spec; required exactly for the CKKS profiles.
        secret: the CKKS secret context; required exactly for the CKKS profiles.
        target_chunk_bytes: chunk size; the coordinator must use the same.
        runner: where each chunk's work runs (``SERIAL``, or the participant's pool).

    Returns:
        An iterator over the chunks (bytes), in chunk order; with a pool, a bounded
        window of chunks is computed ahead of the consumer.

    Raises:
        UsageError: the arguments do not fit the profile, or a value is out of range.
            Raised by this call, before any chunk is produced.
    """
    array = np.asarray(values)
    terms = tuple(mask_terms)
    _check_update(array, terms, profile, modulus_bits, packing, secret)
    jobs = _protect_jobs(
        array,
        terms,
        profile=profile,
        federation_id=federation_id,
        round=round,
        modulus_bits=modulus_bits,
        packing=packing,
        target_chunk_bytes=target_chunk_bytes,
    )
    return runner.map(protect_chunk, jobs, secret)


def _check_update(
    array: npt.NDArray[np.generic],
    terms: tuple[masks.MaskTerm, ...],
    profile: Profile,
    modulus_bits: int,
    packing: PackingSpec | None,
    secret: SecretContext | None,
) -> None:
    """Raise unless ``protect``'s values and mask terms fit the profile and its settings."""
    if array.ndim != 1 or array.size < 1:
        raise InternalError("protect: values must be a non-empty 1-D array")
    wire_layout.check_settings(profile, modulus_bits, packing, secret, "secret context")
    if profile is Profile.NONE:
        if not np.issubdtype(array.dtype, np.floating):
            raise InternalError("protect: profile none takes float values")
        # min and max propagate NaN and infinities without a full-size temporary.
        if not (np.isfinite(array.min()) and np.isfinite(array.max())):
            raise InternalError("protect: values hold a NaN or an infinity")
    else:
        if not np.issubdtype(array.dtype, np.integer):
            raise InternalError("protect: secure profiles take integer field elements (uint32)")
        if int(array.min()) < 0 or int(array.max()) >> modulus_bits:
            raise InternalError(f"protect: values must lie in [0, 2^{modulus_bits})")
    if terms and not profile.uses_masks:
        raise InternalError(f"protect: profile {profile} takes no mask terms")


def _protect_jobs(
    array: npt.NDArray[np.generic],
    terms: tuple[masks.MaskTerm, ...],
    *,
    profile: Profile,
    federation_id: str,
    round: int,
    modulus_bits: int,
    packing: PackingSpec | None,
    target_chunk_bytes: int,
) -> Iterator[ProtectJob]:
    """Plan the chunks and check the header settings now; the jobs themselves come lazily."""
    plan = wire_layout.checked_plan(
        array.size,
        profile,
        packing,
        target_chunk_bytes,
        federation_id=federation_id,
        round=round,
        modulus_bits=modulus_bits,
    )
    frozen_plan = tuple(plan)
    return (
        ProtectJob(
            index=index,
            piece=array[start : start + count],
            start=start,
            profile=profile,
            federation_id=federation_id,
            round=round,
            terms=terms,
            modulus_bits=modulus_bits,
            packing=packing,
            plan=frozen_plan,
        )
        for index, (start, count) in enumerate(plan)
    )


def protect_chunk(secret: SecretContext | None, job: ProtectJob) -> bytes:
    """Mask, pack, encrypt and frame one chunk (``protect``'s per-chunk step).

    Raises:
        AccordError: as raised by masking or encryption, same class, naming the chunk.
    """
    try:
        return _protect_chunk(secret, job)
    except AccordError as err:
        raise type(err)(f"chunk {job.index}: {err}") from err


def _protect_chunk(secret: SecretContext | None, job: ProtectJob) -> bytes:
    piece, count, packing = job.piece, job.piece.size, job.packing
    if job.profile.uses_masks:
        piece = masks.apply(piece, job.start, list(job.terms), job.modulus_bits)
    if packing is not None and secret is not None:
        per = packing.elements_per_ciphertext
        payload = wire_payload.encode_ciphertext_payload(
            [
                secret.encrypt(pack(piece[offset : offset + per], packing), packing)
                for offset in range(0, count, per)
            ]
        )
    elif job.profile is Profile.NONE:
        payload = wire_payload.encode_float_payload(piece)
    else:
        payload = wire_payload.encode_field_payload(piece, job.modulus_bits)
    header = wire_layout.layout_header(
        profile=job.profile,
        federation_id=job.federation_id,
        round=job.round,
        plan=job.plan,
        chunk_index=job.index,
        modulus_bits=job.modulus_bits,
        spec=packing,
        payload_len=len(payload),
    )
    return wire.encode_chunk(header, payload)


def reveal(
    chunks: Iterable[bytes],
    *,
    profile: Profile,
    element_count: int,
    modulus_bits: int,
    packing: PackingSpec | None,
    secret: SecretContext | None,
    federation_id: str | None = None,
    round: int | None = None,
    target_chunk_bytes: int = wire.DEFAULT_TARGET_CHUNK_BYTES,
    max_chunk_bytes: int = wire.DEFAULT_MAX_CHUNK_BYTES,
    runner: ChunkRunner = SERIAL,
) -> npt.NDArray[np.uint32] | npt.NDArray[np.float32]:
    """Decode the coordinator's aggregate into field sums (or float sums for ``none``).

    Args:
        chunks: the aggregate's chunks (``UpdateSum.chunks()``), in any order.
        profile, element_count, modulus_bits, packing, secret: as for ``protect``.
        federation_id, round: when given, every chunk must carry them (recommended).
        target_chunk_bytes: the chunk size the update was planned with.
        max_chunk_bytes: larger chunks are refused.
        runner: where each chunk's decryption runs; headers are checked here, in order
            of arrival, so a pool decrypts while the rest of the aggregate streams in.

    Returns:
        uint32 array of shape ``(element_count,)`` with the sums mod ``2^b``, or a
        float32 array for ``none``.

    Raises:
        Oversized, Malformed, IntegrityError: a chunk is refused (see
            ``wire.decode_chunk``); Malformed also for a chunk that is not part of this
            aggregate, repeated or missing.
        IntegrityError: a ciphertext does not decrypt to exact packed integers; the
            message names the chunk and the ciphertext.
        UsageError: the arguments do not fit the profile.
    """
    wire_layout.check_settings(profile, modulus_bits, packing, secret, "secret context")
    plan = wire_layout.chunk_plan(element_count, profile, packing, target_chunk_bytes)
    out = _zeros(profile, element_count)
    seen = np.zeros(len(plan), dtype=bool)
    jobs = _reveal_jobs(
        chunks,
        out,
        seen,
        profile=profile,
        federation_id=federation_id,
        round=round,
        plan=plan,
        modulus_bits=modulus_bits,
        packing=packing,
        secret=secret,
        max_chunk_bytes=max_chunk_bytes,
    )
    for start, values in runner.map(reveal_chunk, jobs, secret):
        out[start : start + values.size] = values
    _require_every_chunk(seen)
    return out


def _zeros(profile: Profile, count: int) -> npt.NDArray[np.uint32] | npt.NDArray[np.float32]:
    """The aggregate before any chunk: float32 sums for ``none``, else field sums (uint32)."""
    if profile is Profile.NONE:
        return np.zeros(count, dtype=np.float32)
    return np.zeros(count, dtype=np.uint32)


def _reveal_jobs(
    chunks: Iterable[bytes],
    out: npt.NDArray[np.uint32] | npt.NDArray[np.float32],
    seen: npt.NDArray[np.bool_],
    *,
    profile: Profile,
    federation_id: str | None,
    round: int | None,
    plan: Sequence[tuple[int, int]],
    modulus_bits: int,
    packing: PackingSpec | None,
    secret: SecretContext | None,
    max_chunk_bytes: int,
) -> Iterator[RevealJob]:
    """Check each chunk's header as it arrives, in order, and mark it ``seen``.

    A plaintext chunk is written into ``out`` at once; a ciphertext chunk is yielded
    as a job for ``reveal_chunk``, so a pool decrypts while the rest streams in.
    """
    for chunk in chunks:
        header, payload = wire.decode_chunk(chunk, max_bytes=max_chunk_bytes)
        wire_layout.require_layout(
            header,
            profile=profile,
            federation_id=federation_id,
            round=round,
            plan=plan,
            modulus_bits=modulus_bits,
            spec=packing,
            aggregate=True,
        )
        index, start, count = header.chunk_index, header.element_start, header.element_count
        if seen[index]:
            raise Malformed(f"chunk {index}: received twice")
        seen[index] = True
        if profile is Profile.NONE:
            out[start : start + count] = wire_payload.decode_float_payload(
                payload, count, chunk_index=index
            )
        elif packing is None or secret is None:
            out[start : start + count] = wire_payload.decode_field_payload(
                payload, modulus_bits, count, chunk_index=index
            )
        else:
            yield RevealJob(index, bytes(payload), start, count, packing)


def _require_every_chunk(seen: npt.NDArray[np.bool_]) -> None:
    """Raise ``Malformed`` naming the first chunk of the aggregate that never arrived."""
    if not seen.all():
        missing = int(np.flatnonzero(~seen)[0])
        raise Malformed(f"chunk {missing}: missing from the aggregate")


def reveal_chunk(
    secret: SecretContext | None, job: RevealJob
) -> tuple[int, npt.NDArray[np.uint32]]:
    """Decrypt one aggregate chunk's ciphertexts: ``(element_start, field sums)``.

    Raises:
        Malformed, IntegrityError: a ciphertext is refused; the message names the chunk
            and the ciphertext.
        UsageError: no secret context.
    """
    if secret is None:
        raise InternalError(f"chunk {job.index}: decrypting needs the secret context")
    packing = job.packing
    per = packing.elements_per_ciphertext
    blobs = wire_payload.decode_ciphertext_payload(
        job.payload, packing.ciphertext_count(job.count), chunk_index=job.index
    )
    values = np.empty(job.count, dtype=np.uint32)
    for number, blob in enumerate(blobs):
        offset = number * per
        width = min(per, job.count - offset)
        try:
            values[offset : offset + width] = secret.decrypt_packed(blob, packing, width)
        except Malformed as err:
            raise Malformed(f"chunk {job.index}: ciphertext {number}: {err}") from err
        except IntegrityError as err:
            raise IntegrityError(f"chunk {job.index}: ciphertext {number}: {err}") from err
    return job.start, values
