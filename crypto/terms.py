"""The federation's terms, signed by the operator's CA: what no coordinator or member may change.

Theory of operation. Everything a member must agree to before it lets its update be
summed (the threshold rule, the smallest cohort, the profile, the aggregation group,
the base model, the adapter's size, the rounds and the DP settings) is fixed once by
the operator, encoded canonically and signed with the federation CA's private key
(ECDSA P-256 with SHA-256, the key type `coordinator/operator/ca.py` makes). Every kit
carries the signed terms; members verify them against the CA certificate they pin.
From then on a `RoundConfig` (from the coordinator) or an enrolment (from another
member) that departs from the terms is refused with `TermsDeparted`, whose message
names who departed and from what. Changing terms is an operator act: a new signed
definition, never a coordinator decision.

Invariants:
  * The threshold rule is t >= max(terms.threshold, n // 2 + 1) for a round of n
    selected members (t > n/2: two disjoint halves of a cohort can never both reach
    the threshold), and n >= terms.min_cohort.
  * `adapter_parameters` is bounded by `MAX_ADAPTER_PARAMETERS` when the terms are
    made or read, so a size taken from the terms is safe to allocate.
  * The encoding is versioned (`FORMAT_VERSION`), canonical (sorted-key JSON, no
    spaces), and the signature covers a domain tag, so signed terms are not any other
    CA-signed object.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from accord.crypto import integrity
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.errors import BadSignature, ConfigError, Malformed, TermsDeparted

__all__ = [
    "FORMAT_VERSION",
    "MAX_ADAPTER_PARAMETERS",
    "FederationTerms",
    "ca_sign",
    "ca_verify",
    "check_member_settings",
    "check_round_config",
    "expected_element_count",
    "required_threshold",
    "sign_terms",
    "verify_terms",
]

FORMAT_VERSION = 1
MAX_ADAPTER_PARAMETERS = 1 << 30
"""Largest adapter the terms may name (2^30 parameters: 4 GiB of float32 per update)."""

_DOMAIN = b"accord federation terms v1\x00"
_SIGNATURE_MAX_BYTES = 128


@dataclass(frozen=True)
class FederationTerms:
    """The federation definition the operator's CA signs.

    Attributes:
        federation_id: the federation.
        profile: protection of updates.
        threshold: absolute least number of inputs summed (>= 2).
        min_cohort: least number of members a round may select (>= threshold).
        modulus_bits: bits b of the aggregation group Z_2^b.
        clip_norm: L2 bound C of one update (> 0).
        base_model_hash: SHA-256 (hex) of the base model every member trains.
        adapter_parameters: the adapter's parameter count (1..MAX_ADAPTER_PARAMETERS).
        rounds: rounds the federation completes.
        noise_multiplier: client-level noise z (0: none).
        honest_fraction: client-level noise's honest share f, in (0, 1].
        client_delta: delta of the client-level epsilon.
        record_max_epsilon: the largest record-level epsilon a member may spend (0:
            each member's own setting).
        format_version: `FORMAT_VERSION`.
    """

    federation_id: str
    profile: Profile
    threshold: int
    min_cohort: int
    modulus_bits: int
    clip_norm: float
    base_model_hash: str
    adapter_parameters: int
    rounds: int
    noise_multiplier: float = 0.0
    honest_fraction: float = 1.0
    client_delta: float = 1e-5
    record_max_epsilon: float = 0.0
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise Malformed(f"federation terms: format version {self.format_version} unknown")
        if not self.federation_id:
            raise ConfigError("terms federation_id: must not be empty")
        if not _is_int(self.threshold) or self.threshold < 2:
            raise ConfigError(
                f"terms threshold = {self.threshold!r}: must be an integer >= 2 (a lone "
                "survivor's update would be the aggregate)"
            )
        if not _is_int(self.min_cohort) or self.min_cohort < self.threshold:
            raise ConfigError(
                f"terms min_cohort = {self.min_cohort!r}: must be an integer >= threshold "
                f"({self.threshold})"
            )
        if self.modulus_bits not in (8, 12, 16, 24, 32):
            raise ConfigError(
                f"terms modulus_bits = {self.modulus_bits!r}: one of 8, 12, 16, 24, 32"
            )
        if not (isinstance(self.clip_norm, float) and math.isfinite(self.clip_norm)) or (
            self.clip_norm <= 0
        ):
            raise ConfigError(f"terms clip_norm = {self.clip_norm!r}: must be a finite float > 0")
        if len(self.base_model_hash) != 64 or any(
            c not in "0123456789abcdef" for c in self.base_model_hash
        ):
            raise ConfigError(
                f"terms base_model_hash = {self.base_model_hash[:70]!r}: must be 64 lower-case "
                "hex digits (the SHA-256 `accord kit check` prints for the base model)"
            )
        if not _is_int(self.adapter_parameters) or not (
            1 <= self.adapter_parameters <= MAX_ADAPTER_PARAMETERS
        ):
            raise ConfigError(
                f"terms adapter_parameters = {self.adapter_parameters!r}: must be between 1 "
                f"and {MAX_ADAPTER_PARAMETERS}"
            )
        if not _is_int(self.rounds) or self.rounds < 1:
            raise ConfigError(f"terms rounds = {self.rounds!r}: must be an integer >= 1")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigError(f"terms noise_multiplier = {self.noise_multiplier!r}: must be >= 0")
        if not 0 < self.honest_fraction <= 1:
            raise ConfigError(f"terms honest_fraction = {self.honest_fraction!r}: in (0, 1]")
        if not 0 < self.client_delta < 1:
            raise ConfigError(f"terms client_delta = {self.client_delta!r}: in (0, 1)")
        if not (math.isfinite(self.record_max_epsilon) and self.record_max_epsilon >= 0):
            raise ConfigError(f"terms record_max_epsilon = {self.record_max_epsilon!r}: >= 0")

    def to_bytes(self) -> bytes:
        """The canonical encoding: sorted-key JSON without spaces, UTF-8."""
        fields = dataclasses.asdict(self)
        fields["profile"] = self.profile.value
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> FederationTerms:
        """Decode `to_bytes()`; refuse anything that is not exactly its canonical form.

        Raises:
            Malformed: not the canonical encoding of valid terms.
        """
        try:
            fields: dict[str, Any] = json.loads(data.decode())
            if not isinstance(fields, dict):
                raise ValueError("not an object")
            fields["profile"] = Profile(fields["profile"])
            terms = cls(**fields)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, ConfigError):
            raise Malformed("the federation terms do not decode") from None
        if terms.to_bytes() != data:
            raise Malformed("the federation terms are not in canonical form")
        return terms


def ca_sign(domain: bytes, body: bytes, ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    """2-byte signature length, the DER ECDSA signature over `domain + body`, then `body`."""
    signature = ca_key.sign(domain + body, ec.ECDSA(hashes.SHA256()))
    return len(signature).to_bytes(2, "big") + signature + body


def ca_verify(domain: bytes, signed: bytes, ca_certificate_pem: bytes, *, what: str) -> bytes:
    """The body of `ca_sign`'s output once the CA's signature checks.

    Raises:
        Malformed: truncated, or the CA certificate does not decode.
        BadSignature: the CA did not sign it.
    """
    if len(signed) < 2:
        raise Malformed(f"{what} is truncated")
    length = int.from_bytes(signed[:2], "big")
    if not 0 < length <= _SIGNATURE_MAX_BYTES or len(signed) < 2 + length:
        raise Malformed(f"{what} is truncated")
    signature, body = signed[2 : 2 + length], signed[2 + length :]
    try:
        public = x509.load_pem_x509_certificate(ca_certificate_pem).public_key()
    except ValueError:
        raise Malformed("the CA certificate does not decode") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise BadSignature(f"{what}: the CA key is not an EC key")
    try:
        public.verify(signature, domain + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadSignature(f"{what} is not signed by the federation's CA") from None
    return body


def sign_terms(terms: FederationTerms, ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Signed terms (`ca_sign` framing)."""
    return ca_sign(_DOMAIN, terms.to_bytes(), ca_key)


def verify_terms(signed: bytes, ca_certificate_pem: bytes) -> FederationTerms:
    """Check signed terms against the pinned CA certificate and return them.

    Raises:
        Malformed: the blob or the terms inside do not decode.
        BadSignature: the CA did not sign these terms.
    """
    body = ca_verify(_DOMAIN, signed, ca_certificate_pem, what="the federation terms")
    return FederationTerms.from_bytes(body)


def expected_element_count(terms: FederationTerms) -> int:
    """Length of the protected vector: adapter parameters, weight slot, integrity tags."""
    return integrity.protected_length(terms.adapter_parameters, terms.profile)


def required_threshold(terms: FederationTerms, selected: int) -> int:
    """The least threshold a round of `selected` members may have: max(t_terms, n//2 + 1)."""
    return max(terms.threshold, selected // 2 + 1)


def check_round_config(terms: FederationTerms, config: RoundConfig, *, source: str) -> None:
    """Raise unless `config` keeps the signed terms; nothing changes.

    Args:
        terms: the verified terms.
        config: the round's parameters as received.
        source: who sent it, for the message (e.g. "the coordinator").

    Raises:
        TermsDeparted: names the round, `source`, the departing value and the term.
    """
    where = f"round {config.round} from {source}"
    n = len(config.selected)
    if config.federation_id != terms.federation_id:
        _depart(where, f"federation {config.federation_id!r}", repr(terms.federation_id))
    if config.profile is not terms.profile:
        _depart(where, f"profile {config.profile.value}", terms.profile.value)
    if n < terms.min_cohort:
        _depart(where, f"cohort of {n} selected", f"at least {terms.min_cohort}")
    least = required_threshold(terms, n)
    if config.threshold < least:
        _depart(where, f"threshold {config.threshold}", f">= {least} of {n} selected")
    if config.quant.modulus_bits != terms.modulus_bits:
        _depart(where, f"modulus_bits {config.quant.modulus_bits}", str(terms.modulus_bits))
    if config.quant.clip_norm != terms.clip_norm:
        _depart(where, f"clip_norm {config.quant.clip_norm}", str(terms.clip_norm))
    expected = expected_element_count(terms)
    if config.element_count != expected:
        _depart(where, f"element_count {config.element_count}", str(expected))
    noise = config.client_noise
    if terms.noise_multiplier > 0:
        if noise is None or (noise.noise_multiplier, noise.honest_fraction, noise.delta) != (
            terms.noise_multiplier,
            terms.honest_fraction,
            terms.client_delta,
        ):
            _depart(
                where,
                f"client noise {noise}",
                f"noise_multiplier {terms.noise_multiplier}, honest_fraction "
                f"{terms.honest_fraction}, delta {terms.client_delta}",
            )
    elif noise is not None:
        _depart(where, f"client noise {noise}", "no client-level noise")


def check_member_settings(
    terms: FederationTerms, *, member: str, base_model_hash: str, adapter_parameters: int
) -> None:
    """Raise unless `member`'s model keeps the signed terms; nothing changes.

    Raises:
        TermsDeparted: names `member`, its value and the term.
    """
    if base_model_hash != terms.base_model_hash:
        _depart(
            member,
            f"base model hash {base_model_hash[:16]!r}",
            terms.base_model_hash[:16],
            fix="every member needs the signed base model",
        )
    if adapter_parameters != terms.adapter_parameters:
        _depart(
            member,
            f"adapter of {adapter_parameters} parameters",
            str(terms.adapter_parameters),
            fix="every member needs the signed lora_rank",
        )


def _depart(who: str, value: str, term: str, *, fix: str = "") -> None:
    hint = f"; {fix}" if fix else ""
    raise TermsDeparted(f"{who}: {value} departs from the signed terms ({term}){hint}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
