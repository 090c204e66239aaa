"""Fixed-point encoding of a float update into the aggregation group Z_{2^b}.

Theory of operation (docs/protocol.md, "Numbers"; the weighting follows DESIGN.md
guarantee 7):

1. ``clip_l2`` scales the float32 delta so that its L2 norm is at most ``C``
   (``clip_norm``); then every coordinate is clipped to ``[-B, B]``
   (``value_bound``, ``C`` by default).
2. ``quantize`` maps a coordinate ``x`` to ``q = floor(x / step + u)`` with
   ``u ~ U[0, 1)`` drawn from the injected generator and ``step = B / Q``. This is
   stochastic rounding: ``E[q * step] = x`` exactly and the error is below one step.
3. A participant with integer weight ``w`` (its sample count, capped at
   ``cap = weight_cap``) quantizes ``x * w / cap`` and appends ``w`` as one more
   element, so weights travel inside the protected vector and are never sent in
   clear. The decoded sum yields ``sum_u w_u x_u / cap`` and ``sum_u w_u``.
4. ``to_field`` maps ``q`` to ``q mod 2^b`` (two's complement). With
   ``h = ceil(log2(n_max))`` headroom bits and ``Q = 2^(b-1-h) - 1``, the sum of at
   most ``n_max`` encodings has every element, the weight slot included
   (``w <= cap <= Q``), strictly inside ``(-2^(b-1), 2^(b-1))``; so ``from_field``,
   the centred lift of the sum mod ``2^b``, recovers the integer sum exactly.

Invariants: ``|q| <= Q`` for every quantized element; ``0 <= w <= cap <= Q``; the
output of ``encode`` is ``uint32`` with every value ``< 2^b``. Nothing here reads a
clock, logs or draws randomness except from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from accord.errors import ConfigError, IntegrityError, InternalError, UsageError

__all__ = [
    "ALLOWED_MODULUS_BITS",
    "QuantSpec",
    "clip_l2",
    "decode",
    "dequantize",
    "encode",
    "from_field",
    "quantize",
    "to_field",
]

ALLOWED_MODULUS_BITS = (8, 12, 16, 24, 32)
"""Bits ``b`` of the aggregation group Z_{2^b} that a federation may configure."""

_NORM_CHUNK = 1 << 20
"""Elements per block when accumulating an L2 norm in float64."""

_QUANT_BLOCK = 1 << 16
"""Elements per block when quantizing: the float64 buffers stay in cache."""


@dataclass(frozen=True)
class QuantSpec:
    """How a float update becomes an element vector of Z_{2^b}.

    Attributes:
        modulus_bits: ``b``, bits of the aggregation group; one of 8, 12, 16, 24, 32.
        max_participants: ``n_max``, the most encodings that are ever summed (>= 1).
        clip_norm: ``C``, L2 bound of an update (> 0, finite).
        value_bound: ``B``, per-coordinate bound; ``None`` means ``C``.
        weight_cap: largest weight a participant may claim (1..Q); ``None`` means ``Q``.
    """

    modulus_bits: int = 16
    max_participants: int = 16
    clip_norm: float = 1.0
    value_bound: float | None = None
    weight_cap: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.modulus_bits) or self.modulus_bits not in ALLOWED_MODULUS_BITS:
            raise ConfigError(
                f"modulus_bits = {self.modulus_bits!r}: must be one of 8, 12, 16, 24, 32 "
                "(bits of the aggregation group)"
            )
        if not _is_int(self.max_participants) or self.max_participants < 1:
            raise ConfigError(
                f"max_participants = {self.max_participants!r}: must be an integer >= 1 "
                "(the most updates ever summed in one round)"
            )
        if not _is_positive_real(self.clip_norm):
            raise ConfigError(
                f"clip_norm = {self.clip_norm!r}: must be a finite number > 0 "
                "(the L2 bound of an update)"
            )
        if self.value_bound is not None and not _is_positive_real(self.value_bound):
            raise ConfigError(
                f"value_bound = {self.value_bound!r}: must be a finite number > 0 or unset "
                "(the per-coordinate bound; unset means clip_norm)"
            )
        if self.max_level < 1:
            raise ConfigError(
                f"modulus_bits = {self.modulus_bits} with max_participants = "
                f"{self.max_participants}: no quantization levels are left after "
                f"{self.headroom_bits} headroom bits; raise modulus_bits or lower "
                "max_participants"
            )
        if self.weight_cap is not None and (
            not _is_int(self.weight_cap) or not 1 <= self.weight_cap <= self.max_level
        ):
            raise ConfigError(
                f"weight_cap = {self.weight_cap!r}: must be an integer in 1..{self.max_level} "
                "(the largest sample count one update may claim; unset means the maximum)"
            )

    @property
    def headroom_bits(self) -> int:
        """``h = ceil(log2(n_max))``: bits reserved so that ``n_max`` values sum exactly."""
        return (self.max_participants - 1).bit_length()

    @property
    def max_level(self) -> int:
        """``Q = 2^(b-1-h) - 1``: the largest quantized magnitude."""
        exponent = self.modulus_bits - 1 - self.headroom_bits
        return (1 << exponent) - 1 if exponent >= 0 else 0

    @property
    def bound(self) -> float:
        """``B``: the per-coordinate clipping bound (``value_bound``, else ``clip_norm``)."""
        return float(self.value_bound if self.value_bound is not None else self.clip_norm)

    @property
    def step(self) -> float:
        """``B / Q``: the value of one quantization level."""
        return self.bound / self.max_level

    @property
    def cap(self) -> int:
        """The weight cap (``weight_cap``, else ``Q``)."""
        return int(self.weight_cap) if self.weight_cap is not None else self.max_level


def clip_l2(x: npt.ArrayLike, clip_norm: float) -> npt.NDArray[np.float32]:
    """Return a float32 copy of ``x`` scaled down so that its L2 norm is at most ``clip_norm``.

    Args:
        x: values of any shape (cast to float32).
        clip_norm: the L2 bound ``C`` (> 0).

    Returns:
        A new float32 array of the same shape; ``x`` itself when its norm is already
        within the bound (as a copy), otherwise ``x * C / ||x||``.

    Raises:
        UsageError: ``clip_norm`` is not a finite positive number, or ``x`` holds a
            NaN or an infinity.
    """
    if not _is_positive_real(clip_norm):
        raise InternalError(f"clip_norm = {clip_norm!r}: must be a finite number > 0")
    out = np.array(x, dtype=np.float32, copy=True)
    norm = _l2_norm(out)
    if not math.isfinite(norm):
        raise UsageError("the update holds a NaN or an infinity and cannot be clipped")
    if norm <= clip_norm:
        return out
    out *= np.float32(clip_norm / norm)
    # float32 rounding can leave the norm a hair above the bound; shave it off.
    shrink = np.float32(1.0 - 2.0**-22)
    while _l2_norm(out) > clip_norm:
        out *= shrink
    return out


class Uniforms(Protocol):
    """A source of U[0, 1) draws: ``np.random.Generator`` or `CsprngUniforms`."""

    def random(
        self, size: Any = None, dtype: Any = ..., out: npt.NDArray[np.float64] | None = ...
    ) -> Any: ...


class CsprngUniforms:
    """Stochastic rounding's uniforms from an AES-256-CTR keystream (a CSPRNG).

    Each draw takes 53 keystream bits: ``(word >> 11) / 2^53`` in [0, 1). One key per
    round and update (`rounding_key`): the same key gives the same rounding, so runs with
    a fixed key are reproducible; a key from ``os.urandom`` is unpredictable.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InternalError("a rounding key is 32 bytes")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()

    def random(
        self,
        size: Any = None,
        dtype: Any = np.float64,
        out: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Draws of shape `size`, or into `out` (as ``np.random.Generator.random``)."""
        if out is not None:
            shape: tuple[int, ...] = out.shape
        elif size is None or size == ():
            shape = ()
        else:
            shape = tuple(int(n) for n in np.atleast_1d(np.asarray(size, dtype=np.int64)))
        count = int(np.prod(shape)) if shape else 1
        words = np.frombuffer(self._encryptor.update(bytes(8 * count)), dtype="<u8")
        values = (words >> np.uint64(11)).astype(np.float64)
        values *= 1.0 / float(1 << 53)
        if out is None:
            return values.reshape(shape)
        out[...] = values.reshape(shape)
        return out


def rounding_key(secret: bytes, federation_id: str, round: int) -> bytes:
    """The round's rounding key: HMAC-SHA256(secret, federation_id / round)."""
    message = f"accord/v1/rounding/{federation_id}/{round}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def quantize(x: npt.ArrayLike, spec: QuantSpec, rng: Uniforms) -> npt.NDArray[np.int64]:
    """Stochastically round values onto the integer grid ``{-Q, ..., Q}``.

    Args:
        x: float values of any shape, in the same units as ``spec.bound``.
        spec: the quantization settings.
        rng: source of the rounding noise ``u ~ U[0, 1)``, one draw per element.

    Returns:
        int64 array of the same shape, ``clip(floor(clip(x, -B, B) / step + u), -Q, Q)``.

    Raises:
        UsageError: ``x`` holds a NaN.
    """
    values = np.asarray(x)
    if values.size and np.isnan(values.min()):  # min propagates NaN, no temporary
        raise UsageError("the update holds a NaN and cannot be quantized")
    out = np.empty(values.shape, dtype=np.int64)
    _quantize_into(values.reshape(-1), 1.0, spec, rng, out.reshape(-1), None)
    return out


def dequantize(q: npt.ArrayLike, spec: QuantSpec) -> npt.NDArray[np.float64]:
    """Map quantized integers back to values: ``q * step``.

    Args:
        q: integers of any shape (levels, or a sum of levels).
        spec: the quantization settings.

    Returns:
        float64 array of the same shape.
    """
    return np.asarray(q, dtype=np.float64) * spec.step


def to_field(q: npt.ArrayLike, modulus_bits: int) -> npt.NDArray[np.uint32]:
    """Map signed integers to Z_{2^b} by two's complement (``q mod 2^b``).

    Args:
        q: integers of any shape.
        modulus_bits: ``b``, 1..32.

    Returns:
        uint32 array of the same shape, every value ``< 2^b``.

    Raises:
        UsageError: ``modulus_bits`` is outside 1..32 or ``q`` is not an integer array.
    """
    mask = _modulus_mask(modulus_bits)
    values = _integer_array(q, "q")
    return (values.astype(np.int64) & np.int64(mask)).astype(np.uint32)


def from_field(v: npt.ArrayLike, modulus_bits: int) -> npt.NDArray[np.int64]:
    """Centred lift of elements of Z_{2^b}: values ``>= 2^(b-1)`` become negative.

    Args:
        v: integers of any shape, read mod ``2^b`` (so an unreduced sum is fine).
        modulus_bits: ``b``, 1..32.

    Returns:
        int64 array of the same shape with values in ``[-2^(b-1), 2^(b-1))``.

    Raises:
        UsageError: ``modulus_bits`` is outside 1..32 or ``v`` is not an integer array.
    """
    mask = _modulus_mask(modulus_bits)
    lifted = _integer_array(v, "v").astype(np.int64) & np.int64(mask)
    np.subtract(
        lifted, np.int64(1 << modulus_bits), out=lifted, where=lifted >= (1 << (modulus_bits - 1))
    )
    return lifted


def encode(
    delta: npt.ArrayLike, weight: int, spec: QuantSpec, rng: Uniforms
) -> npt.NDArray[np.uint32]:
    """Encode one weighted update as a vector of Z_{2^b}, weight in the last element.

    Args:
        delta: float update, shape ``(d,)``.
        weight: the participant's sample count (>= 0); capped at ``spec.cap``.
        spec: the quantization settings.
        rng: source of the stochastic-rounding noise.

    Returns:
        uint32 array of shape ``(d + 1,)``: ``to_field(quantize(clip_l2(delta) * w / cap))``
        followed by ``w = min(weight, cap)``.

    Raises:
        UsageError: ``delta`` is not one-dimensional or is not finite, or ``weight`` is
            not an integer >= 0.
    """
    if not _is_int(weight) or weight < 0:
        raise InternalError(f"weight = {weight!r}: must be an integer >= 0 (a sample count)")
    values = np.asarray(delta)
    if values.ndim != 1:
        raise InternalError(f"delta has shape {values.shape}: must be one-dimensional (d,)")
    capped = min(int(weight), spec.cap)
    clipped = _clipped(values, spec.clip_norm)
    out = np.empty(values.shape[0] + 1, dtype=np.uint32)
    _quantize_into(clipped, capped / spec.cap, spec, rng, out[:-1], spec.modulus_bits)
    out[-1] = capped
    return out


def decode(field_sum: npt.ArrayLike, spec: QuantSpec) -> tuple[npt.NDArray[np.float32], int]:
    """Decode the sum of encodings into the weighted mean and the total weight.

    Args:
        field_sum: the element-wise sum mod ``2^b`` of at most ``n_max`` outputs of
            ``encode``, shape ``(d + 1,)``.
        spec: the quantization settings every encoding used.

    Returns:
        ``(mean, total_weight)``: float32 ``(d,)`` weighted mean
        ``sum_u w_u x_u / sum_u w_u`` (zeros when the total weight is 0), and
        ``sum_u w_u``.

    Raises:
        UsageError: ``field_sum`` is not a one-dimensional integer array of length >= 1.
        IntegrityError: the total weight lifts to a negative number, which no sum of at
            most ``n_max`` honest encodings can produce.
    """
    lifted = from_field(field_sum, spec.modulus_bits)
    if lifted.ndim != 1 or lifted.shape[0] < 1:
        raise InternalError(
            f"field_sum has shape {lifted.shape}: must be (d + 1,), the weight slot last"
        )
    total_weight = int(lifted[-1])
    if total_weight < 0:
        raise IntegrityError("the total weight of the aggregate is invalid")
    if total_weight == 0:
        return np.zeros(lifted.shape[0] - 1, dtype=np.float32), 0
    mean = dequantize(lifted[:-1], spec) * (spec.cap / total_weight)
    return mean.astype(np.float32), total_weight


def _clipped(x: npt.NDArray[Any], clip_norm: float) -> npt.NDArray[np.float32]:
    """``clip_l2(x)``, but ``x`` itself (no copy) when it is float32 within the bound."""
    if x.dtype == np.float32:
        norm = _l2_norm(x)
        if not math.isfinite(norm):
            raise UsageError("the update holds a NaN or an infinity and cannot be clipped")
        if norm <= clip_norm:
            return x
    return clip_l2(x, clip_norm)


def _quantize_into(
    x: npt.NDArray[Any],
    factor: float,
    spec: QuantSpec,
    rng: Uniforms,
    out: npt.NDArray[Any],
    modulus_bits: int | None,
) -> None:
    """``out = quantize(x * factor)`` (mod ``2^b`` when ``modulus_bits`` is given), 1-D.

    Cache-sized float64 blocks, the rounding noise drawn into a reused buffer in the
    same order as one whole-vector draw: the same values as the whole-vector formula
    with no full-size temporaries.
    """
    size = x.shape[0]
    block = min(size, _QUANT_BLOCK)
    scaled = np.empty(block, dtype=np.float64)
    noise = np.empty(block, dtype=np.float64)
    levels = np.empty(block, dtype=np.int64)
    bound, step, level = spec.bound, spec.step, spec.max_level
    mask = np.int64(_modulus_mask(modulus_bits)) if modulus_bits is not None else None
    scale = np.float64(factor)
    for begin in range(0, size, block):
        count = min(block, size - begin)
        s, u, q = scaled[:count], noise[:count], levels[:count]
        if factor == 1.0:
            s[...] = x[begin : begin + count]
        else:
            np.multiply(x[begin : begin + count], scale, out=s)
        np.clip(s, -bound, bound, out=s)
        np.divide(s, step, out=s)
        rng.random(out=u)
        s += u
        np.floor(s, out=s)
        np.clip(s, -level, level, out=s)
        q[...] = s
        if mask is not None:
            np.bitwise_and(q, mask, out=q)
        out[begin : begin + count] = q


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_positive_real(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return False
    return math.isfinite(float(value)) and float(value) > 0


def _modulus_mask(modulus_bits: int) -> int:
    if not _is_int(modulus_bits) or not 1 <= modulus_bits <= 32:
        raise InternalError(f"modulus_bits = {modulus_bits!r}: must be an integer in 1..32")
    return (1 << int(modulus_bits)) - 1


def _integer_array(values: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise InternalError(f"{name} has dtype {array.dtype}: must be an integer array")
    return array


def _l2_norm(x: npt.NDArray[np.float32]) -> float:
    """L2 norm accumulated in float64, block by block so no float64 copy of ``x`` exists."""
    flat = x.reshape(-1)
    total = 0.0
    for begin in range(0, flat.shape[0], _NORM_CHUNK):
        block = flat[begin : begin + _NORM_CHUNK].astype(np.float64)
        total += float(np.dot(block, block))
    return math.sqrt(total)
