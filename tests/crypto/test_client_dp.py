"""Client-level noise settings: the room they need in Z_2^b and what a round is sure to carry."""

from __future__ import annotations

import math

import pytest

from accord.crypto import client_dp
from accord.crypto.client_dp import ClientNoise
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import ConfigError

NAMES = ("energy", "residential", "urban")


def widened(noise: ClientNoise, bits: int, n: int, n_max: int | None = None) -> QuantSpec:
    bound = client_dp.widened_value_bound(
        noise, modulus_bits=bits, max_participants=n_max or n, clip_norm=2.0, participants=n
    )
    return QuantSpec(
        modulus_bits=bits, max_participants=n_max or n, clip_norm=2.0, value_bound=bound
    )


@pytest.mark.parametrize(
    ("bits", "n", "z", "fraction"),
    [
        (16, 3, 1.0, 1.0),
        (16, 3, 0.02, 1.0),
        (16, 64, 1.0, 1.0),
        (12, 5, 2.0, 0.5),
        (32, 10, 3.0, 0.7),
    ],
)
def test_the_widened_grid_leaves_room_for_the_noise(bits, n, z, fraction) -> None:
    noise = ClientNoise(z, fraction)
    quant = widened(noise, bits, n)
    noise.check_room(quant, n)  # (*) holds
    honest = client_dp.honest_participants(fraction, n)
    need = n * client_dp.level_bound(quant) + 6 * noise.sigma_levels(quant) * math.sqrt(n / honest)
    assert need < 2 ** (bits - 1)
    # ... and only just: the grid is not coarser than it must be (within a few levels).
    assert quant.bound == 2.0 or need > 0.95 * 2 ** (bits - 1)


def test_the_plain_grid_has_no_room_for_useful_noise() -> None:
    noise = ClientNoise(1.0)
    plain = QuantSpec(modulus_bits=16, max_participants=4, clip_norm=2.0)
    with pytest.raises(ConfigError, match="modulus_bits"):
        noise.check_room(plain, 4)


def test_a_round_config_refuses_noise_in_clear_or_without_room() -> None:
    common = dict(
        federation_id="f",
        round=1,
        selected=NAMES,
        threshold=2,
        element_count=11,
        graph_seed=bytes(32),
    )
    noise = ClientNoise(1.0)
    with pytest.raises(ConfigError, match="secure profile"):
        RoundConfig(profile=Profile.NONE, quant=widened(noise, 16, 3), client_noise=noise, **common)
    with pytest.raises(ConfigError, match="levels"):
        RoundConfig(
            profile=Profile.MASKS,
            quant=QuantSpec(modulus_bits=16, max_participants=3, clip_norm=2.0),
            client_noise=noise,
            **common,
        )
    config = RoundConfig(
        profile=Profile.MASKS, quant=widened(noise, 16, 3), client_noise=noise, **common
    )
    assert config.client_noise == noise


@pytest.mark.parametrize(
    "settings",
    [
        dict(noise_multiplier=0.0),
        dict(noise_multiplier=math.inf),
        dict(noise_multiplier=1.0, honest_fraction=0.0),
        dict(noise_multiplier=1.0, honest_fraction=1.5),
        dict(noise_multiplier=1.0, delta=1.0),
    ],
)
def test_settings_out_of_range_are_refused(settings) -> None:
    with pytest.raises(ConfigError, match=r"\[coordinator.client_dp\]"):
        ClientNoise(**settings)


def test_the_guarantee_counts_only_the_honest_survivors() -> None:
    noise = ClientNoise(1.0, honest_fraction=2 / 3)
    quant = widened(noise, 16, 3)
    sigma = noise.sigma_levels(quant)
    full = client_dp.guarantee(noise, quant, selected=3, survivors=3, parameters=400)
    # Each of 3 adds sigma^2 / (2 h) with h = 2: two honest shares carry sigma^2.
    assert full.honest == 2
    assert full.share_mu == pytest.approx(sigma**2 / 4)
    assert full.noise_std_levels == pytest.approx(sigma)
    # One participant's effect: its clipped update, plus rounding in each of 400 coordinates.
    assert full.sensitivity_levels == pytest.approx(2.0 / quant.step + 20.0)
    assert full.noise_multiplier == pytest.approx(sigma / (sigma + 20.0))
    one_dropped = client_dp.guarantee(noise, quant, selected=3, survivors=2, parameters=400)
    assert one_dropped.noise_std_levels == pytest.approx(sigma / math.sqrt(2))
    two_dropped = client_dp.guarantee(noise, quant, selected=3, survivors=1, parameters=400)
    assert two_dropped.noise_multiplier == 0.0


def test_a_federation_whose_modulus_cannot_hold_the_noise_is_refused_up_front() -> None:
    client_dp.check_federation(ClientNoise(1.0), modulus_bits=16, clip_norm=1.0, participants=8)
    with pytest.raises(ConfigError, match="modulus_bits"):
        client_dp.check_federation(ClientNoise(50.0), modulus_bits=8, clip_norm=1.0, participants=8)
