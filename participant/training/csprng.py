"""Randomness for privacy: Gaussian, uniform and Bernoulli draws from an AES-256-CTR keystream.

DP-SGD's noise and Poisson sampling (`privacy`) and the client-level noise share
(`participant/client_dp_share.py`) draw from a `CsprngGaussian` keyed with 32 bytes of
`os.urandom`, not from a statistical PRNG whose state an observer of the outputs could
recover. Needs numpy and cryptography only (no torch).

A 256-bit key from `os.urandom` expands into an AES-256-CTR keystream (`cryptography`);
53-bit uniforms in (0, 1) from it feed Box-Muller in float64, and DP-SGD rounds the
float64 normals to float32 noise. Known gap: this is a continuous Gaussian rounded to
floating point; it does not defend against the floating-point attacks on noise (Mironov
2012; Jin et al. 2022), which opacus's `secure_mode` mitigates by summing two draws and
which only a discrete sampler fully removes. The client-level noise
(`client_dp_share.py`) is discrete and exact.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class CsprngGaussian:
    """Gaussian and uniform draws from an AES-256-CTR keystream (see module docstring).

    Args:
        key: 32 bytes; None draws a fresh key from `os.urandom` (always, outside tests).
    """

    def __init__(self, key: bytes | None = None) -> None:
        key = os.urandom(32) if key is None else key
        if len(key) != 32:
            raise ValueError("the CSPRNG key must be 32 bytes")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()

    def random_bytes(self, count: int) -> bytes:
        """The next `count` bytes of the keystream."""
        return self._encryptor.update(b"\x00" * count)

    def uniform(self, count: int) -> npt.NDArray[np.float64]:
        """`count` uniforms in the open interval (0, 1), 53 random bits each."""
        words = np.frombuffer(self.random_bytes(8 * count), dtype="<u8")
        return ((words >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)

    def normal(self, count: int, std: float = 1.0) -> npt.NDArray[np.float64]:
        """`count` draws of N(0, std^2), by Box-Muller in float64."""
        pairs = (count + 1) // 2
        u1, u2 = self.uniform(pairs), self.uniform(pairs)
        radius = np.sqrt(-2.0 * np.log(u1))
        angle = 2.0 * np.pi * u2
        values = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]
        return values * std

    def bernoulli(self, count: int, probability: float) -> npt.NDArray[np.bool_]:
        """`count` independent coin flips that come up True with `probability`."""
        return self.uniform(count) < probability
