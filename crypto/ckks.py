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

Every serialized SEAL object is checked before SEAL parses it, and TenSEAL's path-only
save and load go through private scratch files (``ckks_seal``, the module's only I/O).
Loaded ciphertexts must have two polynomials at the data level in NTT form and the
scale of the packing spec. Formats: ``to_bytes`` output starts with a version byte
and a kind byte (secret or public), so one can never be loaded as the other.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal.sealapi as sealapi

from accord.crypto import packing
from accord.crypto.ckks_seal import (
    MAX_BLOB_SLACK,
    SCRATCH,
    SEAL_ERRORS,
    Parameters,
    check_seal_blob,
)
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

    def __init__(self, parameters: Parameters) -> None:
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
        return cls(Parameters.from_bytes(degree, blob))

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
        return SCRATCH.save(first.save)

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
        return SCRATCH.save(self._sum.save)


# ---------------------------------------------------------------------------
# The participants' side.


class SecretContext:
    """The federation's CKKS secret: participants only. Encrypts and decrypts packed integers."""

    def __init__(self, parameters: Parameters, secret_key: Any) -> None:
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
        parameters = Parameters.create(poly_modulus_degree)
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
        key = SCRATCH.save(self._secret_key.save)
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
        parameters = Parameters.from_bytes(degree, params_blob)
        key_limit = 8 * degree * len(COEFF_MODULUS_BITS[degree]) + MAX_BLOB_SLACK
        check_seal_blob(key_blob, key_limit, "the CKKS secret key")
        secret_key = sealapi.SecretKey()
        try:
            SCRATCH.load(lambda path: secret_key.load(parameters.context, path), key_blob)
        except SEAL_ERRORS as err:
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
        return SCRATCH.save(serializable.save)

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
        except SEAL_ERRORS as err:
            raise IntegrityError("a ciphertext does not decrypt") from err
        reals = np.concatenate([slots.real, slots.imag])
        return packing.unpack(reals, spec, count)
