"""The CA-signed federation terms: encoding, signature, and each departure refused by name."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accord.crypto import terms as signed_terms
from accord.crypto.client_dp import ClientNoise
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.crypto.terms import FederationTerms
from accord.errors import BadSignature, ConfigError, Malformed, TermsDeparted

MODEL = "ab" * 32


def _ca() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def _terms(**changes: object) -> FederationTerms:
    fields: dict[str, object] = dict(
        federation_id="fed-test",
        profile=Profile.MASKS,
        threshold=2,
        min_cohort=3,
        modulus_bits=16,
        clip_norm=1.0,
        base_model_hash=MODEL,
        adapter_parameters=100,
        rounds=2,
    )
    fields.update(changes)
    return FederationTerms(**fields)  # type: ignore[arg-type]


def _config(n: int = 4, threshold: int = 3, **changes: object) -> RoundConfig:
    fields: dict[str, object] = dict(
        federation_id="fed-test",
        round=3,
        profile=Profile.MASKS,
        selected=tuple(f"p{i}" for i in range(n)),
        threshold=threshold,
        quant=QuantSpec(modulus_bits=16, max_participants=8, clip_norm=1.0),
        element_count=133,  # 100 parameters, the weight slot, 32 integrity tags
        neighbour_degree=n,
        graph_seed=bytes(32),
    )
    fields.update(changes)
    return RoundConfig(**fields)  # type: ignore[arg-type]


def test_encoding_round_trips_and_is_canonical() -> None:
    terms = _terms(noise_multiplier=0.5)
    data = terms.to_bytes()
    assert FederationTerms.from_bytes(data) == terms
    assert data.startswith(b'{"adapter_parameters":100,')
    with pytest.raises(Malformed):
        FederationTerms.from_bytes(data.replace(b",", b", ", 1))


def test_signed_terms_verify_against_the_ca_and_nothing_else() -> None:
    key, cert = _ca()
    _, other_cert = _ca()
    signed = signed_terms.sign_terms(_terms(), key)
    assert signed_terms.verify_terms(signed, cert) == _terms()
    with pytest.raises(BadSignature):
        signed_terms.verify_terms(signed, other_cert)
    tampered = signed.replace(b'"threshold":2', b'"threshold":1')
    with pytest.raises(BadSignature):
        signed_terms.verify_terms(tampered, cert)
    with pytest.raises(Malformed):
        signed_terms.verify_terms(signed[:1], cert)


def test_terms_refuse_an_unbounded_adapter_and_a_low_threshold() -> None:
    with pytest.raises(ConfigError, match="adapter_parameters"):
        _terms(adapter_parameters=2**40)
    with pytest.raises(ConfigError, match="threshold"):
        _terms(threshold=1)
    with pytest.raises(ConfigError, match="min_cohort"):
        _terms(min_cohort=1)


def test_a_round_that_keeps_the_terms_passes() -> None:
    signed_terms.check_round_config(_terms(), _config(), source="the coordinator")
    assert signed_terms.expected_element_count(_terms()) == 133
    assert signed_terms.required_threshold(_terms(threshold=2), 4) == 3
    assert signed_terms.required_threshold(_terms(threshold=4, min_cohort=4), 5) == 4


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            _config(4, 2),
            "round 3 from the coordinator: threshold 2 departs from the signed terms "
            "(>= 3 of 4 selected)",
        ),
        (_config(2, 2), "cohort of 2 selected departs from the signed terms (at least 3)"),
        (_config(element_count=2**20), "element_count 1048576 departs"),
        (
            _config(quant=QuantSpec(modulus_bits=8, max_participants=8, clip_norm=1.0)),
            "modulus_bits 8 departs",
        ),
        (
            _config(quant=QuantSpec(modulus_bits=16, max_participants=8, clip_norm=9.0)),
            "clip_norm 9.0 departs",
        ),
        (_config(federation_id="other"), "federation 'other' departs"),
        (_config(client_noise=ClientNoise(0.5)), "departs from the signed terms (no client"),
    ],
)
def test_each_round_departure_is_refused_by_name(config: RoundConfig, message: str) -> None:
    with pytest.raises(TermsDeparted) as caught:
        signed_terms.check_round_config(_terms(), config, source="the coordinator")
    assert message in str(caught.value)
    assert str(caught.value).startswith("round 3 from the coordinator: ")


def test_a_round_of_another_profile_or_without_the_signed_noise_is_refused() -> None:
    with pytest.raises(TermsDeparted, match=r"profile masks departs .*ckks"):
        signed_terms.check_round_config(
            _terms(profile=Profile.CKKS), _config(), source="the coordinator"
        )
    with pytest.raises(TermsDeparted, match="client noise None departs"):
        signed_terms.check_round_config(
            _terms(noise_multiplier=0.5), _config(), source="the coordinator"
        )


def test_member_settings_that_depart_name_the_member() -> None:
    terms = _terms()
    signed_terms.check_member_settings(
        terms, member="energy", base_model_hash=MODEL, adapter_parameters=100
    )
    with pytest.raises(TermsDeparted, match=r"^mallory: base model hash 'ffff"):
        signed_terms.check_member_settings(
            terms, member="mallory", base_model_hash="f" * 64, adapter_parameters=100
        )
    with pytest.raises(TermsDeparted, match=r"^mallory: adapter of 1099511627776 parameters"):
        signed_terms.check_member_settings(
            terms, member="mallory", base_model_hash=MODEL, adapter_parameters=2**40
        )


def test_replace_keeps_validation() -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(_terms(), clip_norm=float("nan"))
