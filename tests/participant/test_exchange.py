"""An update goes out through the crypto pipeline and the mean comes back weighted."""

from __future__ import annotations

import numpy as np
import pytest

from accord.crypto.aggregate import UpdateSum
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import Malformed
from accord.participant.exchange import protect_update, reveal_mean
from accord.participant.trainer import LocalUpdate

PARAMETERS = 50


def plaintext_round(round: int = 1) -> RoundConfig:
    return RoundConfig(
        federation_id="accord-demo",
        round=round,
        profile=Profile.NONE,
        selected=("a", "b"),
        threshold=2,
        quant=QuantSpec(max_participants=2, clip_norm=10.0),
        element_count=PARAMETERS + 1,
    )


def aggregate(config: RoundConfig, updates: list[LocalUpdate]) -> list[bytes]:
    total = UpdateSum(
        config.profile,
        config.element_count,
        modulus_bits=16,
        packing=None,
        public=None,
        federation_id=config.federation_id,
        round=config.round,
    )
    for update in updates:
        for chunk in protect_update(update, config, []):
            total.add(chunk)
    return list(total.chunks())


def test_the_mean_is_weighted_by_sample_counts() -> None:
    config = plaintext_round()
    first = LocalUpdate(np.full(PARAMETERS, 0.1, np.float32), sample_count=100, metrics={})
    second = LocalUpdate(np.full(PARAMETERS, -0.1, np.float32), sample_count=300, metrics={})
    mean = reveal_mean(aggregate(config, [first, second]), config)
    np.testing.assert_allclose(mean, (100 * 0.1 - 300 * 0.1) / 400, rtol=1e-6)


def test_an_aggregate_of_another_round_is_refused() -> None:
    update = LocalUpdate(np.zeros(PARAMETERS, np.float32), sample_count=1, metrics={})
    chunks = aggregate(plaintext_round(round=1), [update, update])
    with pytest.raises(Malformed):
        reveal_mean(chunks, plaintext_round(round=2))
