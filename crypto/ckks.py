"""Packed CKKS over TenSEAL's ``sealapi``: encrypt on participants, add on the coordinator.

Theory of operation. CKKS (Cheon, Kim, Kim and Song, ASIACRYPT 2017) encrypts a
vector of ``N/2`` complex numbers scaled by ``2^S`` as an RLWE ciphertext; adding two
ciphertexts adds the vectors. We use it only as an additively homomorphic
container for the exact integers that ``packing`` lays out (BatchCrypt, Zhang et al.
2020), with one 60-bit data prime at ``N = 4096`` (docs/protocol.md).

- Participants share the secret key and encrypt *symmetrically*; SEAL then saves
  ``c1`` as a PRNG seed, so a ciphertext is about ``8 * N`` bytes, ``8/k`` bytes per
  element (``encrypt``).
- The coordinator holds a ``PublicContext``: the encryption parameters and nothing
  else. No secret key, public key or evaluation key exists in it or in its bytes, so
  it can add ciphertexts and packed plaintext corrections but never decrypt.
- ``SecretContext.decrypt_packed`` is the only way back: it decrypts, decodes and
  hands the reals to ``packing.unpack``, which returns exact integers or raises.
  No method returns a float decryption (Li and Micciancio, EUROCRYPT 2021: CKKS
  float decryptions published next to their ciphertexts reveal the secret key).

Every serialized SEAL object is checked before SEAL parses it: the SEAL header must
announce the exact length, and a zstd frame must regenerate at most a small multiple
of a ciphertext's size (so a decompression bomb is refused before it inflates).
Loaded ciphertexts must have two polynomials at the data level in NTT form and the
scale of the packing spec.

TenSEAL serializes only through file paths. Every save and load goes through one
private directory (mode 0700, under ``/dev/shm`` when present, per process), each
file is removed as soon as it has been read, and the directory is removed at exit.
That is the module's only I/O. Formats: ``to_bytes`` output starts with a version byte
and a kind byte (secret or public), so one can never be loaded as the other.
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

from accord.crypto import packing
from accord.crypto.packing import COEFF_MODULUS_BITS, PackingSpec
from accord.errors import IntegrityError, InternalError, Malformed

__all__ = [
    "FORMAT_VERSION",
    "CiphertextAccumulator",
    "LoadedCiphertext",
    "PublicContext",
    "SecretContext",
]

FORMAT_VERSION = 1
"""Version byte of ``SecretContext.to_bytes`` and ``PublicContext.to_bytes``."""

_KIND_SECRET = 1
_KIND_PUBLIC = 2
_CONTEXT_HEADER = struct.Struct("<BBI")  # version, kind, poly_modulus_degree
_LENGTH = struct.Struct("<I")

_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compr, reserved, size
_SEAL_MAGIC = 0xA15E
_SEAL_MAJOR = 4
_COMPR_NONE = 0
_COMPR_ZSTD = 2
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_MAX_BLOCK = 128 * 1024
_MAX_BLOB_SLACK = 128 * 1024
"""Room above a two-polynomial ciphertext (or key) that a SEAL blob may regenerate to."""

_MAX_PARAMS_BLOB = 4096
"""Serialized encryption parameters are about 70 bytes."""

_SEAL_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, OverflowError)
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


_SCRATCH = _Scratch()
atexit.register(_SCRATCH.cleanup)


# ---------------------------------------------------------------------------
# Parameters shared by both sides.


@dataclass(frozen=True)
class _Parameters:
    """CKKS parameters and the key-free SEAL objects built from them."""

    poly_modulus_degree: int
    parms: Any  # sealapi.EncryptionParameters
    context: Any  # sealapi.SEALContext
    encoder: Any  # sealapi.CKKSEncoder
    evaluator: Any  # sealapi.Evaluator
    data_parms_id: tuple[int, ...]

    @classmethod
    def create(cls, poly_modulus_degree: int) -> _Parameters:
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
    def _from_parms(cls, poly_modulus_degree: int, parms: Any) -> _Parameters:
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
    def from_bytes(cls, poly_modulus_degree: int, blob: bytes) -> _Parameters:
        """Load parameters and insist they are exactly Accord's for this ring degree."""
        if poly_modulus_degree not in COEFF_MODULUS_BITS:
            raise Malformed(f"CKKS context: unknown ring degree {poly_modulus_degree}")
        expected = cls.create(poly_modulus_degree)
        _check_seal_blob(blob, _MAX_PARAMS_BLOB, "CKKS parameters")
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        try:
            _SCRATCH.load(parms.load, blob)
        except _SEAL_ERRORS as err:
            raise Malformed("CKKS parameters do not decode") from err
        if (
            parms.scheme() != sealapi.SCHEME_TYPE.CKKS
            or parms.poly_modulus_degree() != poly_modulus_degree
            or _moduli(parms) != _moduli(expected.parms)
        ):
            raise Malformed("CKKS parameters are not Accord's parameters")
        return expected

    def to_bytes(self) -> bytes:
        return _SCRATCH.save(self.parms.save)

    @property
    def data_level_size(self) -> int:
        return len(COEFF_MODULUS_BITS[self.poly_modulus_degree]) - 1

    @property
    def max_ciphertext_blob(self) -> int:
        """Bytes a serialized two-polynomial data-level ciphertext may regenerate to."""
        return 2 * 8 * self.poly_modulus_degree * self.data_level_size + _MAX_BLOB_SLACK

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
        _check_seal_blob(data, self.max_ciphertext_blob, what)
        ciphertext = sealapi.Ciphertext(self.context)
        try:
            _SCRATCH.load(lambda path: ciphertext.load(self.context, path), data)
        except _SEAL_ERRORS as err:
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


def _check_seal_blob(data: bytes, max_regenerated: int, what: str) -> None:
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


def _split_blobs(data: bytes, what: str, count: int) -> list[bytes]:
    view = memoryview(data)
    blobs: list[bytes] = []
    position = _CONTEXT_HEADER.size
    for _ in range(count):
        if position + _LENGTH.size > len(view):
            raise Malformed(f"{what} is truncated")
        (length,) = _LENGTH.unpack_from(view, position)
        position += _LENGTH.size
        if position + length > len(view):
            raise Malformed(f"{what} is truncated")
        blobs.append(bytes(view[position : position + length]))
        position += length
    if position != len(view):
        raise Malformed(f"{what} has trailing bytes")
    return blobs


def _read_header(data: bytes, kind: int, what: str) -> int:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InternalError(f"{what}: expected bytes")
    if len(data) < _CONTEXT_HEADER.size:
        raise Malformed(f"{what} is truncated")
    version, found_kind, degree = _CONTEXT_HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise Malformed(f"{what} has format version {version}, expected {FORMAT_VERSION}")
    if found_kind != kind:
        raise Malformed(f"{what}: the bytes hold a different kind of CKKS context")
    return int(degree)


# ---------------------------------------------------------------------------
# The coordinator's side.


class LoadedCiphertext:
    """A validated ciphertext in memory, ready to be added once (coordinator side).

    An accumulator takes the ciphertext over (the first one becomes the running sum),
    so the object is spent after one ``CiphertextAccumulator.add``.
    """

    __slots__ = ("_ciphertext",)

    def __init__(self, ciphertext: Any) -> None:
        self._ciphertext = ciphertext

    def _take(self) -> Any:
        ciphertext, self._ciphertext = self._ciphertext, None
        if ciphertext is None:
            raise InternalError("a loaded ciphertext can be added only once")
        return ciphertext


class PublicContext:
    """The coordinator's CKKS context: parameters only, so it can add but never decrypt."""

    def __init__(self, parameters: _Parameters) -> None:
        """Internal; use ``SecretContext.public()`` or ``PublicContext.from_bytes``."""
        self._parameters = parameters

    @property
    def poly_modulus_degree(self) -> int:
        """``N``, the ring degree."""
        return self._parameters.poly_modulus_degree

    def to_bytes(self) -> bytes:
        """Serialize the parameters (version byte, kind byte, ``N``, SEAL parameters).

        Returns:
            About 80 bytes; they contain no key of any kind.
        """
        blob = self._parameters.to_bytes()
        header = _CONTEXT_HEADER.pack(FORMAT_VERSION, _KIND_PUBLIC, self.poly_modulus_degree)
        return header + _LENGTH.pack(len(blob)) + blob

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicContext:
        """Load a public context written by ``to_bytes``.

        Raises:
            Malformed: wrong version or kind (e.g. secret-context bytes), truncated, or
                parameters other than Accord's.
        """
        what = "the public CKKS context"
        degree = _read_header(data, _KIND_PUBLIC, what)
        (blob,) = _split_blobs(data, what, 1)
        return cls(_Parameters.from_bytes(degree, blob))

    def load(self, ciphertext: bytes, spec: PackingSpec | None = None) -> LoadedCiphertext:
        """Parse and validate one serialized ciphertext without adding it anywhere.

        Args:
            ciphertext: SEAL bytes from ``SecretContext.encrypt`` or ``CiphertextAccumulator``.
            spec: when given, the ciphertext's scale and ring must match it.

        Returns:
            The ciphertext, ready for ``CiphertextAccumulator.add``.

        Raises:
            Malformed: not a ciphertext of these parameters (and this packing).
        """
        return LoadedCiphertext(self._parameters.load_ciphertext(ciphertext, spec, "a ciphertext"))

    def add(self, a: bytes, b: bytes) -> bytes:
        """Add two serialized ciphertexts.

        Returns:
            The serialized sum (both polynomials in full, about ``16 * N`` bytes).

        Raises:
            Malformed: an input is not a ciphertext of these parameters, or their scales
                differ.
        """
        first = self._parameters.load_ciphertext(a, None, "the first ciphertext")
        second = self._parameters.load_ciphertext(b, None, "the second ciphertext")
        if first.scale != second.scale:
            raise Malformed("the two ciphertexts have different scales")
        self._parameters.evaluator.add_inplace(first, second)
        return _SCRATCH.save(first.save)

    def accumulator(self, spec: PackingSpec) -> CiphertextAccumulator:
        """An empty running sum of ciphertexts packed with ``spec``."""
        return CiphertextAccumulator(self, spec)


class CiphertextAccumulator:
    """A running sum of ciphertexts held in memory: load each once, add it in place."""

    def __init__(self, public: PublicContext, spec: PackingSpec) -> None:
        """Start an empty sum.

        Args:
            public: the context the ciphertexts belong to.
            spec: their packing (fixes the scale).

        Raises:
            UsageError: ``spec`` is for another ring degree.
        """
        public._parameters.check_spec(spec)
        self._public = public
        self._spec = spec
        self._sum: Any = None
        self._summands = 0

    @property
    def summands(self) -> int:
        """Ciphertexts and plaintext vectors added so far."""
        return self._summands

    @property
    def is_empty(self) -> bool:
        """True until the first ciphertext has been added."""
        return self._sum is None

    def add(self, ciphertext: bytes | LoadedCiphertext) -> None:
        """Add one ciphertext (bytes are validated first; the sum is unchanged on error).

        Raises:
            Malformed: the bytes are not a ciphertext of this context and packing.
            UsageError: the loaded ciphertext was already added somewhere.
        """
        if isinstance(ciphertext, LoadedCiphertext):
            if ciphertext._ciphertext is None:
                raise InternalError("a loaded ciphertext can be added only once")
            if ciphertext._ciphertext.scale != self._spec.scale:
                raise Malformed("the ciphertext was loaded for another packing")
            loaded = ciphertext._take()
        else:
            loaded = self._public._parameters.load_ciphertext(
                ciphertext, self._spec, "a ciphertext"
            )
        if self._sum is None:
            self._sum = loaded
        else:
            self._public._parameters.evaluator.add_inplace(self._sum, loaded)
        self._summands += 1

    def add_plain(self, reals: npt.ArrayLike, spec: PackingSpec) -> None:
        """Add a packed plaintext vector, e.g. a mask correction from ``packing.pack``.

        Args:
            reals: float64 array of shape ``(N,)`` with values in ``[0, 2^(k*w))``.
            spec: must be this accumulator's packing.

        Raises:
            UsageError: no ciphertext has been added yet, or the reals or spec do not fit.
        """
        if spec != self._spec:
            raise InternalError("add_plain: the packing differs from the accumulator's")
        if self._sum is None:
            raise InternalError(
                "add_plain: add a ciphertext first (a plaintext alone is not hidden)"
            )
        plain = self._public._parameters.encode(reals, spec)
        self._public._parameters.evaluator.add_plain_inplace(self._sum, plain)
        self._summands += 1

    def to_bytes(self) -> bytes:
        """Serialize the sum (both polynomials in full, about ``16 * N`` bytes).

        Raises:
            UsageError: nothing has been added yet.
        """
        if self._sum is None:
            raise InternalError("the accumulator is empty")
        return _SCRATCH.save(self._sum.save)


# ---------------------------------------------------------------------------
# The participants' side.


class SecretContext:
    """The federation's CKKS secret: participants only. Encrypts and decrypts packed integers."""

    def __init__(self, parameters: _Parameters, secret_key: Any) -> None:
        """Internal; use ``SecretContext.generate`` or ``SecretContext.from_bytes``."""
        self._parameters = parameters
        self._secret_key = secret_key
        self._encryptor = sealapi.Encryptor(parameters.context, secret_key)
        self._decryptor = sealapi.Decryptor(parameters.context, secret_key)

    @classmethod
    def generate(cls, poly_modulus_degree: int = 4096) -> SecretContext:
        """Make fresh parameters and a fresh secret key (SEAL's system randomness).

        Args:
            poly_modulus_degree: ``N``, 4096 (default) or 8192.

        Raises:
            UsageError: an unsupported ``N``.
        """
        parameters = _Parameters.create(poly_modulus_degree)
        return cls(parameters, sealapi.KeyGenerator(parameters.context).secret_key())

    @property
    def poly_modulus_degree(self) -> int:
        """``N``, the ring degree."""
        return self._parameters.poly_modulus_degree

    def to_bytes(self) -> bytes:
        """Serialize parameters and secret key (version byte, kind byte, ``N``, two blobs).

        Returns:
            About 62 KB at ``N = 4096``. Seal them (``envelope.seal``) before they travel.
        """
        params = self._parameters.to_bytes()
        key = _SCRATCH.save(self._secret_key.save)
        header = _CONTEXT_HEADER.pack(FORMAT_VERSION, _KIND_SECRET, self.poly_modulus_degree)
        return header + _LENGTH.pack(len(params)) + params + _LENGTH.pack(len(key)) + key

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretContext:
        """Load a secret context written by ``to_bytes``.

        Raises:
            Malformed: wrong version or kind, truncated, foreign parameters or a key that
                does not fit them.
        """
        what = "the secret CKKS context"
        degree = _read_header(data, _KIND_SECRET, what)
        params_blob, key_blob = _split_blobs(data, what, 2)
        parameters = _Parameters.from_bytes(degree, params_blob)
        key_limit = 8 * degree * len(COEFF_MODULUS_BITS[degree]) + _MAX_BLOB_SLACK
        _check_seal_blob(key_blob, key_limit, "the CKKS secret key")
        secret_key = sealapi.SecretKey()
        try:
            _SCRATCH.load(lambda path: secret_key.load(parameters.context, path), key_blob)
        except _SEAL_ERRORS as err:
            raise Malformed("the CKKS secret key does not decode") from err
        return cls(parameters, secret_key)

    def public(self) -> PublicContext:
        """The coordinator's context: the same parameters, no key."""
        return PublicContext(self._parameters)

    def encrypt(self, reals: npt.ArrayLike, spec: PackingSpec) -> bytes:
        """Encrypt one ciphertext's packed reals symmetrically (seeded serialization).

        Args:
            reals: float64 array of shape ``(N,)`` from ``packing.pack``.
            spec: the packing; fixes the scale ``2^S``.

        Returns:
            SEAL ciphertext bytes, about ``8 * N + 200`` (``c1`` travels as a seed).

        Raises:
            UsageError: the reals do not fit the packing or the ring.
        """
        plain = self._parameters.encode(reals, spec)
        serializable = self._encryptor.encrypt_symmetric(plain)
        return _SCRATCH.save(serializable.save)

    def decrypt_packed(
        self, ciphertext: bytes, spec: PackingSpec, count: int
    ) -> npt.NDArray[np.uint32]:
        """Decrypt a (summed) ciphertext and unpack its exact field sums.

        This is the only decryption path: no float ever leaves it.

        Args:
            ciphertext: SEAL bytes of one ciphertext, seeded or full.
            spec: its packing.
            count: elements it carries (``0..N*k``).

        Returns:
            uint32 array of shape ``(count,)``: field sums mod ``2^b``.

        Raises:
            Malformed: not a ciphertext of these parameters and packing.
            IntegrityError: the decryption is not exact packed integers (wrong key,
                too many summands, tampering).
        """
        loaded = self._parameters.load_ciphertext(ciphertext, spec, "a ciphertext")
        plain = sealapi.Plaintext()
        try:
            self._decryptor.decrypt(loaded, plain)
            slots = np.asarray(self._parameters.encoder.decode_complex(plain))
        except _SEAL_ERRORS as err:
            raise IntegrityError("a ciphertext does not decrypt") from err
        reals = np.concatenate([slots.real, slots.imag])
        return packing.unpack(reals, spec, count)
