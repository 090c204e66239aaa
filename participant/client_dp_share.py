"""Client-level DP: each participant's share of discrete noise, added in the integer domain.

Theory of operation (Agarwal, Kairouz and Liu 2021, "The Skellam Mechanism for
Differentially Private Federated Learning"; Kairouz, Liu and Steinke 2021 for the
distributed discrete Gaussian): after clipping and quantization (`crypto.quantize`)
every participant adds integer noise to its field vector before masking. The
Skellam distribution Sk(mu) = Poisson(mu) - Poisson(mu) has variance 2 mu and is
closed under addition: the sum of k independent Sk(mu) is Sk(k mu). So if each of n
participants adds Sk(sigma^2 / (2 h)), with h = ceil(honest_fraction * n) the number
of participants assumed honest, the aggregate carries noise of variance at least
sigma^2 as long as h of them really added theirs. Nobody, the coordinator included,
sees the noise-free sum; the noise is exact integers, so modular arithmetic (and
CKKS's exact-integer decoding, DESIGN.md guarantee 6) is unaffected.

Randomness: every Poisson draw comes from `csprng.CsprngGaussian`'s AES-CTR stream,
never from numpy's generators. Poisson(lam) is drawn by inversion for lam < 10 and by
Hoermann's transformed rejection (PTRS, 1993; the algorithm numpy uses) above, both
vectorised over the whole vector.

Where it runs: `exchange.encode_update` calls `add_share` with the round's
`RoundConfig.client_noise` (the federation's `[coordinator.client_dp]` setting) right
after `quantize.encode` and before masking, in the secure profiles only; the
participant's ledger records the share (`ledger.record_round`, `client_dp`).

Invariants and duties of the caller:
- `sigma` is in quantized units (levels of `QuantSpec.step`), i.e. already multiplied by
  the clipping bound's size in levels: sigma = noise_multiplier * C / step for an
  unweighted update (`crypto.client_dp.ClientNoise.sigma_levels`).
- The weight slot (the last element of `quantize.encode`'s output) gets no noise unless
  `exclude_last=False`: noise there would corrupt the total weight.
- The modulus must leave room: with every quantized value at most L = min(Q, ceil(C /
  step)) levels, keep n L + 6 sigma sqrt(n / h) below 2^(b-1) (the noise of all n
  shares, h of them assumed honest), or the centred lift of the sum wraps around.
  `RoundConfig` refuses a round that breaks this (`ClientNoise.check_room`), and the
  coordinator widens `value_bound` until it holds (`client_dp.widened_value_bound`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from accord.crypto.client_dp import honest_participants
from accord.crypto.messages import RoundConfig
from accord.crypto.quantize import ALLOWED_MODULUS_BITS
from accord.errors import ConfigError
from accord.participant.training.csprng import CsprngGaussian

_PTRS_THRESHOLD = 10.0


def share_mu(sigma: float, honest_fraction: float, participants: int) -> float:
    """mu of this participant's Skellam share: sigma^2 / (2 * ceil(honest_fraction * n)).

    Raises:
        ConfigError: sigma < 0, honest_fraction outside (0, 1], or participants < 1.
    """
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ConfigError(f"client noise sigma = {sigma}: must be a finite number >= 0")
    if not 0 < honest_fraction <= 1:
        raise ConfigError(
            f"honest_fraction = {honest_fraction}: must be in (0, 1] (share of participants "
            "trusted to add their noise)"
        )
    if participants < 1:
        raise ConfigError(f"participants = {participants}: must be >= 1")
    honest = honest_participants(honest_fraction, participants)
    return sigma * sigma / (2.0 * honest)


def add_share(
    values: npt.NDArray[np.uint32], config: RoundConfig, source: CsprngGaussian
) -> npt.NDArray[np.uint32]:
    """This participant's share of the round's client-level noise, added to its encoding.

    Args:
        values: `quantize.encode`'s output for this round, shape (d + 1,), weight slot last.
        config: the round; `config.client_noise` must be set.
        source: the CSPRNG.

    Returns:
        A new uint32 array: values + Sk(mu) mod 2^b on the first d elements.

    Raises:
        ConfigError: the round has no client-level noise, or it does not fit the modulus.
    """
    noise = config.client_noise
    if noise is None:
        raise ConfigError(f"round {config.round} has no client-level noise setting")
    participants = len(config.selected)
    noise.check_room(config.quant, participants)
    return add_skellam_share(
        values,
        modulus_bits=config.quant.modulus_bits,
        sigma=noise.sigma_levels(config.quant),
        honest_fraction=noise.honest_fraction,
        participants=participants,
        source=source,
    )


def add_skellam_share(
    values: npt.NDArray[np.uint32],
    *,
    modulus_bits: int,
    sigma: float,
    honest_fraction: float,
    participants: int,
    source: CsprngGaussian,
    exclude_last: bool = True,
) -> npt.NDArray[np.uint32]:
    """This participant's Skellam share added to a field vector, mod 2^b (a new array).

    Args:
        values: uint32 elements of Z_{2^b}, shape (d + 1,) with the weight slot last.
        modulus_bits: b.
        sigma: standard deviation of the aggregate's noise, in quantized units.
        honest_fraction: share of the participants assumed to add their noise.
        participants: n, the participants of the round.
        source: the CSPRNG.
        exclude_last: leave the last element (the weight slot) untouched.

    Returns:
        uint32 array of the same shape, every element < 2^b.

    Raises:
        ConfigError: a parameter is out of range (see `share_mu`) or b is not allowed.
    """
    if modulus_bits not in ALLOWED_MODULUS_BITS:
        raise ConfigError(f"modulus_bits = {modulus_bits}: must be one of {ALLOWED_MODULUS_BITS}")
    mu = share_mu(sigma, honest_fraction, participants)
    values = np.asarray(values, dtype=np.uint32)
    count = values.size - 1 if exclude_last else values.size
    noise = skellam(count, mu, source)
    mask = np.int64((1 << modulus_bits) - 1)
    out = values.copy()
    # Two's complement wrap: (v + noise) mod 2^b, computed in int64 to avoid overflow.
    out[:count] = ((values[:count].astype(np.int64) + noise) & mask).astype(np.uint32)
    return out


def skellam(count: int, mu: float, source: CsprngGaussian) -> npt.NDArray[np.int64]:
    """`count` draws of Sk(mu) = Poisson(mu) - Poisson(mu) (variance 2 mu)."""
    return poisson(count, mu, source) - poisson(count, mu, source)


def poisson(count: int, lam: float, source: CsprngGaussian) -> npt.NDArray[np.int64]:
    """`count` draws of Poisson(lam) from the CSPRNG (inversion below 10, PTRS above)."""
    if lam < 0 or not math.isfinite(lam):
        raise ConfigError(f"Poisson rate {lam}: must be a finite number >= 0")
    if count == 0 or lam == 0:
        return np.zeros(count, dtype=np.int64)
    if lam < _PTRS_THRESHOLD:
        return _poisson_inversion(count, lam, source)
    return _poisson_ptrs(count, lam, source)


def _poisson_inversion(count: int, lam: float, source: CsprngGaussian) -> npt.NDArray[np.int64]:
    u = source.uniform(count)
    k = np.zeros(count, dtype=np.int64)
    term = math.exp(-lam)
    cumulative = np.full(count, term)
    pending = u > cumulative
    step = 0
    # Each pass moves every pending draw one value up; P(k > lam + 40) is negligible, and
    # the loop still ends once every uniform is covered.
    while pending.any():
        step += 1
        term *= lam / step
        k[pending] += 1
        cumulative[pending] += term
        pending &= u > cumulative
        if term == 0.0:  # float underflow far in the tail: stop where we are
            break
    return k


def _poisson_ptrs(count: int, lam: float, source: CsprngGaussian) -> npt.NDArray[np.int64]:
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(count, dtype=np.int64)
    pending = np.arange(count)
    while pending.size:
        u = source.uniform(pending.size) - 0.5
        v = source.uniform(pending.size)
        us = 0.5 - np.abs(u)
        k = np.floor((2 * a / us + b) * u + lam + 0.43)
        quick = (us >= 0.07) & (v <= vr)
        possible = ~quick & (k >= 0) & ~((us < 0.013) & (v > us))
        log_target = -lam + k * loglam - torch.lgamma(torch.from_numpy(k + 1.0)).numpy()
        with np.errstate(divide="ignore"):
            slow = possible & (
                np.log(v) + math.log(inv_alpha) - np.log(a / (us * us) + b) <= log_target
            )
        accepted = quick | slow
        out[pending[accepted]] = k[accepted].astype(np.int64)
        pending = pending[~accepted]
    return out
