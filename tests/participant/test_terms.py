"""Provisioning signs the federation terms into every kit; the participant holds rounds to them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import Result

from accord.core.kitformat import TERMS_FILE
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import ConfigError, TermsDeparted
from accord.federation.provision import load_federation, provision_federation
from accord.participant.terms import check_own_settings, check_round, load_kit_terms

MODEL = "ab" * 32

FEDERATION = f"""
[federation]
id = "fed-terms"
coordinator = "127.0.0.1:50051"
profile = "masks"

[terms]
threshold = 2
min_cohort = 3
modulus_bits = 16
clip_norm = 40.0
base_model_hash = "{MODEL}"
adapter_parameters = 10
rounds = 2

[[participants]]
name = "energy"

[[participants]]
name = "urban"

[[participants]]
name = "wind"

[[participants]]
name = "solar"
"""


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fed")
    (root / "federation.toml").write_text(FEDERATION)
    provision_federation(load_federation(root / "federation.toml"), root / "out")
    return root / "out"


def _round(threshold: int, n: int = 4) -> RoundConfig:
    return RoundConfig(
        federation_id="fed-terms",
        round=3,
        profile=Profile.MASKS,
        selected=("energy", "solar", "urban", "wind")[:n],
        threshold=threshold,
        quant=QuantSpec(modulus_bits=16, max_participants=4, clip_norm=40.0),
        element_count=43,  # 10 parameters, the weight slot, 32 integrity tags
        neighbour_degree=n,
        graph_seed=bytes(32),
    )


def test_every_kit_and_the_coordinator_carry_the_same_signed_terms(provisioned: Path) -> None:
    coordinator = (provisioned / "coordinator" / TERMS_FILE).read_bytes()
    ca_pem = (provisioned / "coordinator" / "ca.pem").read_bytes()
    for name in ("energy", "urban", "wind", "solar"):
        kit = provisioned / "kits" / name
        assert (kit / TERMS_FILE).read_bytes() == coordinator
        terms = load_kit_terms(kit, ca_pem)
        assert terms is not None and terms.min_cohort == 3 and terms.base_model_hash == MODEL


def test_terms_the_ca_did_not_sign_are_refused(provisioned: Path, tmp_path: Path) -> None:
    kit = provisioned / "kits" / "energy"
    ca_pem = (provisioned / "coordinator" / "ca.pem").read_bytes()
    forged = tmp_path / "kit"
    forged.mkdir()
    data = (kit / TERMS_FILE).read_bytes().replace(b'"threshold":2', b'"threshold":3')
    (forged / TERMS_FILE).write_bytes(data)
    with pytest.raises(ConfigError, match="not signed by the federation's CA"):
        load_kit_terms(forged, ca_pem)


def test_a_round_from_the_coordinator_that_departs_is_refused(provisioned: Path) -> None:
    ca_pem = (provisioned / "coordinator" / "ca.pem").read_bytes()
    terms = load_kit_terms(provisioned / "kits" / "energy", ca_pem)
    check_round(terms, _round(3))
    with pytest.raises(
        TermsDeparted,
        match=r"round 3 from the coordinator: threshold 2 departs from the signed terms "
        r"\(>= 3 of 4 selected\)",
    ):
        check_round(terms, _round(2))
    with pytest.raises(TermsDeparted, match="cohort of 2 selected departs"):
        check_round(terms, _round(2, n=2))
    with pytest.raises(TermsDeparted, match="element_count 44 departs"):
        check_round(terms, dataclasses.replace(_round(3), element_count=44))


def test_a_member_whose_model_departs_gets_a_config_error(provisioned: Path) -> None:
    ca_pem = (provisioned / "coordinator" / "ca.pem").read_bytes()
    terms = load_kit_terms(provisioned / "kits" / "energy", ca_pem)
    assert terms is not None
    with pytest.raises(ConfigError, match=r"energy: adapter of 12 parameters departs"):
        check_own_settings(terms, name="energy", base_model_hash=MODEL, adapter_parameters=12)


def test_kit_check_verifies_the_terms_signature(provisioned: Path, tmp_path: Path) -> None:
    import shutil

    from accord.participant.kit.preflight import check

    report = check(provisioned / "kits" / "energy", online=False)
    assert report.get("federation terms").status.value == "pass"
    forged = tmp_path / "energy"
    shutil.copytree(provisioned / "kits" / "energy", forged)
    data = (forged / TERMS_FILE).read_bytes().replace(b'"min_cohort":3', b'"min_cohort":2')
    (forged / TERMS_FILE).write_bytes(data)
    report = check(forged, online=False)
    assert report.get("federation terms").status.value == "fail"
    assert "not signed by the federation's CA" in report.get("federation terms").detail


# ---- the split flow: `accord provision terms`, then approve and package carry them ----


def _split_flow(root: Path) -> tuple[Path, Path]:
    """CA and coordinator folder, one request; returns (ca folder, request folder)."""
    from typer.testing import CliRunner

    from accord.cli.main import app

    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "provision",
            "ca",
            str(root / "op"),
            "--federation",
            "fed-terms",
            "--coordinator",
            "127.0.0.1:50051",
        ],
    )
    assert made.exit_code == 0, made.output
    requested = runner.invoke(
        app, ["kit", "request", "--name", "energy", "--out", str(root / "energy")]
    )
    assert requested.exit_code == 0, requested.output
    return root / "op" / "ca", root / "energy"


def _approve_and_package(root: Path, ca: Path, request: Path) -> tuple[int, str]:
    from typer.testing import CliRunner

    from accord.cli.main import app
    from accord.coordinator.operator.ca import load_ca

    runner = CliRunner()
    response = root / "energy.response.json"
    approved = runner.invoke(
        app,
        [
            "provision",
            "approve",
            str(request / "request.json"),
            "--ca",
            str(ca),
            "--out",
            str(response),
        ],
    )
    assert approved.exit_code == 0, approved.output
    fingerprint = load_ca(ca).fingerprint
    packaged = runner.invoke(
        app,
        [
            "kit",
            "package",
            str(request),
            str(response),
            "--ca-fingerprint",
            fingerprint,
            "--out",
            str(root / "kit"),
        ],
    )
    return packaged.exit_code, packaged.output


def _provision_terms(tmp_path: Path, ca: Path, federation: str) -> Result:
    """`accord provision terms` of the federation file `federation` with the CA in `ca`."""
    from typer.testing import CliRunner

    from accord.cli.main import app

    (tmp_path / "federation.toml").write_text(federation)
    return CliRunner().invoke(
        app,
        [
            "provision",
            "terms",
            str(tmp_path / "federation.toml"),
            "--ca",
            str(ca),
            "--coordinator-dir",
            str(tmp_path / "op" / "coordinator"),
        ],
    )


def test_provision_terms_signs_them_and_approve_carries_them_into_the_kit(tmp_path: Path) -> None:

    ca, request = _split_flow(tmp_path)
    signed = _provision_terms(tmp_path, ca, FEDERATION)
    assert signed.exit_code == 0, signed.output
    assert (tmp_path / "op" / "coordinator" / TERMS_FILE).read_bytes() == (
        ca / TERMS_FILE
    ).read_bytes()
    code, output = _approve_and_package(tmp_path, ca, request)
    assert code == 0, output
    terms = load_kit_terms(tmp_path / "kit", (ca / "ca.pem").read_bytes())
    assert terms is not None and (terms.min_cohort, terms.base_model_hash) == (3, MODEL)


def test_a_response_whose_terms_the_ca_did_not_sign_is_not_packaged(tmp_path: Path) -> None:
    import base64
    import json

    ca, request = _split_flow(tmp_path)
    (tmp_path / "federation.toml").write_text(FEDERATION)
    other = tmp_path / "other"
    provision_federation(load_federation(tmp_path / "federation.toml"), other)
    # The operator's CA folder holds terms another CA signed: approve hands them out ...
    (ca / TERMS_FILE).write_bytes((other / "coordinator" / TERMS_FILE).read_bytes())
    code, output = _approve_and_package(tmp_path, ca, request)
    # ... and the member refuses to package them into its kit.
    assert code == 2 and "not signed by the pinned CA" in output, output
    assert not (tmp_path / "kit" / TERMS_FILE).exists()
    response = json.loads((tmp_path / "energy.response.json").read_text())
    assert base64.b64decode(response["terms"]) == (ca / TERMS_FILE).read_bytes()


def test_provision_terms_without_a_terms_table_names_the_fix(tmp_path: Path) -> None:

    ca, _ = _split_flow(tmp_path)
    without = (
        FEDERATION.split("[terms]")[0]
        + "[[participants]]"
        + FEDERATION.split("[[participants]]", 1)[1]
    )
    result = _provision_terms(tmp_path, ca, without)
    assert result.exit_code == 2
    assert "no [terms] table" in result.output and "describe-model" in result.output
    assert not (ca / TERMS_FILE).exists()
