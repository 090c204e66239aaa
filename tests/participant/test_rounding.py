"""Stochastic rounding draws from a per-round CSPRNG key: with the key fixed, a secure
profile's mean is reproducible and differs from the plaintext mean only by the
quantization bound."""

from __future__ import annotations

import numpy as np

from accord.crypto import integrity, quantize
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.participant.exchange import protect_update, reveal_mean
from accord.participant.training.protocol import LocalUpdate
from tests.support.rounds import plain_sum

PARAMETERS = 200
SECRET = bytes(range(32))
INTEGRITY_KEY = bytes(range(32, 64))
MEMBERS = ("a", "b")


def round_config(profile: Profile, round: int = 1) -> RoundConfig:
    return RoundConfig(
        federation_id="accord-demo",
        round=round,
        profile=profile,
        selected=MEMBERS,
        threshold=2,
        quant=QuantSpec(max_participants=2, clip_norm=10.0),
        element_count=integrity.protected_length(PARAMETERS, profile),
        graph_seed=bytes(32) if profile.uses_masks else b"",
    )


def updates() -> list[LocalUpdate]:
    generator = np.random.default_rng(3)
    return [
        LocalUpdate(generator.normal(0, 0.3, PARAMETERS).astype(np.float32), n, metrics={})
        for n in (100, 300)
    ]


def mean(config: RoundConfig, secret: bytes | None) -> np.ndarray:
    total = plain_sum(config)
    for index, update in enumerate(updates()):
        rng = None
        if secret is not None:
            key = quantize.rounding_key(secret + bytes([index]), "accord-demo", config.round)
            rng = quantize.CsprngUniforms(key)
        chunks = protect_update(
            update,
            config,
            [],
            rng=rng,
            integrity_key=INTEGRITY_KEY,
            participant=MEMBERS[index],
        )
        for chunk in chunks:
            total.add(chunk)
    return reveal_mean(list(total.chunks()), config, integrity_key=INTEGRITY_KEY, survivors=MEMBERS)


def test_a_fixed_rounding_key_reproduces_the_secure_mean_within_the_quantization_bound() -> None:
    secure = round_config(Profile.MASKS)
    first, second = mean(secure, SECRET), mean(secure, SECRET)
    np.testing.assert_array_equal(first, second)
    plain = mean(round_config(Profile.NONE), None)
    # Each participant sends x * w in levels of clip_norm (docs/ml.md, "Clip norm and
    # quantization") off by less than one level: the weighted mean of two is off by less
    # than 2 * clip_norm / (sum of weights).
    bound = 2 * secure.quant.clip_norm / 400
    assert np.max(np.abs(first - plain)) <= bound
    assert not np.array_equal(first, mean(secure, None))  # a fresh key rounds otherwise


def test_rounding_keys_differ_per_round_and_uniforms_lie_in_the_unit_interval() -> None:
    assert quantize.rounding_key(SECRET, "f", 1) != quantize.rounding_key(SECRET, "f", 2)
    draws = quantize.CsprngUniforms(quantize.rounding_key(SECRET, "f", 1)).random((1000,))
    assert draws.shape == (1000,) and draws.min() >= 0 and draws.max() < 1
    assert 0.45 < float(draws.mean()) < 0.55
