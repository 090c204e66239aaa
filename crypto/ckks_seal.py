"""SEAL plumbing under ``ckks``: Accord's CKKS parameters, blob checks, scratch files.

Every serialized SEAL object is checked before SEAL parses it: the SEAL header must
announce the exact length, and a zstd frame must regenerate at most a small multiple
of a ciphertext's size (so a decompression bomb is refused before it inflates).

TenSEAL serializes only through file paths. Every save and load goes through one
private directory (mode 0700, under ``/dev/shm`` when present, per process), each
file is removed as soon as it has been read, and the directory is removed at exit.
That is the only I/O of ``ckks``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal.sealapi as sealapi

from accord.crypto.packing import COEFF_MODULUS_BITS, PackingSpec
from accord.errors import InternalError, Malformed

__all__ = ["MAX_BLOB_SLACK", "SCRATCH", "SEAL_ERRORS", "Parameters", "check_seal_blob"]

_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compr, reserved, size
_SEAL_MAGIC = 0xA15E
_SEAL_MAJOR = 4
_COMPR_NONE = 0
_COMPR_ZSTD = 2
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_MAX_BLOCK = 128 * 1024
MAX_BLOB_SLACK = 128 * 1024
"""Room above a two-polynomial ciphertext (or key) that a SEAL blob may regenerate to."""

_MAX_PARAMS_BLOB = 4096
"""Serialized encryption parameters are about 70 bytes."""

SEAL_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, OverflowError)
"""What pybind11 turns SEAL's C++ exceptions into."""


# ---------------------------------------------------------------------------
# Private scratch files (sealapi saves and loads through paths only).


class _Scratch:
    """One private directory per process for sealapi's path-only save and load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._pid = -1
        self._names = itertools.count()

    def _directory(self) -> str:
        directory = self._dir
        if directory is not None and self._pid == os.getpid():
            return directory
        with self._lock:
            if self._dir is None or self._pid != os.getpid():
                base = "/dev/shm" if os.path.isdir("/dev/shm") else None
                self._dir = tempfile.mkdtemp(prefix="accord-seal-", dir=base)
                self._pid = os.getpid()
            return self._dir

    def _path(self) -> str:
        return os.path.join(self._directory(), f"{os.getpid()}-{next(self._names)}")

    def save(self, saver: Callable[[str], None]) -> bytes:
        path = self._path()
        try:
            saver(path)
            with open(path, "rb") as handle:
                return handle.read()
        finally:
            _unlink(path)

    def load(self, loader: Callable[[str], None], data: bytes) -> None:
        path = self._path()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            loader(path)
        finally:
            _unlink(path)

    def cleanup(self) -> None:
        with self._lock:
            if self._dir is not None and self._pid == os.getpid():
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


SCRATCH = _Scratch()
atexit.register(SCRATCH.cleanup)


# ---------------------------------------------------------------------------
# Parameters shared by both sides.


@dataclass(frozen=True)
class Parameters:
    """CKKS parameters and the key-free SEAL objects built from them."""

    poly_modulus_degree: int
    parms: Any  # sealapi.EncryptionParameters
    context: Any  # sealapi.SEALContext
    encoder: Any  # sealapi.CKKSEncoder
    evaluator: Any  # sealapi.Evaluator
    data_parms_id: tuple[int, ...]

    @classmethod
    def create(cls, poly_modulus_degree: int) -> Parameters:
        if poly_modulus_degree not in COEFF_MODULUS_BITS:
            choices = ", ".join(str(n) for n in COEFF_MODULUS_BITS)
            raise InternalError(f"poly_modulus_degree = {poly_modulus_degree!r}: must be {choices}")
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(poly_modulus_degree)
        parms.set_coeff_modulus(
            sealapi.CoeffModulus.Create(
                poly_modulus_degree, list(COEFF_MODULUS_BITS[poly_modulus_degree])
            )
        )
        return cls._from_parms(poly_modulus_degree, parms)

    @classmethod
    def _from_parms(cls, poly_modulus_degree: int, parms: Any) -> Parameters:
        context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        if not context.parameters_set():
            raise Malformed("the CKKS parameters are not valid at 128-bit security")
        return cls(
            poly_modulus_degree=poly_modulus_degree,
            parms=parms,
            context=context,
            encoder=sealapi.CKKSEncoder(context),
            evaluator=sealapi.Evaluator(context),
            data_parms_id=tuple(context.first_parms_id()),
        )

    @classmethod
    def from_bytes(cls, poly_modulus_degree: int, blob: bytes) -> Parameters:
        """Load parameters and insist they are exactly Accord's for this ring degree."""
        if poly_modulus_degree not in COEFF_MODULUS_BITS:
            raise Malformed(f"CKKS context: unknown ring degree {poly_modulus_degree}")
        expected = cls.create(poly_modulus_degree)
        check_seal_blob(blob, _MAX_PARAMS_BLOB, "CKKS parameters")
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        try:
            SCRATCH.load(parms.load, blob)
        except SEAL_ERRORS as err:
            raise Malformed("CKKS parameters do not decode") from err
        if (
            parms.scheme() != sealapi.SCHEME_TYPE.CKKS
            or parms.poly_modulus_degree() != poly_modulus_degree
            or _moduli(parms) != _moduli(expected.parms)
        ):
            raise Malformed("CKKS parameters are not Accord's parameters")
        return expected

    def to_bytes(self) -> bytes:
        return SCRATCH.save(self.parms.save)

    @property
    def data_level_size(self) -> int:
        return len(COEFF_MODULUS_BITS[self.poly_modulus_degree]) - 1

    @property
    def max_ciphertext_blob(self) -> int:
        """Bytes a serialized two-polynomial data-level ciphertext may regenerate to."""
        return 2 * 8 * self.poly_modulus_degree * self.data_level_size + MAX_BLOB_SLACK

    def check_spec(self, spec: PackingSpec) -> None:
        if spec.poly_modulus_degree != self.poly_modulus_degree:
            raise InternalError(
                f"packing is for N = {spec.poly_modulus_degree}, the context for "
                f"N = {self.poly_modulus_degree}"
            )

    def encode(self, reals: npt.ArrayLike, spec: PackingSpec) -> Any:
        """Encode ``N`` packed reals as a plaintext at the data level and scale ``2^S``."""
        self.check_spec(spec)
        data = np.asarray(reals, dtype=np.float64)
        if data.shape != (spec.reals_per_ciphertext,):
            raise InternalError(
                f"expected {spec.reals_per_ciphertext} reals, got shape {data.shape}"
            )
        # The noise analysis in packing holds only for payloads in [0, 2^(k*w)).
        if not np.isfinite(data).all() or data.min() < 0 or data.max() >= 2.0**spec.payload_bits:
            raise InternalError(f"reals must be finite and in [0, 2^{spec.payload_bits})")
        half = spec.reals_per_ciphertext // 2
        slots = data[:half] + 1j * data[half:]
        plain = sealapi.Plaintext()
        self.encoder.encode(slots.tolist(), spec.scale, plain)
        return plain

    def load_ciphertext(self, data: bytes, spec: PackingSpec | None, what: str) -> Any:
        """Parse and validate one serialized ciphertext (Malformed when it is not one of ours)."""
        if spec is not None:
            self.check_spec(spec)
        check_seal_blob(data, self.max_ciphertext_blob, what)
        ciphertext = sealapi.Ciphertext(self.context)
        try:
            SCRATCH.load(lambda path: ciphertext.load(self.context, path), data)
        except SEAL_ERRORS as err:
            raise Malformed(f"{what} does not decode") from err
        if (
            ciphertext.size() != 2
            or not ciphertext.is_ntt_form()
            or tuple(ciphertext.parms_id()) != self.data_parms_id
            or ciphertext.poly_modulus_degree() != self.poly_modulus_degree
            or ciphertext.coeff_modulus_size() != self.data_level_size
            or (spec is not None and ciphertext.scale != spec.scale)
        ):
            raise Malformed(f"{what} does not fit the CKKS parameters or the packing")
        return ciphertext


def _moduli(parms: Any) -> list[int]:
    return [int(modulus.value()) for modulus in parms.coeff_modulus()]


def check_seal_blob(data: bytes, max_regenerated: int, what: str) -> None:
    """Refuse a SEAL blob whose header lies about its length or that would inflate too far."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InternalError(f"{what}: expected bytes")
    view = memoryview(data)
    if len(view) < _SEAL_HEADER.size:
        raise Malformed(f"{what} is truncated")
    magic, header_size, major, _minor, compr, reserved, size = _SEAL_HEADER.unpack_from(view)
    if (
        magic != _SEAL_MAGIC
        or header_size != _SEAL_HEADER.size
        or major != _SEAL_MAJOR
        or reserved != 0
        or size != len(view)
    ):
        raise Malformed(f"{what} has no valid SEAL header")
    body = view[_SEAL_HEADER.size :]
    if compr == _COMPR_NONE:
        regenerated = len(body)
    elif compr == _COMPR_ZSTD:
        regenerated = _zstd_regenerated_bound(body, what)
    else:
        raise Malformed(f"{what} uses an unsupported compression")
    if regenerated > max_regenerated:
        raise Malformed(f"{what} would inflate beyond its size limit")


def _zstd_regenerated_bound(frame: memoryview, what: str) -> int:
    """Upper bound on the bytes one zstd frame decompresses to (RFC 8878, section 3.1.1)."""
    end = len(frame)
    if end < 6 or int.from_bytes(frame[:4], "little") != _ZSTD_MAGIC:
        raise Malformed(f"{what} has no valid zstd frame")
    descriptor = frame[4]
    fcs_flag = descriptor >> 6
    single_segment = (descriptor >> 5) & 1
    if descriptor & 0x08:
        raise Malformed(f"{what} has no valid zstd frame")
    checksum = (descriptor >> 2) & 1
    position = 5
    window = 0
    if not single_segment:
        exponent, mantissa = frame[5] >> 3, frame[5] & 7
        window = (1 << (10 + exponent)) + ((1 << (10 + exponent)) >> 3) * mantissa
        position += 1
    position += (0, 1, 2, 4)[descriptor & 0x03]
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if position + fcs_size > end:
        raise Malformed(f"{what} has a truncated zstd frame")
    if single_segment:
        # Without a window descriptor the window is the frame content size.
        window = int.from_bytes(frame[position : position + fcs_size], "little")
        window += 256 if fcs_size == 2 else 0
    position += fcs_size
    block_limit = min(window, _ZSTD_MAX_BLOCK)
    total = 0
    while True:
        if position + 3 > end:
            raise Malformed(f"{what} has a truncated zstd frame")
        header = int.from_bytes(frame[position : position + 3], "little")
        position += 3
        last, block_type, block_size = header & 1, (header >> 1) & 3, header >> 3
        if block_type == 0:  # raw
            total += block_size
            position += block_size
        elif block_type == 1:  # run length: one byte repeated block_size times
            total += block_size
            position += 1
        elif block_type == 2:  # compressed: regenerates at most min(window, 128 KiB)
            total += block_limit
            position += block_size
        else:
            raise Malformed(f"{what} has a reserved zstd block")
        if position > end:
            raise Malformed(f"{what} has a truncated zstd frame")
        if last:
            break
    if position + 4 * checksum != end:
        raise Malformed(f"{what} has trailing bytes after its zstd frame")
    return total
