"""The coordinator's probe certificate: a health check's client identity, nothing more.

The coordinator serves mTLS only, so a health probe (the image's HEALTHCHECK, the Helm
chart's probes, grpc_health_probe) must show a client certificate of the federation's
CA. `accord provision` writes one next to the server's (`probe.pem`, `probe.key`): its
common name can never be a participant id, and it certifies no member keys, so it
passes the handshake and the health check but cannot enroll or speak for anyone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accord.coordinator.operator.server_certs import (
    PROBE_CERT_FILE,
    PROBE_KEY_FILE,
    issue_probe_cert,
    probe_common_name,
)
from accord.core import logs
from accord.core.kitformat import PARTICIPANT_ID_PATTERN
from accord.crypto.credential import MEMBER_KEYS_OID
from accord.errors import UsageError
from accord.federation.provision import ProvisionedFederation
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from tests.support import free_port
from tests.support.federation import (
    FEDERATION,
    provision_loopback,
    serve,
    write_coordinator_config,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[ProvisionedFederation, str]]:
    port = free_port()
    provisioned = provision_loopback(tmp_path, port, ("energy", "urban"))
    log = logs.configure("coordinator", tmp_path / "c.log")
    with serve(write_coordinator_config(tmp_path, port), log):
        yield provisioned, f"127.0.0.1:{port}"


def _probe_channel(folder: Path, address: str) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(folder / "ca.pem").read_bytes(),
        private_key=(folder / PROBE_KEY_FILE).read_bytes(),
        certificate_chain=(folder / PROBE_CERT_FILE).read_bytes(),
    )
    return grpc.secure_channel(address, credentials)


def test_the_probe_certificate_is_a_client_certificate_of_no_member(
    running: tuple[ProvisionedFederation, str],
) -> None:
    provisioned, _ = running
    folder = provisioned.coordinator_dir
    certificate = x509.load_pem_x509_certificate((folder / "probe.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    certificate.verify_directly_issued_by(ca)
    name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert not re.fullmatch(PARTICIPANT_ID_PATTERN, str(name))
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        certificate.extensions.get_extension_for_oid(MEMBER_KEYS_OID)
    assert (folder / "probe.key").stat().st_mode & 0o077 == 0


def test_the_probe_passes_the_health_check_but_cannot_enroll(
    running: tuple[ProvisionedFederation, str],
) -> None:
    provisioned, address = running
    with _probe_channel(provisioned.coordinator_dir, address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        for name in ("energy", str(probe_common_name(FEDERATION))):
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.CoordinatorStub(channel).Enroll(
                    pb.EnrollRequest(
                        header=pb.RequestHeader(federation_id=FEDERATION, participant_id=name),
                        base_model_hash="ab" * 32,
                        adapter_parameters=10,
                    ),
                    timeout=10,
                )
            assert refused.value.code() in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.INVALID_ARGUMENT,
            ), refused.value.details()


def test_a_probe_certificate_is_never_overwritten(tmp_path: Path) -> None:
    provisioned = provision_loopback(tmp_path, 50051, ("energy",))
    before = (provisioned.coordinator_dir / "probe.pem").read_bytes()
    with pytest.raises(UsageError, match=r"probe\.key exists"):
        issue_probe_cert(provisioned.ca_dir, provisioned.coordinator_dir)
    assert (provisioned.coordinator_dir / "probe.pem").read_bytes() == before


def test_the_cli_issues_it_with_the_ca_and_for_an_older_federation(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from accord.cli.main import app

    runner = CliRunner()
    made = runner.invoke(
        app,
        ["provision", "ca", str(tmp_path / "op"), "--federation", FEDERATION,
         "--coordinator", "coord.example.com:50051"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    coordinator_dir = tmp_path / "op" / "coordinator"
    first = (coordinator_dir / "probe.pem").read_bytes()
    # A federation provisioned before: no probe files yet.
    (coordinator_dir / "probe.pem").unlink()
    (coordinator_dir / "probe.key").unlink()
    issued = runner.invoke(
        app,
        ["provision", "probe-cert", "--ca", str(tmp_path / "op" / "ca"),
         "--coordinator-dir", str(coordinator_dir)],
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    second = x509.load_pem_x509_certificate((coordinator_dir / "probe.pem").read_bytes())
    assert (coordinator_dir / "probe.pem").read_bytes() != first
    name = second.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert name == probe_common_name(FEDERATION)
