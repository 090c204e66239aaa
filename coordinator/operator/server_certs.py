"""The coordinator's own certificates, issued by the federation's CA: its TLS server
certificate (with the ledger key the kits pin) and its health-probe client certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.coordinator import federation_ledger as ledger
from accord.coordinator.operator.ca import (
    DEFAULT_CERT_VALIDITY_DAYS,
    check_days,
    leaf_builder,
    load_ca,
    make_dir,
    private_pem,
)
from accord.coordinator.tls import ServerTlsFiles
from accord.core.kitformat import (
    split_address,
    utc_now,
    write_private,
    write_public,
)
from accord.errors import ConfigError, UsageError

__all__ = [
    "DEFAULT_SERVER_HOSTS",
    "PROBE_CERT_FILE",
    "PROBE_KEY_FILE",
    "issue_probe_cert",
    "issue_server_cert",
    "probe_common_name",
]

PROBE_CERT_FILE = "probe.pem"
PROBE_KEY_FILE = "probe.key"
DEFAULT_SERVER_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")

_HOST_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


def issue_server_cert(
    ca_dir: Path,
    out_dir: Path,
    hosts: Sequence[str] = DEFAULT_SERVER_HOSTS,
    *,
    validity_days: int = DEFAULT_CERT_VALIDITY_DAYS,
    now: dt.datetime | None = None,
) -> ServerTlsFiles:
    """Make the coordinator's TLS key (0600) and certificate, and copy the CA next to them.

    Args:
        ca_dir: the CA folder.
        out_dir: the coordinator's TLS folder; receives ``server.key``, ``server.pem``,
            ``ca.pem``.
        hosts: names and addresses participants dial (IP addresses become IP SANs,
            the rest DNS SANs); the coordinator address's host is always added.
        validity_days: how long the certificate is valid.
        now: the issuing time (default: now).

    Returns:
        The three paths, ready for ``tls.server_credentials``.

    Raises:
        UsageError: ``out_dir`` already holds a server key.
        ConfigError: a host is not a valid DNS name or IP address.
    """
    authority = load_ca(ca_dir)
    check_days(validity_days)
    names = _unique([*hosts, split_address(authority.coordinator)[0]])
    alternative_names = [_general_name(host) for host in names]
    files = ServerTlsFiles.from_dir(Path(out_dir))
    if files.key.exists():
        raise UsageError(f"{files.key} exists; remove it first to issue a new server certificate")
    now = utc_now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = authority.private_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, authority.federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        ]
    )
    certificate = (
        leaf_builder(authority, ca_key, subject, key.public_key(), now, validity_days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    make_dir(Path(out_dir), private=True)
    write_private(files.key, private_pem(key))
    write_public(files.cert, certificate.public_bytes(serialization.Encoding.PEM))
    write_public(files.ca, authority.certificate_pem)
    # The ledger key, certified by the CA: every kit pins it (coordinator/federation_ledger.py).
    ledger.provision_key(authority, Path(out_dir))
    return files


def probe_common_name(federation_id: str) -> str:
    """The common name of a federation's probe certificate: never a participant id (a dot)."""
    return f"health-probe.{federation_id}"


def issue_probe_cert(
    ca_dir: Path,
    out_dir: Path,
    *,
    validity_days: int = DEFAULT_CERT_VALIDITY_DAYS,
    now: dt.datetime | None = None,
) -> tuple[Path, Path]:
    """Issue the coordinator's probe client certificate into its TLS folder.

    The coordinator serves mTLS only, so a health check (the container's HEALTHCHECK,
    Kubernetes probes, grpc_health_probe) needs a client certificate of the CA. This
    one (clientAuth, common name ``health-probe.<federation>``, which no participant
    id can equal, and no member-keys extension) passes the handshake and the
    ``grpc.health.v1`` check, but names no roster member, so the coordinator refuses
    it every federation call.

    Returns:
        ``(probe.pem, probe.key)`` in ``out_dir``.

    Raises:
        UsageError: ``out_dir`` already holds a probe key.
    """
    authority = load_ca(ca_dir)
    check_days(validity_days)
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / PROBE_CERT_FILE, out_dir / PROBE_KEY_FILE
    if key_path.exists():
        raise UsageError(f"{key_path} exists; remove it first to issue a new probe certificate")
    now = utc_now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = authority.private_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, authority.federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, probe_common_name(authority.federation_id)),
        ]
    )
    certificate = (
        leaf_builder(authority, ca_key, subject, key.public_key(), now, validity_days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    make_dir(out_dir, private=True)
    write_private(key_path, private_pem(key))
    write_public(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host):
        raise ConfigError(f"host {host!r}: must be a DNS name or an IP address")
    return x509.DNSName(host.lower().rstrip("."))


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
