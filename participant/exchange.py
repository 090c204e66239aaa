"""From a local update to wire chunks, and from the aggregate's chunks to a mean change.

The crypto work is `accord.crypto.pipeline`'s (`protect`, `reveal`) and
`accord.crypto.quantize`'s; this module only chooses the encoding the round's profile
asks for. Weights travel inside the vector (DESIGN.md guarantee 7): the last element
is the participant's sample count, capped at the round's `weight_cap`.

    secure profiles  quantize.encode(clip(delta), weight) -> uint32 in Z_2^b, weight last
                     [+ this participant's Skellam share of the client-level noise, on
                      every element but the weight slot, when the round sets client_noise]
                     [+ L integrity tags (`crypto/integrity.py`) over all of the above]
    none             float32 [clip(delta) * weight, weight]; mean = sum[:-1] / sum[-1]

`reveal_mean` checks the tags of the aggregate against the survivor set before it
decodes anything: an aggregate that is not the sum of the survivors' uploads raises
IntegrityError and is never applied.

Client-level noise (`client_noise.py`, DESIGN.md guarantee 4) is drawn from a CSPRNG
(`csprng.CsprngGaussian`, a fresh key per update unless a test injects one); the
plaintext profile refuses it, since its shares only hide anything inside the masked sum.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from accord.crypto import integrity, masks, pipeline, quantize
from accord.crypto.ckks import SecretContext
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.errors import ConfigError, IntegrityError, InternalError
from accord.participant.training.protocol import LocalUpdate

if TYPE_CHECKING:  # opacus loads with privacy.py: only when client-level noise is on
    from accord.participant.training.csprng import CsprngGaussian


def encode_update(
    update: LocalUpdate,
    config: RoundConfig,
    rng: quantize.Uniforms,
    *,
    noise_source: CsprngGaussian | None = None,
    integrity_key: bytes | None = None,
    participant: str = "",
) -> npt.NDArray[np.uint32] | npt.NDArray[np.float32]:
    """The protected vector's plaintext, shape (config.element_count,).

    Adapter change and weight slot, then (secure profiles) the integrity tags.

    Args:
        update: the local update.
        config: the round.
        rng: stochastic rounding's generator.
        noise_source: the CSPRNG of the client-level noise share (a fresh one when None).
        integrity_key: the federation's integrity key; required by the secure profiles.
        participant: this participant's name (the tags bind it).

    Raises:
        ConfigError: the round asks for client-level noise with profile none, or the
            noise does not fit the modulus.
        UsageError: a secure profile without an integrity key or participant name.
    """
    if config.profile is not Profile.NONE:
        if integrity_key is None or not participant:
            raise InternalError(
                f"profile {config.profile} tags every update: pass the federation's "
                "integrity key and the participant's name"
            )
        values = quantize.encode(update.delta, update.sample_count, config.quant, rng)
        if config.client_noise is not None:
            from accord.participant import client_dp_share as client_noise
            from accord.participant.training import csprng

            source = noise_source or csprng.CsprngGaussian()
            values = client_noise.add_share(values, config, source)
        # The tags cover the noised values: they must be linear in what is summed.
        return integrity.append_tags(
            values,
            integrity_key,
            federation_id=config.federation_id,
            round=config.round,
            participant=participant,
            modulus_bits=config.quant.modulus_bits,
        )
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
    rng: quantize.Uniforms | None = None,
    noise_source: CsprngGaussian | None = None,
    integrity_key: bytes | None = None,
    participant: str = "",
    runner: pipeline.ChunkRunner = pipeline.SERIAL,
) -> Iterator[bytes]:
    """The update as wire chunks, in order (noised, tagged, masked and encrypted).

    `secret` is the federation's CKKS key, needed by the CKKS profiles only;
    `noise_source` the CSPRNG of the client-level noise share (fresh when None);
    `integrity_key` and `participant` as for `encode_update` (secure profiles);
    `runner` where the chunks are protected (the daemon's `workers.ChunkWorkers`).
    """
    # Stochastic rounding draws from a CSPRNG keyed per round (a fresh os.urandom secret
    # unless a test passes `rng`, e.g. `quantize.CsprngUniforms(quantize.rounding_key(...))`).
    source = rng or quantize.CsprngUniforms(
        quantize.rounding_key(os.urandom(32), config.federation_id, config.round)
    )
    values = encode_update(
        update,
        config,
        source,
        noise_source=noise_source,
        integrity_key=integrity_key,
        participant=participant,
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
    integrity_key: bytes | None = None,
    survivors: Sequence[str] = (),
    runner: pipeline.ChunkRunner = pipeline.SERIAL,
) -> npt.NDArray[np.float32]:
    """The weighted mean change of the survivors, shape (d,).

    Args:
        chunks: the aggregate's chunks.
        config: the round.
        secret: the CKKS key (CKKS profiles).
        integrity_key: the federation's integrity key (secure profiles).
        survivors: whose uploads the aggregate must sum (secure profiles).
        runner: decrypts the chunks as they arrive (the daemon's `workers.ChunkWorkers`).

    Raises:
        IntegrityError: the aggregate is not the sum of the uploads of `survivors`, or
            the total weight is not positive.
        InternalError: a secure profile without an integrity key or survivors.
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
        if integrity_key is None or not survivors:
            raise InternalError(
                f"profile {config.profile}: checking the aggregate needs the integrity key "
                "and the survivor set"
            )
        body = integrity.check(
            cast("npt.NDArray[np.uint32]", sums),  # uint32 for every secure profile
            integrity_key,
            federation_id=config.federation_id,
            round=config.round,
            survivors=survivors,
            modulus_bits=config.quant.modulus_bits,
        )
        mean, weight = quantize.decode(body, config.quant)
        total_weight = float(weight)
    else:
        total_weight = float(sums[-1])
        mean = (sums[:-1] / np.float32(total_weight or 1.0)).astype(np.float32)  # > 0: below
    if total_weight <= 0:
        raise IntegrityError(f"the aggregate of round {config.round} carries no weight")
    return mean
