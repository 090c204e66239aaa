"""Client-level DP in the upload pipeline: each participant's Skellam share, added before
masking, makes the aggregate differ from the noise-free sum by noise of the configured
variance; the weight slot is untouched; the setting travels in the round's parameters
and the participant's ledger records the share it added."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from accord.coordinator.aggregation.round_sum import round_config
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.store.persistence import round_config_from_json, round_config_to_json
from accord.core import configfile
from accord.crypto import integrity, pipeline, quantize
from accord.crypto.client_dp import ClientNoise
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.errors import ConfigError
from accord.participant import exchange
from accord.participant import privacy_ledger as ledger
from accord.participant.config import ParticipantConfig
from accord.participant.training.csprng import CsprngGaussian
from accord.participant.training.protocol import LocalUpdate
from accord.wire.round_config import round_config_from_proto, round_config_to_proto
from tests.support.rounds import plain_sum

NAMES = ("energy", "residential", "urban")
PARAMETERS = 20_000
CLIP_NORM = 2.0
INTEGRITY_KEY = bytes(range(32))


def coordinator_settings(tmp_path, **client_dp) -> CoordinatorConfig:
    table = {
        "participants": list(NAMES),
        "identity_keys": {name: "00" * 32 for name in NAMES},
        "insecure_plaintext": True,
        "profile": "masks",
        "clip_norm": CLIP_NORM,
        "state_dir": str(tmp_path),
    }
    if client_dp:
        table["client_dp"] = client_dp
    return configfile.validate(table, CoordinatorConfig, "coordinator")


def noisy_round(tmp_path, **client_dp) -> RoundConfig:
    """The round the coordinator builds with `[coordinator.client_dp]` set."""
    return round_config(
        coordinator_settings(tmp_path, **client_dp),
        round=1,
        selected=NAMES,
        element_count=integrity.protected_length(PARAMETERS, Profile.MASKS),
        graph_seed=bytes(32),
    )


def updates() -> list[LocalUpdate]:
    rng = np.random.default_rng(7)
    found = []
    for index in range(len(NAMES)):
        delta = rng.normal(size=PARAMETERS).astype(np.float32)
        delta *= np.float32(CLIP_NORM * 0.8 / np.linalg.norm(delta))
        found.append(LocalUpdate(delta, sample_count=100 * (index + 1), metrics={}))
    return found


def key(name: str) -> bytes:
    return hashlib.sha256(f"client-noise/{name}".encode()).digest()


def aggregate(config: RoundConfig, *, noisy: bool) -> np.ndarray:
    """The survivors' sum through the real pipeline (masks profile, no masks to cancel)."""
    total = plain_sum(config)
    used = config if noisy else dataclasses.replace(config, client_noise=None)
    for index, (name, update) in enumerate(zip(NAMES, updates(), strict=True)):
        chunks = exchange.protect_update(
            update,
            used,
            [],
            rng=np.random.default_rng(index),  # the same rounding with and without noise
            noise_source=CsprngGaussian(key(name)),
            integrity_key=INTEGRITY_KEY,
            participant=name,
        )
        for chunk in chunks:
            total.add(chunk)
    sums = pipeline.reveal(
        total.chunks(),
        profile=config.profile,
        element_count=config.element_count,
        modulus_bits=config.quant.modulus_bits,
        packing=None,
        secret=None,
    )
    # The tags cover the noised values: the noisy sum passes the integrity check.
    body = integrity.check(
        np.asarray(sums, dtype=np.uint32),
        INTEGRITY_KEY,
        federation_id=config.federation_id,
        round=config.round,
        survivors=NAMES,
        modulus_bits=config.quant.modulus_bits,
    )
    return quantize.from_field(body, config.quant.modulus_bits)


@pytest.mark.parametrize("honest_fraction", [1.0, 2 / 3])
def test_the_aggregate_carries_noise_of_the_configured_variance_and_the_weights_exactly(
    tmp_path, honest_fraction
) -> None:
    config = noisy_round(tmp_path, noise_multiplier=0.5, honest_fraction=honest_fraction)
    noise_setting = config.client_noise
    assert noise_setting is not None and config.quant.weight_cap == 1
    clean = aggregate(config, noisy=False)
    noisy = aggregate(config, noisy=True)

    # The weight slot is untouched: every weight capped at weight_cap = 1.
    assert noisy[-1] == clean[-1] == 3
    noise = (noisy[:-1] - clean[:-1]).astype(np.float64)
    # Three shares of Sk(mu), mu = sigma^2 / (2 h): variance 3 * 2 mu = sigma^2 * 3 / h.
    honest = math.ceil(honest_fraction * 3 - 1e-9)
    sigma = noise_setting.sigma_levels(config.quant)
    expected = sigma**2 * 3 / honest
    assert sigma == pytest.approx(0.5 * CLIP_NORM / config.quant.step)
    # Deterministic keys; the bound is ~5 standard errors of a variance over 20,000 draws.
    assert noise.var() == pytest.approx(expected, rel=0.05)
    assert abs(noise.mean()) < 5 * math.sqrt(expected / PARAMETERS)
    # And the decoded mean moves by that noise in update units, nothing else.
    clean_mean, clean_weight = quantize.decode(quantize.to_field(clean, 16), config.quant)
    noisy_mean, noisy_weight = quantize.decode(quantize.to_field(noisy, 16), config.quant)
    assert clean_weight == noisy_weight == 3
    difference = (noisy_mean - clean_mean).astype(np.float64)
    assert difference.std() == pytest.approx(
        math.sqrt(expected) * config.quant.step * config.quant.cap / 3, rel=0.05
    )


def test_without_the_setting_nothing_is_added(tmp_path) -> None:
    config = noisy_round(tmp_path)
    assert config.client_noise is None
    update = updates()[0]
    values = exchange.encode_update(
        update, config, np.random.default_rng(0), integrity_key=INTEGRITY_KEY, participant="a"
    )
    np.testing.assert_array_equal(
        values[: -integrity.TAG_SLOTS],
        quantize.encode(update.delta, update.sample_count, config.quant, np.random.default_rng(0)),
    )


def test_noise_in_clear_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="secure profile"):
        configfile.validate(
            {
                "participants": list(NAMES),
                "identity_keys": {name: "00" * 32 for name in NAMES},
                "insecure_plaintext": True,
                "profile": "none",
                "client_dp": {"noise_multiplier": 1.0},
            },
            CoordinatorConfig,
            "coordinator",
        )
    # Off means absent or 0: a plaintext federation may say so.
    configfile.validate(
        {
            "participants": list(NAMES),
            "identity_keys": {name: "00" * 32 for name in NAMES},
            "insecure_plaintext": True,
            "profile": "none",
            "client_dp": {"noise_multiplier": 0.0},
        },
        CoordinatorConfig,
        "coordinator",
    )


def test_a_modulus_without_room_is_refused_when_the_coordinator_starts(tmp_path) -> None:
    with pytest.raises(ConfigError, match="modulus_bits"):
        configfile.validate(
            {
                "participants": list(NAMES),
                "identity_keys": {name: "00" * 32 for name in NAMES},
                "insecure_plaintext": True,
                "profile": "masks",
                "modulus_bits": 8,
                "client_dp": {"noise_multiplier": 40.0},
            },
            CoordinatorConfig,
            "coordinator",
        )


def test_the_setting_travels_in_the_round_parameters_and_the_store(tmp_path) -> None:
    config = noisy_round(tmp_path, noise_multiplier=0.7, honest_fraction=0.5, delta=1e-6)
    message = round_config_to_proto(config, stage_deadline_s=5.0)
    received = round_config_from_proto(message, federation_id="accord-demo")
    assert received == config
    assert received.client_noise == ClientNoise(0.7, 0.5, 1e-6)
    assert round_config_from_json(round_config_to_json(config)) == config
    plain = noisy_round(tmp_path)
    message = round_config_to_proto(plain, stage_deadline_s=5.0)
    assert not message.HasField("client_noise")
    assert round_config_from_proto(message, federation_id="accord-demo") == plain


def test_the_participant_ledger_records_the_share_it_added(tmp_path) -> None:
    from accord.crypto import identity

    config = noisy_round(tmp_path, noise_multiplier=0.5, honest_fraction=2 / 3)
    pair = identity.generate_identity()
    settings = configfile.validate(
        {"name": "energy", "state_dir": str(tmp_path / "energy")},
        ParticipantConfig,
        "participant",
    )
    update = updates()[0]
    assert ledger.before_upload(settings, pair.private, config, update) is None
    book = ledger.ParticipantLedger.open(settings, pair.private).book
    body = next(e.body for e in book.entries if e.kind == ledger.ROUND)
    share = body["client_dp"]
    assert share["mechanism"] == "skellam"
    assert float(share["noise_multiplier"]) == 0.5
    assert float(share["honest_fraction"]) == pytest.approx(2 / 3)
    assert (share["participants"], share["honest_participants"]) == (3, 2)
    sigma = 0.5 * CLIP_NORM / config.quant.step
    assert float(share["sigma_levels"]) == pytest.approx(sigma)
    assert float(share["share_mu"]) == pytest.approx(sigma**2 / 4)
    assert float(share["share_std_levels"]) == pytest.approx(sigma / math.sqrt(2))
    assert float(share["level"]) == pytest.approx(config.quant.step)
