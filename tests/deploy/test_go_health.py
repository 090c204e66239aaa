"""A Go gRPC client passes the health check over mTLS with a kit's certificate.

`deploy/healthcheck` (Go, grpc-go from Debian's packages) loads a provisioned kit's
``tls.pem``/``tls.key``/``ca.pem`` with Go's crypto/x509, dials a real coordinator
(`coordinator.server.start`, mTLS from the provisioned TLS folder) and calls
``grpc.health.v1.Health/Check``: what grpc_health_probe, Kubernetes gRPC probes and
Envoy do. A certificate with the old ``2.25.<UUID>`` extension OID is refused by Go
before any connection, which is what the OID change fixed.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accord.core import logs
from accord.federation.provision import ProvisionedFederation
from tests.support import free_port
from tests.support.federation import provision_loopback, serve, write_coordinator_config

from .tools import build_go_health

pytestmark = pytest.mark.e2e


@dataclass
class Running:
    provisioned: ProvisionedFederation
    address: str


@pytest.fixture(scope="module")
def go_health(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_health(tmp_path_factory.mktemp("go"))


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Running]:
    port = free_port()
    provisioned = provision_loopback(tmp_path, port, ("energy", "urban"))
    log = logs.configure("coordinator", tmp_path / "c.log")
    with serve(write_coordinator_config(tmp_path, port), log):
        yield Running(provisioned, f"127.0.0.1:{port}")


def _probe(binary: Path, address: str, kit: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "-addr", address, "-kit", str(kit), "-timeout", "20s", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_go_passes_the_health_check_over_mtls_with_a_kit(
    go_health: Path, coordinator: Running
) -> None:
    for name in ("energy", "urban"):
        answer = _probe(go_health, coordinator.address, coordinator.provisioned.kits[name])
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip() == "SERVING"
    service = _probe(
        go_health,
        coordinator.address,
        coordinator.provisioned.kits["energy"],
        "-service",
        "accord.v1.Coordinator",
    )
    assert service.returncode == 0, service.stderr
    assert service.stdout.strip() == "SERVING"


def test_go_without_a_client_certificate_of_the_ca_is_refused(
    go_health: Path, coordinator: Running, tmp_path: Path
) -> None:
    """The coordinator's mTLS holds for Go too: a self-made certificate gets no answer."""
    kit = _self_signed_kit(tmp_path / "self", extension_oid=None)
    (kit / "ca.pem").write_bytes((coordinator.provisioned.kits["energy"] / "ca.pem").read_bytes())
    answer = _probe(go_health, coordinator.address, kit, "-timeout", "3s")
    assert answer.returncode == 1
    assert "SERVING" not in answer.stdout


def test_go_refuses_a_certificate_with_the_old_uuid_oid(go_health: Path, tmp_path: Path) -> None:
    """Why the OID moved: Go cannot parse a 128-bit arc, so no Go tool could load a kit."""
    old_oid = "2.25.302550482930764669117842348321270340316"
    kit = _self_signed_kit(tmp_path / "old", extension_oid=old_oid)
    answer = _probe(go_health, "127.0.0.1:1", kit)
    assert answer.returncode == 2
    # Go 1.19 says "malformed extension OID field"; newer ones "base 128 integer too large".
    assert "malformed extension OID" in answer.stderr or "integer too large" in answer.stderr


def _self_signed_kit(folder: Path, *, extension_oid: str | None) -> Path:
    folder.mkdir(parents=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "energy")])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if extension_oid is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(extension_oid), b"\x05\x00"),
            critical=False,
        )
    certificate = builder.sign(key, hashes.SHA256())
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (folder / "tls.pem").write_bytes(pem)
    (folder / "ca.pem").write_bytes(pem)
    (folder / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder


def test_go_passes_the_health_check_with_the_coordinators_probe_certificate(
    go_health: Path, coordinator: Running
) -> None:
    """What the container HEALTHCHECK and the Helm probes run inside the coordinator's pod."""
    folder = coordinator.provisioned.coordinator_dir
    answer = _probe(
        go_health,
        coordinator.address,
        Path(),
        "-kit",
        "",
        "-cert",
        str(folder / "probe.pem"),
        "-key",
        str(folder / "probe.key"),
        "-ca",
        str(folder / "ca.pem"),
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "SERVING"
