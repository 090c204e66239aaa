"""Client-level DP: Skellam shares in Z_2^b that add up to the full noise."""

from __future__ import annotations

import numpy as np
import pytest

from accord.crypto import quantize
from accord.errors import ConfigError
from accord.participant import client_dp_share as client_noise
from accord.participant.training.csprng import CsprngGaussian

KEY = bytes(32)


@pytest.mark.parametrize("lam", [0.3, 4.0, 9.99, 10.0, 57.5, 5000.0])
def test_poisson_draws_have_the_right_mean_and_variance(lam) -> None:
    draws = client_noise.poisson(200_000, lam, CsprngGaussian(KEY))
    assert draws.min() >= 0
    tolerance = 5 * np.sqrt(lam / 200_000)
    assert abs(draws.mean() - lam) < tolerance
    assert abs(draws.var() / lam - 1) < 0.03


def test_shares_of_the_honest_participants_sum_to_the_full_variance() -> None:
    sigma, n, honest_fraction = 40.0, 10, 0.5
    source = CsprngGaussian(KEY)
    honest = 5
    total = sum(
        client_noise.skellam(100_000, client_noise.share_mu(sigma, honest_fraction, n), source)
        for _ in range(honest)
    )
    assert abs(total.mean()) < 0.5
    assert total.std() == pytest.approx(sigma, rel=0.02)


def test_noise_is_added_mod_2_to_the_b_and_spares_the_weight_slot() -> None:
    spec = quantize.QuantSpec(modulus_bits=16, max_participants=4, clip_norm=1.0)
    delta = np.zeros(50_000, dtype=np.float32)
    encoded = quantize.encode(delta, 7, spec, np.random.default_rng(0))
    noisy = client_noise.add_skellam_share(
        encoded,
        modulus_bits=16,
        sigma=30.0,
        honest_fraction=1.0,
        participants=1,
        source=CsprngGaussian(KEY),
    )
    assert noisy.dtype == np.uint32 and noisy.max() < 1 << 16
    assert noisy[-1] == encoded[-1] == 7
    lifted = quantize.from_field(noisy[:-1], 16)
    assert (lifted < 0).any() and (lifted > 0).any()  # negative noise wrapped correctly
    assert lifted.std() == pytest.approx(30.0, rel=0.03)
    mean, weight = quantize.decode(noisy, spec)
    # Decoded, the noise is unbiased: 30 levels of step * cap / weight each.
    standard_error = 30 * spec.step * spec.cap / 7 / np.sqrt(50_000)
    assert weight == 7 and abs(float(mean.mean())) < 5 * standard_error


def test_shares_are_reproducible_only_with_the_same_key() -> None:
    values = np.zeros(1000, dtype=np.uint32)
    settings = dict(modulus_bits=24, sigma=10.0, honest_fraction=0.6, participants=5)
    one = client_noise.add_skellam_share(values, source=CsprngGaussian(KEY), **settings)
    two = client_noise.add_skellam_share(values, source=CsprngGaussian(KEY), **settings)
    three = client_noise.add_skellam_share(values, source=CsprngGaussian(), **settings)
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, three)


def test_zero_sigma_adds_nothing_and_bad_settings_are_refused() -> None:
    values = np.arange(10, dtype=np.uint32)
    same = client_noise.add_skellam_share(
        values,
        modulus_bits=8,
        sigma=0.0,
        honest_fraction=1.0,
        participants=3,
        source=CsprngGaussian(KEY),
    )
    np.testing.assert_array_equal(same, values)
    with pytest.raises(ConfigError, match="honest_fraction"):
        client_noise.share_mu(1.0, 0.0, 3)
    with pytest.raises(ConfigError, match="modulus_bits"):
        client_noise.add_skellam_share(
            values,
            modulus_bits=10,
            sigma=1.0,
            honest_fraction=1.0,
            participants=3,
            source=CsprngGaussian(KEY),
        )
