"""Client-level DP of the aggregate: the round's noise setting and the room it needs in Z_2^b.

Theory of operation (DESIGN.md guarantee 4; Agarwal, Kairouz and Liu 2021, "The Skellam
Mechanism for Differentially Private Federated Learning"). Each of the n participants
of a round adds Skellam noise Sk(mu) to its quantized update before masking
(`participant/client_dp_share.py`); Sk is closed under addition, so the aggregate carries
Sk(k mu) from the k participants that really added theirs. With h = ceil(f n) of them
assumed honest (f = `honest_fraction`), mu = sigma^2 / (2 h) makes the aggregate's
noise variance at least sigma^2 whenever at least h of the n are honest and survive.

Units. The federation configures `noise_multiplier` z against the update clipping
bound C, as in DP-FedAvg (McMahan et al. 2018): sigma = z C in value units, i.e.
sigma = z C / step in quantized levels (`QuantSpec.step`). One participant moves the
quantized sum by at most C / step + sqrt(d) levels in L2 (its clipped update, plus
stochastic rounding's error of less than one level in each of d coordinates): that
is the sensitivity `guarantee` divides by, so the noise multiplier the ledger records
for accounting is a worst-case bound, not the configured z.

Room in the modulus. The decoded sum is the centred lift of the sum mod 2^b, so it
must stay strictly inside (-2^(b-1), 2^(b-1)). Each participant's quantized value
is at most L = min(Q, ceil(C / step)) levels in magnitude, and the noise of all n
shares has standard deviation sigma sqrt(n / h); Accord requires

    n L + 6 sigma sqrt(n / h) < 2^(b-1)                                  (*)

`QuantSpec` reserves ceil(log2 n_max) headroom bits for the sum alone, so (*) leaves
no room for noise when the quantization grid spans [-C, C] exactly. `value_bound`
widens the grid: with B = k C (coordinates are never larger than C, so nothing more
is clipped), C spans Q / k levels and both terms of (*) shrink by k.
`widened_value_bound` picks the smallest such B; the price is log2(k) bits of
quantization precision, far below the noise itself.

The weight slot (the participant's capped sample count) gets no noise: the total
weight of the survivors is released exactly, and client-level DP covers the sum of the
updates, not that count. Nothing here draws randomness or reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from accord.crypto.quantize import QuantSpec
from accord.errors import ConfigError

__all__ = [
    "TAIL_STDS",
    "ClientNoise",
    "Guarantee",
    "check_federation",
    "guarantee",
    "honest_participants",
    "level_bound",
    "widened_value_bound",
]

TAIL_STDS = 6.0
"""Standard deviations of the summed noise that (*) keeps inside the modulus."""

MECHANISM = "skellam"
"""The name the ledgers record for this mechanism."""


@dataclass(frozen=True)
class ClientNoise:
    """A federation's client-level noise setting, carried by every round's `RoundConfig`.

    Attributes:
        noise_multiplier: z, the aggregate's noise standard deviation over the update
            clipping bound C (> 0; a federation without client-level noise has no
            `ClientNoise` at all).
        honest_fraction: f, the share of a round's participants assumed to add their
            noise, in (0, 1]; each share is scaled so that ceil(f n) of them suffice.
        delta: the delta at which the audit reports the client-level epsilon.
    """

    noise_multiplier: float
    honest_fraction: float = 1.0
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not (_real(self.noise_multiplier) and 0 < self.noise_multiplier < math.inf):
            raise ConfigError(
                f"[coordinator.client_dp] noise_multiplier = {self.noise_multiplier!r}: must be "
                "a finite number > 0 (the aggregate's noise over the clipping bound; remove the "
                "table or set 0 to switch client-level noise off)"
            )
        if not (_real(self.honest_fraction) and 0 < self.honest_fraction <= 1):
            raise ConfigError(
                f"[coordinator.client_dp] honest_fraction = {self.honest_fraction!r}: must be in "
                "(0, 1] (the share of participants trusted to add their noise)"
            )
        if not (_real(self.delta) and 0 < self.delta < 1):
            raise ConfigError(f"[coordinator.client_dp] delta = {self.delta!r}: must be in (0, 1)")

    def sigma_levels(self, quant: QuantSpec) -> float:
        """sigma = z C / step: the aggregate's noise standard deviation, in quantized levels."""
        return self.noise_multiplier * quant.clip_norm / quant.step

    def share_mu(self, quant: QuantSpec, participants: int) -> float:
        """mu of each participant's Skellam share: sigma^2 / (2 ceil(f n)) (variance 2 mu)."""
        honest = honest_participants(self.honest_fraction, participants)
        return self.sigma_levels(quant) ** 2 / (2.0 * honest)

    def check_room(self, quant: QuantSpec, participants: int) -> None:
        """Refuse a round whose noisy sum could wrap around the modulus (condition (*)).

        Raises:
            ConfigError: n L + 6 sigma sqrt(n / h) >= 2^(b-1), or C spans less than one level.
        """
        levels = quant.clip_norm / quant.step
        if levels < 1:
            raise ConfigError(
                f"client-level noise: the clipping bound spans {levels:.3g} quantization levels "
                f"(value_bound = {quant.bound:g}, {quant.modulus_bits}-bit modulus); raise "
                "modulus_bits or lower noise_multiplier"
            )
        honest = honest_participants(self.honest_fraction, participants)
        need = participants * level_bound(quant) + TAIL_STDS * self.sigma_levels(quant) * math.sqrt(
            participants / honest
        )
        room = float(1 << (quant.modulus_bits - 1))
        if not need < room:
            raise ConfigError(
                f"client-level noise: {participants} updates of up to {level_bound(quant)} "
                f"levels plus {TAIL_STDS:g} standard deviations of noise need {need:.0f} of the "
                f"{room:.0f} levels a {quant.modulus_bits}-bit modulus leaves; raise "
                "modulus_bits, lower noise_multiplier, or widen value_bound"
            )


@dataclass(frozen=True)
class Guarantee:
    """What a finished round's aggregate is guaranteed to carry, for the ledger.

    Attributes:
        honest: h = ceil(f n), the participants assumed honest.
        share_mu: mu of each participant's share (levels^2; variance 2 mu).
        sigma_levels: the configured sigma = z C / step.
        noise_std_levels: the noise standard deviation the survivors are guaranteed to
            have added: sqrt(max(0, s - (n - h)) 2 mu) (levels).
        sensitivity_levels: C / step + sqrt(d), one participant's worst-case L2 effect.
        noise_multiplier: noise_std_levels / sensitivity_levels, what the audit accounts.
    """

    honest: int
    share_mu: float
    sigma_levels: float
    noise_std_levels: float
    sensitivity_levels: float
    noise_multiplier: float


def guarantee(
    noise: ClientNoise, quant: QuantSpec, *, selected: int, survivors: int, parameters: int
) -> Guarantee:
    """The noise a round's aggregate of `survivors` of `selected` shares is sure to carry.

    At most n - h participants are assumed to skip their share, so at least
    s - (n - h) of the s survivors added theirs; a round with fewer honest survivors
    than that has no guaranteed noise (multiplier 0, epsilon unbounded).

    Args:
        noise: the round's setting.
        quant: the round's quantization.
        selected: n, the participants of the round (each share is scaled to it).
        survivors: s, whose uploads the aggregate sums.
        parameters: d, the adapter parameters (the vector without its weight slot).
    """
    honest = honest_participants(noise.honest_fraction, selected)
    mu = noise.share_mu(quant, selected)
    sure = max(0, survivors - (selected - honest))
    std = math.sqrt(sure * 2.0 * mu)
    sensitivity = quant.clip_norm / quant.step + math.sqrt(max(0, parameters))
    return Guarantee(
        honest=honest,
        share_mu=mu,
        sigma_levels=noise.sigma_levels(quant),
        noise_std_levels=std,
        sensitivity_levels=sensitivity,
        noise_multiplier=std / sensitivity,
    )


def check_federation(
    noise: ClientNoise, *, modulus_bits: int, clip_norm: float, participants: int
) -> None:
    """Refuse a setting under which some round of 2..n participants would have no room.

    Raises:
        ConfigError: as `ClientNoise.check_room`, for the first round size that fails.
    """
    for selected in range(2, participants + 1):
        bound = widened_value_bound(
            noise,
            modulus_bits=modulus_bits,
            max_participants=participants,
            clip_norm=clip_norm,
            participants=selected,
        )
        quant = QuantSpec(
            modulus_bits=modulus_bits,
            max_participants=participants,
            clip_norm=clip_norm,
            value_bound=bound,
        )
        noise.check_room(quant, selected)


def honest_participants(honest_fraction: float, participants: int) -> int:
    """h = ceil(f n), at least 1: how many of n participants are assumed to add noise."""
    if participants < 1:
        raise ConfigError(f"participants = {participants}: must be >= 1")
    # A hair below the next integer counts as it: 0.7 * 10 is 7.000000000000001 in floats.
    return max(1, math.ceil(honest_fraction * participants - 1e-9))


def level_bound(quant: QuantSpec) -> int:
    """L = min(Q, ceil(C / step)): the largest magnitude one quantized coordinate takes."""
    return min(quant.max_level, math.ceil(quant.clip_norm / quant.step - 1e-9))


def widened_value_bound(
    noise: ClientNoise,
    *,
    modulus_bits: int,
    max_participants: int,
    clip_norm: float,
    participants: int,
) -> float | None:
    """The smallest per-coordinate bound B >= C under which condition (*) holds.

    Returns:
        None when the plain grid (B = C) already leaves room; else B = k C.
    """
    plain = QuantSpec(
        modulus_bits=modulus_bits, max_participants=max_participants, clip_norm=clip_norm
    )
    honest = honest_participants(noise.honest_fraction, participants)
    spread = participants + TAIL_STDS * noise.noise_multiplier * math.sqrt(participants / honest)
    room = (1 << (modulus_bits - 1)) - participants - 1
    if room <= 0:
        return None  # nothing fits; `check_room` says so
    # With B = k C, n L + 6 sigma sqrt(n / h) <= n (Q / k + 1) + 6 z sqrt(n / h) Q / k, which
    # stays below 2^(b-1) once k >= spread Q / room.
    widen = spread * plain.max_level / room
    if widen <= 1:
        return None
    # A relative margin keeps float rounding of step = B / Q on the safe side.
    return clip_norm * widen * (1 + 1e-9)


def _real(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not math.isnan(float(value))
    )
