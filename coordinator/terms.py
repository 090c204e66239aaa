"""The coordinator's side of the signed federation terms: load them, and hold its config to them.

`accord provision` writes the CA-signed terms (`crypto/terms.py`) to
`<out>/coordinator/terms.signed`; `[coordinator] terms` names that file. The coordinator
verifies them against the CA certificate of its TLS folder and refuses to start when
its own settings depart from them; every `RoundConfig` it builds is then checked too.
"""

from __future__ import annotations

from pathlib import Path

from accord.coordinator.config import CoordinatorConfig
from accord.crypto import terms as signed_terms
from accord.crypto.terms import FederationTerms
from accord.errors import ConfigError, ProtocolError, TermsDeparted


def load_terms(path: Path, ca_certificate: Path) -> FederationTerms:
    """Read signed terms and verify them against the CA certificate.

    Raises:
        ConfigError: a file is missing, or the terms do not verify (naming the file).
    """
    try:
        signed = Path(path).read_bytes()
        ca_pem = Path(ca_certificate).read_bytes()
    except OSError as error:
        raise ConfigError(
            f"[coordinator] terms = {path}: cannot read ({error.strerror}); `accord provision` "
            "writes it to DIR/coordinator/terms.signed"
        ) from None
    try:
        return signed_terms.verify_terms(signed, ca_pem)
    except ProtocolError as error:
        raise ConfigError(
            f"[coordinator] terms = {path}: {error} (provision them again with the federation's CA)"
        ) from None


def check_coordinator_config(terms: FederationTerms, config: CoordinatorConfig) -> None:
    """Raise unless the coordinator's own settings keep the signed terms.

    Raises:
        TermsDeparted: names the setting, its value and the term.
    """
    noise = config.client_dp if config.client_dp is not None and config.client_dp.enabled else None
    pairs: list[tuple[str, object, object]] = [
        ("federation_id", config.federation_id, terms.federation_id),
        ("profile", config.profile.value, terms.profile.value),
        ("modulus_bits", config.modulus_bits, terms.modulus_bits),
        ("clip_norm", config.clip_norm, terms.clip_norm),
        ("rounds", config.rounds, terms.rounds),
        (
            "client_dp.noise_multiplier",
            noise.noise_multiplier if noise else 0.0,
            terms.noise_multiplier,
        ),
    ]
    if noise is not None:
        pairs += [
            ("client_dp.honest_fraction", noise.honest_fraction, terms.honest_fraction),
            ("client_dp.delta", noise.delta, terms.client_delta),
        ]
    for field, value, term in pairs:
        if value != term:
            raise TermsDeparted(
                f"the coordinator's config: {field} = {value!r} departs from the signed terms "
                f"({term!r}); set it to the signed value, or have the operator sign new terms"
            )
    if config.threshold < terms.threshold:
        raise TermsDeparted(
            f"the coordinator's config: threshold = {config.threshold} departs from the signed "
            f"terms (>= {terms.threshold})"
        )
