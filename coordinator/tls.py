"""mTLS for the coordinator: server credentials and who is on the other end of a call.

Theory of operation (DESIGN.md section 1: "network attacker ... nothing (mTLS
everywhere)"; section 3, "Enroll"; docs/provisioning.md):

- The coordinator serves only with ``server_credentials``: its own certificate and
  key from ``accord provision`` and ``require_client_auth=True`` against the
  federation's CA, so the TLS handshake already refuses a client without a
  certificate, or with one from another CA.
- The handshake proves CA membership, not which participant is calling. A handler
  calls ``authenticate(context, roster, claimed)`` (or ``peer_identity`` and then
  ``Roster.authorize``) in one place before it touches state: the client
  certificate's SHA-256 fingerprint is looked up in the roster, which refuses
  unknown and revoked certificates and a request whose claimed participant id differs
  from the certificate's.
- Clients check the server's certificate against the same CA and against the host
  they dial (the subject alternative names ``accord provision`` writes).

Private key files must not be readable by group or others; ``server_credentials``
refuses one that is and says ``chmod 600 FILE``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from accord.coordinator.live_roster import Roster
from accord.core.private_files import refuse_if_readable
from accord.errors import ConfigError, NotAllowed

__all__ = [
    "SERVER_CA_FILE",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "ServerTlsFiles",
    "authenticate",
    "peer_identity",
    "server_credentials",
]

SERVER_CERT_FILE = "server.pem"
"""The coordinator's certificate chain, in its TLS folder."""

SERVER_KEY_FILE = "server.key"
"""The coordinator's TLS private key (0600), in its TLS folder."""

SERVER_CA_FILE = "ca.pem"
"""The federation's CA certificate, in the coordinator's TLS folder."""


@dataclass(frozen=True)
class ServerTlsFiles:
    """Where the coordinator's TLS material lies.

    Attributes:
        cert: PEM certificate of the coordinator (serverAuth, SANs for its hosts).
        key: PEM private key of that certificate; mode 0600.
        ca: PEM certificate of the federation's CA that client certificates must chain to.
    """

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_dir(cls, folder: Path) -> ServerTlsFiles:
        """The files ``accord provision`` writes to ``DIR/coordinator/``."""
        folder = Path(folder)
        return cls(
            cert=folder / SERVER_CERT_FILE, key=folder / SERVER_KEY_FILE, ca=folder / SERVER_CA_FILE
        )


def server_credentials(source: Path | ServerTlsFiles) -> grpc.ServerCredentials:
    """Credentials for ``server.add_secure_port``: mTLS with client certificates required.

    Args:
        source: the coordinator's TLS folder (``server.pem``, ``server.key``, ``ca.pem``)
            or explicit paths.

    Returns:
        Server credentials that refuse any client without a certificate from the CA.

    Raises:
        ConfigError: a file is missing, is not PEM of the right kind, or the key is
            readable by group or others (the message says ``chmod 600 FILE``).
    """
    files = source if isinstance(source, ServerTlsFiles) else ServerTlsFiles.from_dir(source)
    key_pem = _read(files.key, "the coordinator's TLS key", private=True)
    cert_pem = _read(files.cert, "the coordinator's certificate")
    ca_pem = _read(files.ca, "the federation's CA certificate")
    for path, data in ((files.cert, cert_pem), (files.ca, ca_pem)):
        try:
            x509.load_pem_x509_certificate(data)
        except ValueError:
            raise ConfigError(
                f"{path}: not a PEM certificate (re-create it with `accord provision`)"
            ) from None
    try:
        serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{files.key}: not an unencrypted PEM private key "
            "(re-create it with `accord provision`)"
        ) from None
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def peer_identity(context: grpc.ServicerContext) -> tuple[str, str]:
    """Who holds the other end of this call, as its client certificate says.

    Args:
        context: the handler's context on a server started with ``server_credentials``.

    Returns:
        ``(common_name, cert_sha256)``: the certificate's CN and the SHA-256 of its DER
        (64 lower-case hex digits). Only the fingerprint is authoritative; pass it to
        ``Roster.authorize``.

    Raises:
        NotAllowed: the call carries no client certificate (a plaintext port, or a
            server started without ``require_client_auth``).
    """
    auth: dict[str, list[bytes]] = dict(context.auth_context() or {})
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise NotAllowed("no client certificate: connect with your startup kit's mTLS credentials")
    try:
        certificate = x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        raise NotAllowed("the client certificate does not parse") from None
    names = auth.get("x509_common_name") or []
    common_name = names[0].decode("utf-8", "replace") if names else ""
    cert_sha256 = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return common_name, cert_sha256


def authenticate(
    context: grpc.ServicerContext, roster: Roster, claimed_participant_id: str | None
) -> str:
    """The one check a coordinator handler makes first: peer certificate -> participant id.

    Args:
        context: the handler's context.
        roster: the live roster (reloads itself when the file changes).
        claimed_participant_id: the request header's ``participant_id``, or None for a
            call that claims no id.

    Returns:
        The participant id the certificate belongs to (equal to the claim, if any).

    Raises:
        NotAllowed: no certificate, unknown or revoked certificate, or the claim differs.
    """
    common_name, cert_sha256 = peer_identity(context)
    participant_id = roster.authorize(cert_sha256, claimed_participant_id)
    if common_name and common_name != participant_id:
        # The CA issues CN = participant id, so this only fires on a mis-issued certificate.
        raise NotAllowed(f"certificate of {common_name} cannot speak for {participant_id}")
    return participant_id


def _read(path: Path, what: str, *, private: bool = False) -> bytes:
    try:
        if private:
            refuse_if_readable(path, what)
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: {what} is missing (create it with `accord provision`)"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what} ({error.strerror})") from None
