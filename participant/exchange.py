"""From a local update to wire chunks, and from the aggregate's chunks to a mean change.

The crypto work is `accord.crypto.pipeline`'s (`protect`, `reveal`) and
`accord.crypto.quantize`'s; this module only chooses the encoding the round's profile
asks for. Weights travel inside the vector (DESIGN.md guarantee 7): the last element
is the participant's sample count, capped at the round's `weight_cap`.

    secure profiles  quantize.encode(clip(delta), weight) -> uint32 in Z_2^b, weight last
                     [+ this participant's Skellam share of the client-level noise, on
                      every element but the weight slot, when the round sets client_noise]
    none             float32 [clip(delta) * weight, weight]; mean = sum[:-1] / sum[-1]

Client-level noise (`client_noise.py`, DESIGN.md guarantee 4) is drawn from a CSPRNG
(`privacy.CsprngGaussian`, a fresh key per update unless a test injects one); the
plaintext profile refuses it, since its shares only hide anything inside the masked sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from accord.crypto import masks, pipeline, quantize
from accord.crypto.ckks import SecretContext
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.errors import ConfigError, IntegrityError
from accord.participant.trainer import LocalUpdate

if TYPE_CHECKING:  # opacus loads with privacy.py: only when client-level noise is on
    from accord.participant.privacy import CsprngGaussian


def encode_update(
    update: LocalUpdate,
    config: RoundConfig,
    rng: np.random.Generator,
    *,
    noise_source: CsprngGaussian | None = None,
) -> npt.NDArray[np.uint32] | npt.NDArray[np.float32]:
    """The protected vector's plaintext: adapter change and weight slot, shape (d + 1,).

    Args:
        update: the local update.
        config: the round.
        rng: stochastic rounding's generator.
        noise_source: the CSPRNG of the client-level noise share (a fresh one when None).

    Raises:
        ConfigError: the round asks for client-level noise with profile none, or the
            noise does not fit the modulus.
    """
    if config.profile is not Profile.NONE:
        values = quantize.encode(update.delta, update.sample_count, config.quant, rng)
        if config.client_noise is None:
            return values
        from accord.participant import client_noise, privacy

        return client_noise.add_share(values, config, noise_source or privacy.CsprngGaussian())
    if config.client_noise is not None:  # RoundConfig refuses this too; never send it in clear
        raise ConfigError("client-level noise needs a secure profile, not none")
    weight = min(update.sample_count, config.quant.cap)
    clipped = quantize.clip_l2(update.delta, config.quant.clip_norm)
    values = np.empty(clipped.size + 1, dtype=np.float32)
    np.multiply(clipped, np.float32(weight), out=values[:-1])
    values[-1] = weight
    return values


def protect_update(
    update: LocalUpdate,
    config: RoundConfig,
    mask_terms: Sequence[masks.MaskTerm],
    *,
    secret: SecretContext | None = None,
    rng: np.random.Generator | None = None,
    noise_source: CsprngGaussian | None = None,
    runner: pipeline.ChunkRunner = pipeline.SERIAL,
) -> Iterator[bytes]:
    """The update as wire chunks, in order (noised, masked and encrypted as the round says).

    `secret` is the federation's CKKS key, needed by the CKKS profiles only;
    `noise_source` the CSPRNG of the client-level noise share (fresh when None);
    `runner` where the chunks are protected (the daemon's `workers.ChunkWorkers`).
    """
    values = encode_update(
        update, config, rng or np.random.default_rng(), noise_source=noise_source
    )
    return pipeline.protect(
        values,
        profile=config.profile,
        federation_id=config.federation_id,
        round=config.round,
        mask_terms=mask_terms,
        modulus_bits=config.quant.modulus_bits,
        packing=config.packing,
        secret=secret,
        runner=runner,
    )


def reveal_mean(
    chunks: Iterable[bytes],
    config: RoundConfig,
    *,
    secret: SecretContext | None = None,
    runner: pipeline.ChunkRunner = pipeline.SERIAL,
) -> npt.NDArray[np.float32]:
    """The weighted mean change of the survivors, shape (d,).

    `runner` decrypts the chunks (the daemon's `workers.ChunkWorkers`), as they arrive.

    Raises:
        IntegrityError: the total weight is not positive.
        Malformed, Oversized: a chunk does not belong to this round's aggregate.
    """
    sums = pipeline.reveal(
        chunks,
        profile=config.profile,
        element_count=config.element_count,
        modulus_bits=config.quant.modulus_bits,
        packing=config.packing,
        secret=secret,
        federation_id=config.federation_id,
        round=config.round,
        runner=runner,
    )
    if config.profile is not Profile.NONE:
        mean, total_weight = quantize.decode(sums, config.quant)
    else:
        total_weight = float(sums[-1])
        mean = (
            (sums[:-1] / np.float32(total_weight)).astype(np.float32)
            if total_weight > 0
            else sums[:-1]
        )
    if total_weight <= 0:
        raise IntegrityError(f"the aggregate of round {config.round} carries no weight")
    return mean
