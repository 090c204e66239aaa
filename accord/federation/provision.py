"""A federation file (`[federation]`, `[[participants]]`, `[terms]`) and provisioning a whole
federation from it on one machine: the CA, the coordinator's folder, every kit.

`accord provision FEDERATION_TOML --out DIR` and `accord demo` both use it; it stands on
the top floor because it makes both roles' files (the operator's CA and the members' kits).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from accord.coordinator.operator.approve import approve
from accord.coordinator.operator.ca import (
    DEFAULT_CA_VALIDITY_DAYS,
    DEFAULT_CERT_VALIDITY_DAYS,
    create_ca,
)
from accord.coordinator.operator.server_certs import (
    DEFAULT_SERVER_HOSTS,
    issue_probe_cert,
    issue_server_cert,
)
from accord.core import configfile
from accord.core.kitformat import PARTICIPANT_ID_PATTERN, TERMS_FILE, split_address, write_public
from accord.crypto.profile import Profile
from accord.crypto.terms import FederationTerms, sign_terms
from accord.errors import ConfigError, UsageError
from accord.participant.kit import packaging

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is the same parser
    import tomli as tomllib


# ---- the federation file ----


class FederationSection(BaseModel):
    """The `[federation]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=PARTICIPANT_ID_PATTERN,
        description="the federation's id: lower case letters, digits, - and _",
    )
    coordinator: str = Field(
        description="host:port participants dial, e.g. 127.0.0.1:50051; the coordinator's "
        "certificate names this host",
    )
    profile: Profile = Field(
        Profile.CKKS_MASKS, description="protection of updates: ckks+masks, ckks, masks or none"
    )
    hosts: list[str] = Field(
        default_factory=list,
        description="more DNS names or IP addresses for the coordinator's certificate",
    )
    ca_validity_days: int = Field(
        DEFAULT_CA_VALIDITY_DAYS, ge=1, description="days the CA certificate is valid"
    )
    cert_validity_days: int = Field(
        DEFAULT_CERT_VALIDITY_DAYS,
        ge=1,
        description="days a participant's or the coordinator's certificate is valid",
    )

    @field_validator("coordinator")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            split_address(value)
        except ConfigError as error:
            raise ValueError(str(error).split(": ", 1)[-1]) from None
        return value


class ParticipantSection(BaseModel):
    """One `[[participants]]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=PARTICIPANT_ID_PATTERN,
        description="the participant's id: lower case letters, digits, - and _",
    )


class TermsSection(BaseModel):
    """The optional `[terms]` table: what the CA signs (`crypto/terms.py`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(2, ge=2, description="least number of inputs summed")
    min_cohort: int = Field(2, ge=2, description="least number of members a round selects")
    modulus_bits: int = Field(16, description="bits b of the aggregation group Z_2^b")
    clip_norm: float = Field(40.0, gt=0, description="L2 bound C of one update")
    base_model_hash: str = Field(description="SHA-256 of the base model every member trains")
    adapter_parameters: int = Field(ge=1, description="the adapter's parameter count")
    rounds: int = Field(2, ge=1, description="rounds the federation completes")
    noise_multiplier: float = Field(0.0, ge=0, description="client-level noise z (0: none)")
    honest_fraction: float = Field(1.0, gt=0, le=1, description="client-level noise's f")
    client_delta: float = Field(1e-5, gt=0, lt=1, description="delta of client-level epsilon")
    record_max_epsilon: float = Field(0.0, ge=0, description="record-level epsilon cap (0: none)")

    def to_terms(self, federation: FederationSection) -> FederationTerms:
        """The terms to sign."""
        return FederationTerms(
            federation_id=federation.id, profile=federation.profile, **self.model_dump()
        )


@dataclass(frozen=True)
class FederationFile:
    """A validated federation file."""

    federation: FederationSection
    participants: tuple[ParticipantSection, ...]
    terms: TermsSection | None = None


def load_federation(path: Path) -> FederationFile:
    """Read and validate a federation file.

    Raises:
        ConfigError: missing file, bad TOML, unknown or missing tables, a bad value
            (naming field, value and fix), or a participant named twice.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (start from deploy/federation.example.toml)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path.name}: not valid TOML ({error})") from None
    unknown = sorted(set(document) - {"federation", "participants", "terms"})
    if unknown:
        raise ConfigError(
            f"{path.name}: unknown table or setting {unknown[0]!r} (a federation file holds "
            "[federation] and [[participants]])"
        )
    table = document.get("federation")
    if not isinstance(table, dict):
        raise ConfigError(
            f'{path.name}: [federation] is missing (add id = "...", coordinator = "host:port")'
        )
    federation = configfile.validate(table, FederationSection, "federation", source=path.name)
    items = document.get("participants")
    if not isinstance(items, list) or not items:
        raise ConfigError(
            f'{path.name}: no [[participants]] (add one table per participant: name = "energy")'
        )
    participants: list[ParticipantSection] = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ConfigError(f"{path.name}: participants must be [[participants]] tables")
        participants.append(
            configfile.validate(
                item, ParticipantSection, f"participants #{index}", source=path.name
            )
        )
    names = [p.name for p in participants]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f'{path.name} [[participants]] name = "{name}": appears twice (ids are unique)'
            )
    terms = None
    if "terms" in document:
        terms = configfile.validate(document["terms"], TermsSection, "terms", source=path.name)
        terms.to_terms(federation)  # a value the terms refuse is a config error here
    return FederationFile(federation=federation, participants=tuple(participants), terms=terms)


@dataclass(frozen=True)
class ProvisionedFederation:
    """What `provision_federation` wrote.

    Attributes:
        root: the output folder.
        federation_id: the federation.
        ca_fingerprint: SHA-256 of the CA certificate.
        ca_dir: `root/ca` (holds the CA key; keep it offline).
        coordinator_dir: `root/coordinator` (server key and certificate, CA, roster).
        roster_path: `root/coordinator/roster.json`.
        kits: participant id -> kit folder `root/kits/<id>`.
    """

    root: Path
    federation_id: str
    profile: Profile
    ca_fingerprint: str
    ca_dir: Path
    coordinator_dir: Path
    roster_path: Path
    kits: dict[str, Path]


def provision_federation(federation: FederationFile, out_dir: Path) -> ProvisionedFederation:
    """Provision a whole federation on this machine: CA, coordinator, every participant's kit.

    Each participant goes through the same request -> approve -> package steps a real
    enterprise runs, with the CA fingerprint read from the CA itself.

    Args:
        federation: the validated federation file.
        out_dir: a new or empty folder; receives `ca/`, `coordinator/`, `kits/<name>/`.

    Returns:
        Where everything went.

    Raises:
        UsageError: `out_dir` is not empty.
    """
    out_dir = Path(out_dir)
    _refuse_filled(out_dir)
    settings = federation.federation
    ca_dir = out_dir / "ca"
    coordinator_dir = out_dir / "coordinator"
    roster_path = coordinator_dir / "roster.json"
    coordinator_dir.mkdir(parents=True, mode=0o700)
    authority = create_ca(
        ca_dir,
        settings.id,
        coordinator=settings.coordinator,
        roster_path=roster_path,
        validity_days=settings.ca_validity_days,
    )
    host = split_address(settings.coordinator)[0]
    issue_server_cert(
        ca_dir,
        coordinator_dir,
        [host, *DEFAULT_SERVER_HOSTS, *settings.hosts],
        validity_days=settings.cert_validity_days,
    )
    issue_probe_cert(ca_dir, coordinator_dir, validity_days=settings.cert_validity_days)
    signed: bytes | None = None
    if federation.terms is not None:
        signed = sign_terms(federation.terms.to_terms(settings), authority.private_key())
        write_public(coordinator_dir / TERMS_FILE, signed)
        write_public(ca_dir / TERMS_FILE, signed)  # `accord provision approve` hands it out
    made = _make_kits(federation, out_dir, ca_dir, authority.fingerprint, signed)
    return ProvisionedFederation(
        root=out_dir,
        federation_id=settings.id,
        profile=settings.profile,
        ca_fingerprint=authority.fingerprint,
        ca_dir=ca_dir,
        coordinator_dir=coordinator_dir,
        roster_path=roster_path,
        kits=made,
    )


def _refuse_filled(out_dir: Path) -> None:
    """The output folder must be new or empty: it may come to hold a CA key."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file; name a new folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(
            f"{out_dir} is not empty; choose another --out (it may hold a CA key, which is "
            "never overwritten)"
        )


def _make_kits(
    federation: FederationFile,
    out_dir: Path,
    ca_dir: Path,
    ca_fingerprint: str,
    signed: bytes | None,
) -> dict[str, Path]:
    """Each participant's request -> approve -> package, as a real enterprise runs them."""
    settings = federation.federation
    made: dict[str, Path] = {}
    for participant in federation.participants:
        kit_dir = out_dir / "kits" / participant.name
        request_path = packaging.request(participant.name, kit_dir)
        response = approve(request_path, ca_dir, validity_days=settings.cert_validity_days)
        packaging.package(kit_dir, response, ca_fingerprint, kit_dir)
        if signed is not None:
            write_public(kit_dir / TERMS_FILE, signed)
        made[participant.name] = kit_dir
    return made


# ---- command plumbing ----
