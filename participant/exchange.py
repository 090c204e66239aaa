"""From a local update to wire chunks, and from the aggregate's chunks to a mean change.

The crypto work is `accord.crypto.pipeline`'s (`protect`, `reveal`) and
`accord.crypto.quantize`'s; this module only chooses the encoding the round's profile
asks for. Weights travel inside the vector (DESIGN.md guarantee 7): the last element
is the participant's sample count, capped at the round's `weight_cap`.

    secure profiles  quantize.encode(clip(delta), weight) -> uint32 in Z_2^b, weight last
    none             float32 [clip(delta) * weight, weight]; mean = sum[:-1] / sum[-1]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from accord.crypto import masks, pipeline, quantize
from accord.crypto.ckks import SecretContext
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.errors import IntegrityError
from accord.participant.trainer import LocalUpdate


def encode_update(
    update: LocalUpdate, config: RoundConfig, rng: np.random.Generator
) -> npt.NDArray[np.uint32] | npt.NDArray[np.float32]:
    """The protected vector's plaintext: adapter change and weight slot, shape (d + 1,)."""
    if config.profile is not Profile.NONE:
        return quantize.encode(update.delta, update.sample_count, config.quant, rng)
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
) -> Iterator[bytes]:
    """The update as wire chunks, in order (masked and encrypted as the profile says).

    `secret` is the federation's CKKS key, needed by the CKKS profiles only.
    """
    values = encode_update(update, config, rng or np.random.default_rng())
    return pipeline.protect(
        values,
        profile=config.profile,
        federation_id=config.federation_id,
        round=config.round,
        mask_terms=mask_terms,
        modulus_bits=config.quant.modulus_bits,
        packing=config.packing,
        secret=secret,
    )


def reveal_mean(
    chunks: Iterable[bytes], config: RoundConfig, *, secret: SecretContext | None = None
) -> npt.NDArray[np.float32]:
    """The weighted mean change of the survivors, shape (d,).

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
