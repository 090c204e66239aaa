"""A participant's startup kit: keys that stay home, a pinned CA, and a preflight that says
what to fix."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import stat
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc
from typer.testing import CliRunner

from accord.cli.provision import kit_app
from accord.coordinator import tls
from accord.coordinator.interceptors import DateHeaderInterceptor
from accord.coordinator.operator.approve import approve
from accord.coordinator.operator.ca import create_ca, load_ca
from accord.coordinator.operator.server_certs import issue_server_cert
from accord.errors import ConfigError, IntegrityError, UsageError
from accord.participant.kit import packaging, preflight
from accord.participant.kit import startup_kit as kits
from accord.participant.kit.check_report import CheckStatus
from accord.participant.kit.startup_kit import Kit
from tests.support import free_port

WIDE = {"COLUMNS": "250"}


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def ca_dir(tmp_path: Path, port: int) -> Path:
    folder = tmp_path / "operator" / "ca"
    create_ca(
        folder,
        "city-safety",
        coordinator=f"127.0.0.1:{port}",
        roster_path=tmp_path / "operator" / "coordinator" / "roster.json",
    )
    issue_server_cert(folder, tmp_path / "operator" / "coordinator")
    return folder


def _fingerprint(ca_dir: Path) -> str:
    return load_ca(ca_dir).fingerprint


def make_kit(
    tmp_path: Path,
    ca_dir: Path,
    name: str = "energy",
    *,
    now: dt.datetime | None = None,
    validity_days: int = 365,
) -> Path:
    """The whole enterprise flow: request here, approve at the operator, package here."""
    request_dir = tmp_path / f"{name}-request"
    request = packaging.request(name, request_dir)
    response = approve(request, ca_dir, now=now, validity_days=validity_days)
    return packaging.package(
        request_dir, response, _fingerprint(ca_dir), tmp_path / f"{name}-kit", now=now
    )


@contextlib.contextmanager
def coordinator(
    coordinator_dir: Path, port: int, *, with_date: bool = True
) -> Iterator[grpc.Server]:
    interceptors = [DateHeaderInterceptor()] if with_date else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=interceptors)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_secure_port(f"127.0.0.1:{port}", tls.server_credentials(coordinator_dir))
    server.start()
    try:
        yield server
    finally:
        server.stop(None)


# ---- request ----


def test_request_keeps_private_keys_home_and_sends_only_public_material(tmp_path: Path) -> None:
    path = packaging.request("energy", tmp_path / "req")
    assert stat.S_IMODE((tmp_path / "req").stat().st_mode) == 0o700
    for name in kits.PRIVATE_FILES:
        assert stat.S_IMODE((tmp_path / "req" / name).stat().st_mode) == 0o600
    text = path.read_text()
    document = json.loads(text)
    assert next(iter(document)) == "format_version"
    assert set(document) == {
        "format_version",
        "format",
        "participant_id",
        "csr",
        "identity_public_key",
        "ceremony_public_key",
        "signature",
    }
    assert "PRIVATE KEY" not in text
    for name in kits.PRIVATE_FILES:
        key_body = (tmp_path / "req" / name).read_text().splitlines()[1]
        assert key_body not in text


def test_request_never_overwrites_keys(tmp_path: Path) -> None:
    packaging.request("energy", tmp_path / "req")
    with pytest.raises(UsageError, match="never overwritten"):
        packaging.request("energy", tmp_path / "req")


def test_request_refuses_a_bad_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must match"):
        packaging.request("Energy Corp", tmp_path / "req")


# ---- package ----


def test_package_assembles_a_kit_that_loads(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    kit = Kit.load(kit_dir)
    assert (kit.federation_id, kit.participant_id) == ("city-safety", "energy")
    assert kit.ca_fingerprint == _fingerprint(ca_dir)
    assert kit.coordinator == load_ca(ca_dir).coordinator
    assert (kit_dir / "kit.toml").read_text().startswith("format_version = 1\n")
    for name in kits.PRIVATE_FILES:
        assert stat.S_IMODE((kit_dir / name).stat().st_mode) == 0o600
    assert "identity_key" not in repr(kit) and "tls_key_pem" not in repr(kit)
    roster = json.loads(load_ca(ca_dir).roster_path.read_text())
    entry = roster["participants"][0]
    assert bytes.fromhex(entry["identity_public_key"]) == kit.identity_public_key
    assert bytes.fromhex(entry["ceremony_public_key"]) == kit.ceremony_public_key


def test_package_refuses_a_ca_whose_fingerprint_differs_from_the_pinned_one(
    tmp_path: Path, ca_dir: Path
) -> None:
    request = packaging.request("energy", tmp_path / "req")
    response = approve(request, ca_dir)
    real = _fingerprint(ca_dir)
    tampered = ("0" if real[0] != "0" else "1") + real[1:]
    with pytest.raises(IntegrityError) as error:
        packaging.package(tmp_path / "req", response, tampered, tmp_path / "kit")
    assert real in str(error.value) and tampered in str(error.value)
    assert not (tmp_path / "kit" / "kit.toml").exists()


def test_package_refuses_a_response_from_an_impostor_ca(tmp_path: Path, ca_dir: Path) -> None:
    """An attacker's CA with the right federation name still fails the out-of-band pin."""
    request = packaging.request("energy", tmp_path / "req")
    create_ca(tmp_path / "evil", "city-safety")
    forged = approve(request, tmp_path / "evil", out_path=tmp_path / "forged.json")
    with pytest.raises(IntegrityError, match="out-of-band fingerprint"):
        packaging.package(tmp_path / "req", forged, _fingerprint(ca_dir), tmp_path / "kit")


def test_package_refuses_a_certificate_for_another_key(tmp_path: Path, ca_dir: Path) -> None:
    mine = packaging.request("energy", tmp_path / "mine")
    approve(mine, ca_dir)
    theirs = packaging.request("urban", tmp_path / "theirs")
    response = json.loads(approve(theirs, ca_dir).read_text())
    response["participant_id"] = "energy"  # relabelled, but the certificate is urban's
    (tmp_path / "relabelled.json").write_text(json.dumps(response))
    with pytest.raises(IntegrityError, match="common name"):
        packaging.package(
            tmp_path / "mine", tmp_path / "relabelled.json", _fingerprint(ca_dir), tmp_path / "k"
        )


def test_package_never_overwrites_other_keys_and_repackages_its_own(
    tmp_path: Path, ca_dir: Path
) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    renewed = approve(tmp_path / "energy-request" / "request.json", ca_dir)
    packaging.package(tmp_path / "energy-request", renewed, _fingerprint(ca_dir), kit_dir)
    assert Kit.load(kit_dir).tls_cert_pem == json.loads(renewed.read_text())["certificate"].encode()
    other = packaging.request("urban", tmp_path / "urban-request")
    response = approve(other, ca_dir)
    with pytest.raises(UsageError, match="holds another key"):
        packaging.package(tmp_path / "urban-request", response, _fingerprint(ca_dir), kit_dir)
    assert Kit.load(kit_dir).participant_id == "energy"


def test_package_refuses_an_expired_certificate(tmp_path: Path, ca_dir: Path) -> None:
    request = packaging.request("energy", tmp_path / "req")
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    response = approve(request, ca_dir, now=long_ago, validity_days=1)
    with pytest.raises(ConfigError, match="expired"):
        packaging.package(tmp_path / "req", response, _fingerprint(ca_dir), tmp_path / "kit")


# ---- load ----


def test_load_refuses_a_private_key_others_can_read(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    os.chmod(kit_dir / "identity.key", 0o640)
    with pytest.raises(ConfigError, match=f"chmod 600 {kit_dir / 'identity.key'}"):
        Kit.load(kit_dir)


def test_load_refuses_a_swapped_ca(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    create_ca(tmp_path / "other", "city-safety")
    (kit_dir / "ca.pem").write_bytes((tmp_path / "other" / "ca.pem").read_bytes())
    with pytest.raises(IntegrityError, match=r"kit\.toml pins"):
        Kit.load(kit_dir)


def test_load_refuses_a_newer_kit_format(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    text = (kit_dir / "kit.toml").read_text().replace("format_version = 1", "format_version = 2")
    (kit_dir / "kit.toml").write_text(text)
    with pytest.raises(ConfigError, match="reads up to 1"):
        Kit.load(kit_dir)


# ---- check ----


def test_check_passes_a_good_kit_and_measures_clock_skew(
    tmp_path: Path, ca_dir: Path, port: int
) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    with coordinator(ca_dir.parent / "coordinator", port):
        report = preflight.check(kit_dir, timeout_s=5)
    assert report.ok, report.checks
    assert all(c.status is CheckStatus.PASS for c in report.checks), report.checks
    assert "SERVING" in report.get("coordinator").detail
    assert report.get("clock skew").detail.startswith(("+0 s", "-0 s", "+1 s", "-1 s"))


def test_check_reports_skew_unknown_without_a_date_header(
    tmp_path: Path, ca_dir: Path, port: int
) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    with coordinator(ca_dir.parent / "coordinator", port, with_date=False):
        report = preflight.check(kit_dir, timeout_s=5)
    assert report.ok
    assert report.get("clock skew").status is CheckStatus.SKIP
    assert report.get("clock skew").detail.startswith("unknown")


def test_check_fails_a_skewed_clock_with_a_fix(tmp_path: Path, ca_dir: Path, port: int) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    with coordinator(ca_dir.parent / "coordinator", port):
        report = preflight.check(
            kit_dir, timeout_s=5, clock=lambda: dt.datetime.now().timestamp() - 3600
        )
    skew = report.get("clock skew")
    assert skew.status is CheckStatus.FAIL and "NTP" in skew.fix


def test_check_fails_an_expired_certificate_with_a_fix(tmp_path: Path) -> None:
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    ca_dir = tmp_path / "ca"
    create_ca(ca_dir, "city-safety", now=long_ago)
    issue_server_cert(ca_dir, tmp_path / "coordinator", now=long_ago)
    kit_dir = make_kit(tmp_path, ca_dir, now=long_ago, validity_days=1)
    report = preflight.check(kit_dir, online=False)
    assert not report.ok
    validity = report.get("certificate validity")
    assert validity.status is CheckStatus.FAIL
    assert "expired" in validity.detail
    assert "accord provision approve" in validity.fix


def test_check_warns_before_expiry(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir, validity_days=10)
    report = preflight.check(kit_dir, online=False)
    assert report.ok
    assert report.get("certificate validity").status is CheckStatus.WARN
    assert "renew" in report.get("certificate validity").fix


def test_check_fails_a_wrong_fingerprint_with_a_fix(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    text = (kit_dir / "kit.toml").read_text()
    real = _fingerprint(ca_dir)
    (kit_dir / "kit.toml").write_text(text.replace(real, "ab" * 32))
    report = preflight.check(kit_dir)
    pin = report.get("CA fingerprint")
    assert pin.status is CheckStatus.FAIL
    assert real in pin.detail and "ab" * 32 in pin.detail
    assert "out of band" in pin.fix
    assert report.get("coordinator").status is CheckStatus.SKIP


def test_check_fails_an_unreachable_coordinator_with_a_fix(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)  # nothing listens on the federation's port
    report = preflight.check(kit_dir, timeout_s=2)
    reach = report.get("coordinator")
    assert reach.status is CheckStatus.FAIL
    assert "start the coordinator" in reach.fix or "check the address" in reach.fix
    assert report.get("certificate chain").status is CheckStatus.PASS


def test_check_fails_a_coordinator_of_another_federation(
    tmp_path: Path, ca_dir: Path, port: int
) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    create_ca(tmp_path / "other", "other-fed", coordinator=f"127.0.0.1:{port}")
    issue_server_cert(tmp_path / "other", tmp_path / "other-coordinator")
    with coordinator(tmp_path / "other-coordinator", port):
        report = preflight.check(kit_dir, timeout_s=5)
    reach = report.get("coordinator")
    assert reach.status is CheckStatus.FAIL
    assert "pinned CA did not issue" in reach.detail
    assert reach.fix


def test_check_lists_every_problem_of_a_broken_kit(tmp_path: Path, ca_dir: Path) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    os.chmod(kit_dir / "tls.key", 0o644)
    (kit_dir / "tls.pem").write_text("garbage")
    report = preflight.check(kit_dir, online=False)
    failed = {c.name: c for c in report.failures()}
    assert set(failed) >= {"private keys", "certificate chain"}
    assert failed["private keys"].fix == f"chmod 600 {kit_dir / 'tls.key'}"
    assert all(c.fix for c in report.failures())


def test_check_says_whether_the_ca_certified_the_kits_own_keys(
    tmp_path: Path, ca_dir: Path
) -> None:
    kit_dir = make_kit(tmp_path, ca_dir)
    assert preflight.check(kit_dir, online=False).get("certified keys").status is CheckStatus.PASS
    # A ceremony key the certificate does not certify (here: another member's): the other
    # members would refuse this participant, so the preflight says so first.
    other = make_kit(tmp_path, ca_dir, "urban")
    shutil.copy(other / "ceremony.key", kit_dir / "ceremony.key")
    certified = preflight.check(kit_dir, online=False).get("certified keys")
    assert certified.status is CheckStatus.FAIL
    assert "ceremony key is not the one the CA certified" in certified.detail
    assert "accord provision approve" in certified.fix


def test_check_on_a_folder_without_a_kit(tmp_path: Path) -> None:
    report = preflight.check(tmp_path, online=False)
    assert not report.ok
    assert "accord kit package" in report.get("kit file").fix


# ---- CLI ----


def test_cli_request_package_check(tmp_path: Path, ca_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        kit_app, ["request", "--name", "energy", "--out", str(tmp_path / "req")], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert "send only this file" in result.output
    response = approve(tmp_path / "req" / "request.json", ca_dir)

    bad = runner.invoke(
        kit_app,
        ["package", str(tmp_path / "req"), str(response), "--ca-fingerprint", "ab" * 32],
        env=WIDE,
    )
    assert bad.exit_code == 2
    assert bad.stderr.startswith("IntegrityError: ")

    result = runner.invoke(
        kit_app,
        [
            "package",
            str(tmp_path / "req"),
            str(response),
            "--ca-fingerprint",
            _fingerprint(ca_dir).upper(),
            "--out",
            str(tmp_path / "kit"),
        ],
        env=WIDE,
    )
    assert result.exit_code == 0, result.output

    result = runner.invoke(kit_app, ["check", str(tmp_path / "kit"), "--offline"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "kit OK" in result.output

    result = runner.invoke(kit_app, ["check", str(tmp_path / "kit"), "--timeout", "2"], env=WIDE)
    assert result.exit_code == 1
    assert "FAIL" in result.output and "coordinator" in result.output

    os.chmod(tmp_path / "kit" / "ceremony.key", 0o644)
    result = runner.invoke(kit_app, ["check", str(tmp_path / "kit"), "--offline"], env=WIDE)
    assert result.exit_code == 1
    assert f"chmod 600 {tmp_path / 'kit' / 'ceremony.key'}" in result.output
