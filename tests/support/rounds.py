"""The coordinator's running sum for a round without CKKS, as the tests add uploads to it."""

from __future__ import annotations

from accord.crypto.aggregate import UpdateSum
from accord.crypto.messages import RoundConfig


def plain_sum(config: RoundConfig) -> UpdateSum:
    """An empty `UpdateSum` of `config`'s round, profile and size, without CKKS."""
    return UpdateSum(
        config.profile,
        config.element_count,
        modulus_bits=config.quant.modulus_bits,
        packing=None,
        public=None,
        federation_id=config.federation_id,
        round=config.round,
    )
