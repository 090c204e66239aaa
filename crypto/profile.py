"""Protection profiles: which stages of the pipeline protect an update.

Theory of operation (DESIGN.md section 2). One pipeline serves every profile; the
profile switches its two protective stages on or off:

- ``ckks+masks`` (default): pairwise and self masks mod ``2^b`` (Bonawitz et al.
  2017; SecAgg+, Bell et al. 2020), then packed CKKS encryption (Cheon et al. 2017).
  The coordinator sees ciphertexts only and never the aggregate.
- ``ckks``: packed CKKS only. The coordinator never sees the aggregate, but a
  coordinator colluding with one participant (who holds the shared secret key) could
  decrypt single uploads.
- ``masks``: masks only. The coordinator learns the aggregate and nothing else.
- ``none``: plaintext float32, for benchmarks only; services refuse it unless told
  ``--insecure-plaintext``.

Invariant: ``uses_masks`` and ``uses_ckks`` determine the pipeline completely; the
string values are the names used in configuration files and never change.
"""

from __future__ import annotations

import enum

from accord.errors import ConfigError

__all__ = ["Profile"]


class Profile(enum.Enum):
    """How an update is protected on its way through the coordinator."""

    CKKS_MASKS = "ckks+masks"
    CKKS = "ckks"
    MASKS = "masks"
    NONE = "none"

    @property
    def uses_masks(self) -> bool:
        """True when updates carry pairwise and self masks mod ``2^b``."""
        return self in (Profile.CKKS_MASKS, Profile.MASKS)

    @property
    def uses_ckks(self) -> bool:
        """True when updates are packed and CKKS-encrypted."""
        return self in (Profile.CKKS_MASKS, Profile.CKKS)

    @property
    def is_secure(self) -> bool:
        """True for every profile except the plaintext ``none``."""
        return self is not Profile.NONE

    @classmethod
    def parse(cls, text: str) -> Profile:
        """Read a profile from its configuration name.

        Args:
            text: the name, e.g. ``"ckks+masks"``; case and surrounding blanks are ignored.

        Returns:
            The matching profile.

        Raises:
            ConfigError: ``text`` names no profile; the message lists the choices.
        """
        key = text.strip().lower() if isinstance(text, str) else text
        for profile in cls:
            if profile.value == key:
                return profile
        choices = ", ".join(profile.value for profile in cls)
        raise ConfigError(f"profile = {text!r}: must be one of {choices}")

    def __str__(self) -> str:
        return self.value
