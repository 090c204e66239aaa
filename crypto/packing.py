"""BatchCrypt-style packing of Z_{2^b} elements into the real slots of one CKKS ciphertext.

Theory of operation. BatchCrypt (Zhang et al., USENIX ATC 2020, section 4) packs
several quantized integers into one plaintext so that a single homomorphic addition
adds all of them; we apply the idea to the slots of CKKS (Cheon et al., ASIACRYPT
2017) and decode only exact integers (Li and Micciancio, EUROCRYPT 2021, show that
publishing approximate CKKS decryptions can reveal the secret key; an exact integer
reveals nothing about the noise beyond "it was small").

Layout. A ciphertext of ring degree ``N`` has ``N/2`` complex slots, read as ``N``
reals: slot ``s`` carries real ``s`` in its real part and real ``N/2 + s`` in its
imaginary part. Real ``r`` carries the ``k`` consecutive elements ``r*k .. r*k + k - 1``
as fields of ``w`` bits::

    real_r = sum_{j < k} f_{r*k + j} * 2^(j*w)

Elements past the end of the vector are zero. ``w = b + ceil(log2(n_max + 1))``, so
the sum of ``n_max`` participants' fields plus one correction vector, each ``< 2^b``,
stays below ``2^w`` and never carries into the next field.

Exactness (the property everything else relies on). The decrypted real is the
integer sum plus an error ``e = e_noise + e_fp``:

- ``e_noise``: the fresh encryption noise of every summed ciphertext (SEAL's centered
  binomial sampler: bounded, symmetric, variance 10.5), plus the rounding of each
  encoded plaintext to integer coefficients, seen through the decoding map: each
  real is a +-cos/sin-weighted sum of ``N`` coefficients, so its standard deviation
  is ``sigma * sqrt(N/2) * sqrt(summands) / 2^S`` and, the noise being strictly
  sub-Gaussian, ``P(|e_noise| > t * std) <= 2 exp(-t^2 / 2)``. Measured on TenSEAL
  0.3.18 at N = 4096: pure encryption noise 146.6 per real in coefficient units
  (sigma = 3.24) over 800 million reals, tail rates those of a Gaussian to 5.5 sigma
  and about 2x it at 6 sigma (5 events), inside the sub-Gaussian bound; packed sums of
  n = 1..100 fresh ciphertexts and one plaintext correction ``147.3 * sqrt(n) / 2^S``
  (encoding rounding adds 13.1 per plaintext), kurtosis 3.000, largest error 7.0
  sigma in over 450 million reals. We budget sigma = 3.3 and ``n_max + 1`` noisy
  summands.
- ``e_fp``: float64 rounding in the encoder's and decoder's FFTs, relative to the
  payload ``2^(k*w)``: at most 0.016 measured at ``k*w = 44``, halving per bit below.

``choose_packing`` requires ``8 sigma(e_noise) + 0.0625 <= 0.25`` (the decoder's
integrity bound; ``2 exp(-32) < 2^-45`` per real), with 0.0625 four times the
largest ``e_fp`` measured, and ``k*w <= 44``. In practice docs/protocol.md's rule
``S = 13 + ceil(log2(n_max + 1) / 2)`` is stricter at N = 4096: over every valid
layout (b = 8..32, n_max up to 2000) the bound 0.25 stays at least 13.6 measured
sigma away after ``e_fp`` (sub-Gaussian bound ``2 exp(-92)``, about 10^-40 per
real), and a wrong integer (``|e| > 0.75``) at least 40 sigma away. On top, the
plaintext coefficients, at most ``sqrt(2) * 2^(k*w + S)``, must stay below half the
data prime: ``k*w + S <= data_bits - 2``. ``unpack`` refuses anything that is not an
exact in-range integer instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.errors import ConfigError, IntegrityError, InternalError

__all__ = [
    "COEFF_MODULUS_BITS",
    "MAX_PAYLOAD_BITS",
    "PackingSpec",
    "choose_packing",
    "pack",
    "required_scale_bits",
    "unpack",
]

COEFF_MODULUS_BITS: dict[int, tuple[int, ...]] = {4096: (60, 49), 8192: (60, 40, 60)}
"""Ring degree ``N`` -> CKKS coefficient-modulus chain; the last prime is the special prime."""

MAX_PAYLOAD_BITS = 44
"""Largest ``k*w``: float64 FFT error stays <= 0.016 here (measured), 1/16 of the budget."""

INTEGER_TOLERANCE = 0.25
"""A decrypted real farther than this from an integer is refused."""

NOISE_STD = 3.3
"""Per-coefficient noise per summand: SEAL's 3.2 plus rounding, 3.26 measured, rounded up."""

TAIL_SIGMAS = 8.0
"""Noise standard deviations that must fit in the error budget (tail < 2^-45 per real)."""

FLOAT_ERROR_BOUND = 0.0625
"""Budget for float64 FFT error: four times the worst measured at ``k*w = 44``."""

_MAX_MODULUS_BITS = 32


@dataclass(frozen=True)
class PackingSpec:
    """How field elements are packed into the reals of one CKKS ciphertext.

    Attributes:
        modulus_bits: ``b``; every element is in Z_{2^b}, 1..32.
        max_participants: ``n_max``, the most uploads summed into one aggregate.
        fields_per_real: ``k``, elements per real.
        field_bits: ``w``, bits per field; at least ``b + ceil(log2(n_max + 1))``.
        scale_bits: ``S``; the CKKS scale is ``2^S``.
        poly_modulus_degree: ``N``, 4096 (default) or 8192.

    Raises:
        ConfigError: the layout is not exact (see the module docstring); the message
            names the limit.
    """

    modulus_bits: int
    max_participants: int
    fields_per_real: int
    field_bits: int
    scale_bits: int
    poly_modulus_degree: int = 4096

    def __post_init__(self) -> None:
        _check_common(self.modulus_bits, self.max_participants, self.poly_modulus_degree)
        for name in ("fields_per_real", "field_bits", "scale_bits"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"packing {name} = {value!r}: must be an integer >= 1")
        need_w = _field_bits(self.modulus_bits, self.max_participants)
        if self.field_bits < need_w:
            raise ConfigError(
                f"packing field_bits = {self.field_bits}: must be >= {need_w} "
                f"(b = {self.modulus_bits} plus carry room for {self.max_participants} "
                "participants and one correction)"
            )
        need_s = required_scale_bits(self.max_participants, self.poly_modulus_degree)
        if self.scale_bits < need_s:
            raise ConfigError(
                f"packing scale_bits = {self.scale_bits}: must be >= {need_s} "
                f"(CKKS noise of {self.max_participants} participants)"
            )
        payload = self.payload_bits
        if payload > MAX_PAYLOAD_BITS:
            raise ConfigError(
                f"packing fields_per_real * field_bits = {payload}: must be <= "
                f"{MAX_PAYLOAD_BITS} (float64 precision of the CKKS encoder)"
            )
        limit = _data_bits(self.poly_modulus_degree) - 2
        if payload + self.scale_bits > limit:
            raise ConfigError(
                f"packing fields_per_real * field_bits + scale_bits = "
                f"{payload + self.scale_bits}: must be <= {limit} (the CKKS data prime)"
            )

    @property
    def reals_per_ciphertext(self) -> int:
        """``N``: reals per ciphertext (``N/2`` complex slots, real then imaginary parts)."""
        return self.poly_modulus_degree

    @property
    def elements_per_ciphertext(self) -> int:
        """``N * k``: field elements per ciphertext."""
        return self.poly_modulus_degree * self.fields_per_real

    @property
    def payload_bits(self) -> int:
        """``k * w``: bits of the integer carried by one real."""
        return self.fields_per_real * self.field_bits

    @property
    def max_summands(self) -> int:
        """``n_max + 1``: uploads plus one correction vector that one aggregate can hold."""
        return self.max_participants + 1

    @property
    def scale(self) -> float:
        """``2^S``, the CKKS encoding scale."""
        return float(2**self.scale_bits)

    def ciphertext_count(self, element_count: int) -> int:
        """Ciphertexts needed for ``element_count`` elements (the last one zero-padded)."""
        return -(-int(element_count) // self.elements_per_ciphertext)


def required_scale_bits(max_participants: int, poly_modulus_degree: int = 4096) -> int:
    """The smallest safe ``S`` for ``n_max`` participants.

    ``max(13 + ceil(log2(n_max + 1) / 2), ceil(log2(8 * 3.3 * sqrt(N/2) * sqrt(n_max + 1)
    / 0.1875)))``; the first term is docs/protocol.md's rule and dominates at N = 4096.

    Args:
        max_participants: ``n_max`` (>= 1).
        poly_modulus_degree: ``N``.

    Returns:
        ``S`` in bits.

    Raises:
        ConfigError: an argument is out of range.
    """
    _check_common(1, max_participants, poly_modulus_degree)
    summands = max_participants + 1
    rule = 13 + math.ceil(math.log2(summands) / 2)
    noise_std = NOISE_STD * math.sqrt(poly_modulus_degree / 2) * math.sqrt(summands)
    budget = INTEGER_TOLERANCE - FLOAT_ERROR_BOUND
    derived = math.ceil(math.log2(TAIL_SIGMAS * noise_std / budget))
    return max(rule, derived)


def choose_packing(
    modulus_bits: int, max_participants: int, poly_modulus_degree: int = 4096
) -> PackingSpec:
    """Pick the densest exact packing: the largest ``k`` that keeps sums exact.

    Args:
        modulus_bits: ``b``, bits of the aggregation group (1..32).
        max_participants: ``n_max``, the most uploads ever summed (>= 1).
        poly_modulus_degree: ``N``, 4096 or 8192.

    Returns:
        The spec with ``w = b + ceil(log2(n_max + 1))``, ``S = required_scale_bits`` and
        the largest ``k`` with ``k*w <= 44`` and ``k*w + S <= data_bits - 2``.

    Raises:
        ConfigError: no ``k >= 1`` fits; the message names the limit and the fix.
    """
    _check_common(modulus_bits, max_participants, poly_modulus_degree)
    w = _field_bits(modulus_bits, max_participants)
    s = required_scale_bits(max_participants, poly_modulus_degree)
    limit = _data_bits(poly_modulus_degree) - 2
    k = min(MAX_PAYLOAD_BITS // w, (limit - s) // w)
    if k < 1:
        raise ConfigError(
            f"modulus_bits = {modulus_bits} with max_participants = {max_participants}: "
            f"a field needs {w} bits and the scale {s} bits, but one CKKS real holds at most "
            f"min({MAX_PAYLOAD_BITS}, {limit} - {s}) bits exactly; lower modulus_bits or "
            "max_participants"
        )
    return PackingSpec(
        modulus_bits=modulus_bits,
        max_participants=max_participants,
        fields_per_real=k,
        field_bits=w,
        scale_bits=s,
        poly_modulus_degree=poly_modulus_degree,
    )


def pack(values: npt.ArrayLike, spec: PackingSpec) -> npt.NDArray[np.float64]:
    """Pack up to ``N*k`` field elements into the ``N`` reals of one ciphertext.

    Args:
        values: 1-D integer array (uint32 in the pipeline), every value in ``[0, 2^b)``,
            length at most ``spec.elements_per_ciphertext``; missing elements are zero.

    Returns:
        float64 array of shape ``(N,)``; every value is an exact integer below ``2^(k*w)``.

    Raises:
        UsageError: wrong shape, dtype, length, or a value outside ``[0, 2^b)``.
    """
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InternalError("pack: values must be a 1-D integer array")
    if array.size > spec.elements_per_ciphertext:
        raise InternalError(
            f"pack: {array.size} values exceed the {spec.elements_per_ciphertext} "
            "elements of one ciphertext"
        )
    if array.size and (int(array.min()) < 0 or int(array.max()) >= 1 << spec.modulus_bits):
        raise InternalError(f"pack: values must lie in [0, 2^{spec.modulus_bits})")
    fields = np.zeros(spec.elements_per_ciphertext, dtype=np.uint64)
    fields[: array.size] = array
    grid = fields.reshape(spec.poly_modulus_degree, spec.fields_per_real)
    np.left_shift(grid, _shifts(spec), out=grid)
    return grid.sum(axis=1, dtype=np.uint64).astype(np.float64)


def unpack(reals: npt.ArrayLike, spec: PackingSpec, count: int) -> npt.NDArray[np.uint32]:
    """Turn the decrypted reals of one summed ciphertext into field sums mod ``2^b``.

    Args:
        reals: float array of shape ``(N,)``, the decoded slots (real parts, then
            imaginary parts).
        count: elements this ciphertext carries (``0..N*k``); the rest must be zero.

    Returns:
        uint32 array of shape ``(count,)``: each element's sum reduced mod ``2^b``.

    Raises:
        IntegrityError: a real is not within 0.25 of an integer, is negative or too large
            for the layout, a field exceeds what ``n_max + 1`` summands can reach, or the
            padding past ``count`` is not zero.
        UsageError: wrong shape or ``count``.
    """
    data = np.asarray(reals, dtype=np.float64)
    if data.shape != (spec.reals_per_ciphertext,):
        raise InternalError(f"unpack: expected {spec.reals_per_ciphertext} reals, got {data.shape}")
    if not _is_int(count) or not 0 <= count <= spec.elements_per_ciphertext:
        raise InternalError(f"unpack: count = {count!r} outside 0..{spec.elements_per_ciphertext}")
    if not np.isfinite(data).all():
        raise IntegrityError("decrypted ciphertext holds no packed integers")
    rounded = np.rint(data)
    if float(np.max(np.abs(data - rounded))) > INTEGER_TOLERANCE:
        raise IntegrityError("decrypted ciphertext does not hold exact packed integers")
    if float(rounded.min()) < 0 or float(rounded.max()) >= 2.0**spec.payload_bits:
        raise IntegrityError("decrypted ciphertext holds integers outside the packing layout")
    integers = rounded.astype(np.uint64)
    fields = (integers[:, None] >> _shifts(spec)) & np.uint64((1 << spec.field_bits) - 1)
    flat = fields.reshape(-1)
    ceiling = spec.max_summands * ((1 << spec.modulus_bits) - 1)
    if int(flat.max()) > ceiling or flat[count:].any():
        raise IntegrityError("decrypted ciphertext holds field sums outside the packing layout")
    return (flat[:count] & np.uint64((1 << spec.modulus_bits) - 1)).astype(np.uint32)


def _shifts(spec: PackingSpec) -> npt.NDArray[np.uint64]:
    return np.arange(spec.fields_per_real, dtype=np.uint64) * np.uint64(spec.field_bits)


def _field_bits(modulus_bits: int, max_participants: int) -> int:
    return modulus_bits + math.ceil(math.log2(max_participants + 1))


def _data_bits(poly_modulus_degree: int) -> int:
    return sum(COEFF_MODULUS_BITS[poly_modulus_degree][:-1])


def _check_common(modulus_bits: Any, max_participants: Any, poly_modulus_degree: Any) -> None:
    if not _is_int(modulus_bits) or not 1 <= modulus_bits <= _MAX_MODULUS_BITS:
        raise ConfigError(
            f"modulus_bits = {modulus_bits!r}: must be an integer in 1..{_MAX_MODULUS_BITS} "
            "(bits of the aggregation group)"
        )
    if not _is_int(max_participants) or max_participants < 1:
        raise ConfigError(
            f"max_participants = {max_participants!r}: must be an integer >= 1 "
            "(the most uploads summed in one round)"
        )
    if poly_modulus_degree not in COEFF_MODULUS_BITS:
        choices = ", ".join(str(n) for n in COEFF_MODULUS_BITS)
        raise ConfigError(
            f"poly_modulus_degree = {poly_modulus_degree!r}: must be one of {choices}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
