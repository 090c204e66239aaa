"""An update goes out through the crypto pipeline and the mean comes back weighted."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from accord.crypto import integrity, wire
from accord.crypto.aggregate import UpdateSum
from accord.crypto.messages import RoundConfig
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import IntegrityError, InternalError, Malformed
from accord.participant.exchange import protect_update, reveal_mean
from accord.participant.training.protocol import LocalUpdate
from tests.support.ckks import shared_secret_context
from tests.support.rounds import plain_sum

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
    total = plain_sum(config)
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


# ---- aggregate integrity (issue 12, finding 3), through exchange and the real pipeline ----

INTEGRITY_KEY = bytes(range(32))
MEMBERS = ("a", "b", "c")


def ckks_round(round: int = 1) -> RoundConfig:
    return RoundConfig(
        federation_id="accord-demo",
        round=round,
        profile=Profile.CKKS,
        selected=MEMBERS,
        threshold=2,
        quant=QuantSpec(max_participants=3, clip_norm=10.0),
        element_count=integrity.protected_length(PARAMETERS, Profile.CKKS),
        packing=choose_packing(16, 3),
    )


def member_updates() -> dict[str, LocalUpdate]:
    return {
        name: LocalUpdate(np.full(PARAMETERS, value, np.float32), sample_count=count, metrics={})
        for name, value, count in (("a", 0.2, 100), ("b", -0.1, 200), ("c", 0.05, 100))
    }


def ckks_uploads(config: RoundConfig) -> dict[str, list[bytes]]:
    secret = shared_secret_context()
    return {
        name: list(
            protect_update(
                update,
                config,
                [],
                secret=secret,
                rng=np.random.default_rng(0),
                integrity_key=INTEGRITY_KEY,
                participant=name,
            )
        )
        for name, update in member_updates().items()
    }


def ckks_sum(config: RoundConfig, uploads: list[list[bytes]]) -> list[bytes]:
    total = UpdateSum(
        config.profile,
        config.element_count,
        modulus_bits=16,
        packing=config.packing,
        public=shared_secret_context().public(),
        federation_id=config.federation_id,
        round=config.round,
    )
    for chunks in uploads:
        for chunk in chunks:
            total.add(chunk)
    return list(total.chunks())


def reveal(chunks: list[bytes], config: RoundConfig, survivors=MEMBERS) -> np.ndarray:
    return reveal_mean(
        chunks,
        config,
        secret=shared_secret_context(),
        integrity_key=INTEGRITY_KEY,
        survivors=survivors,
    )


def test_the_honest_encrypted_aggregate_passes_and_gives_the_weighted_mean() -> None:
    config = ckks_round()
    uploads = ckks_uploads(config)
    mean = reveal(ckks_sum(config, list(uploads.values())), config)
    assert mean.shape == (PARAMETERS,)
    # Stochastic rounding on a coarse grid: each element within one level, the average close.
    expected = (100 * 0.2 - 200 * 0.1 + 100 * 0.05) / 400
    np.testing.assert_allclose(mean, expected, atol=0.0125 + 1e-6)
    assert abs(float(mean.mean()) - expected) < 0.01


def test_an_aggregate_that_is_not_the_survivors_sum_is_never_applied() -> None:
    config = ckks_round()
    uploads = ckks_uploads(config)
    replayed = ckks_uploads(ckks_round(round=2))["c"]
    served = {
        "one member's upload": [uploads["a"]],
        "a dropped contribution": [uploads["a"], uploads["b"]],
        "a duplicated contribution": [uploads["a"], uploads["b"], uploads["c"], uploads["c"]],
    }
    for what, parts in served.items():
        with pytest.raises(IntegrityError, match=r"round 1 is not the sum of the uploads of"):
            reveal(ckks_sum(config, parts), config)
            pytest.fail(f"not caught: {what}")
    # A contribution of round 2, its chunk headers rewritten to round 1 (CRC unkeyed).
    relabelled = [
        wire.encode_chunk(dataclasses.replace(header, round=1), payload)
        for header, payload in map(wire.decode_chunk, replayed)
    ]
    with pytest.raises(IntegrityError):
        reveal(ckks_sum(config, [uploads["a"], uploads["b"], relabelled]), config)
    honest = ckks_sum(config, list(uploads.values()))
    with pytest.raises(IntegrityError):
        reveal(honest, config, survivors=("a", "b"))
    # A scaled sum: 2 (a + b) served for survivors {a, b} (the packing allows 4 summands).
    doubled = ckks_sum(config, [uploads["a"], uploads["b"], uploads["a"], uploads["b"]])
    with pytest.raises(IntegrityError):
        reveal(doubled, config, survivors=("a", "b"))
    reveal(ckks_sum(config, [uploads["a"], uploads["b"]]), config, survivors=("a", "b"))


def test_a_secure_profile_without_the_integrity_key_is_refused() -> None:
    config = ckks_round()
    update = member_updates()["a"]
    with pytest.raises(InternalError, match="integrity key"):
        list(protect_update(update, config, [], secret=shared_secret_context()))
    chunks = ckks_sum(config, list(ckks_uploads(config).values()))
    with pytest.raises(InternalError, match="survivor set"):
        reveal_mean(chunks, config, secret=shared_secret_context(), integrity_key=INTEGRITY_KEY)
