"""The coordinator's ledger key is pinned in every startup kit: made at provisioning,
certified by the CA, checked when packaging and loading the kit, and the only key whose
federation ledger heads a participant keeps; `accord audit verify` takes it too."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from accord.audit.ledgers import load
from accord.coordinator import federation_ledger
from accord.coordinator.federation_ledger import FederationLedger
from accord.coordinator.operator.approve import approve
from accord.core import configfile
from accord.crypto import identity
from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_key import to_pem
from accord.crypto.ledger_report import Problem
from accord.errors import ConfigError, IntegrityError
from accord.federation.provision import (
    FederationFile,
    FederationSection,
    ParticipantSection,
    ProvisionedFederation,
    provision_federation,
)
from accord.participant.config import ParticipantConfig
from accord.participant.federation_head import (
    FEDERATION_HEAD_FILE,
    keep_federation_head,
    read_federation_head,
)
from accord.participant.kit import packaging, preflight
from accord.participant.kit import startup_kit as kits
from accord.participant.kit.check_report import CheckStatus
from accord.participant.kit.startup_kit import Kit
from tests.support import free_port

FEDERATION = "city-safety"


@pytest.fixture
def fed(tmp_path: Path) -> ProvisionedFederation:
    return provision_federation(
        FederationFile(
            federation=FederationSection(id=FEDERATION, coordinator=f"127.0.0.1:{free_port()}"),
            participants=(ParticipantSection(name="energy"),),
        ),
        tmp_path / "fed",
    )


def coordinator_key(fed: ProvisionedFederation) -> Path:
    return fed.coordinator_dir / federation_ledger.PROVISIONED_KEY_FILE


def test_every_kit_pins_the_key_the_coordinator_signs_its_ledger_with(fed) -> None:
    kit = Kit.load(fed.kits["energy"])
    signer = FederationLedger(fed.root / "state", FEDERATION, key_file=coordinator_key(fed))
    assert kit.coordinator_ledger_key == signer.public_key
    assert (fed.kits["energy"] / kits.LEDGER_KEY_FILE).read_bytes() == to_pem(signer.public_key)
    manifest = (fed.kits["energy"] / kits.KIT_FILE).read_text()
    assert f'coordinator_ledger_key = "{signer.public_key.hex()}"' in manifest
    pinned = preflight.check(fed.kits["energy"], online=False).get("coordinator ledger key")
    assert pinned.status is CheckStatus.PASS and signer.public_key.hex()[:16] in pinned.detail


def request_and_response(tmp_path: Path, fed: ProvisionedFederation) -> tuple[Path, Path]:
    request = packaging.request("water", tmp_path / "water")
    return tmp_path / "water", approve(request, fed.ca_dir)


def test_a_response_whose_ledger_key_was_swapped_is_refused(tmp_path, fed) -> None:
    request_dir, response = request_and_response(tmp_path, fed)
    document = json.loads(response.read_text())
    document["coordinator_ledger_key"] = identity.generate_identity().public.hex()
    response.write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match="not certified by the pinned CA"):
        packaging.package(request_dir, response, fed.ca_fingerprint, tmp_path / "kit")
    del document["coordinator_ledger_key"], document["coordinator_ledger_key_signature"]
    response.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="accord provision ledger-key"):
        packaging.package(request_dir, response, fed.ca_fingerprint, tmp_path / "kit")


def test_a_kit_whose_pinned_key_was_replaced_does_not_load(fed) -> None:
    folder = fed.kits["energy"]
    original = (folder / kits.LEDGER_KEY_FILE).read_bytes()
    other = identity.generate_identity().public
    (folder / kits.LEDGER_KEY_FILE).write_bytes(to_pem(other))
    with pytest.raises(IntegrityError, match=r"differs from the key kit\.toml pins"):
        Kit.load(folder)
    # Both file and kit.toml replaced: the CA's signature no longer fits.
    manifest = (folder / kits.KIT_FILE).read_text()
    key_line = next(
        line for line in manifest.splitlines() if line.startswith("coordinator_ledger_key =")
    )
    (folder / kits.KIT_FILE).write_text(
        manifest.replace(key_line, f'coordinator_ledger_key = "{other.hex()}"')
    )
    with pytest.raises(IntegrityError, match="the CA did not certify"):
        Kit.load(folder)
    (folder / kits.KIT_FILE).write_text(manifest)
    (folder / kits.LEDGER_KEY_FILE).write_bytes(original)
    assert Kit.load(folder).coordinator_ledger_key is not None


def test_a_kit_packaged_before_kits_pinned_the_key_is_refused_by_the_daemon(tmp_path, fed) -> None:
    from accord.participant.daemon import ParticipantDaemon

    folder = fed.kits["energy"]
    manifest = (folder / kits.KIT_FILE).read_text()
    old = "\n".join(
        line
        for line in manifest.splitlines()
        if "coordinator_ledger_key" not in line and "ledger key (coordinator" not in line
    )
    (folder / kits.KIT_FILE).write_text(old + "\n")
    (folder / kits.LEDGER_KEY_FILE).unlink()
    assert Kit.load(folder).coordinator_ledger_key is None  # `accord kit check` reads it ...
    found = preflight.check(folder, online=False).get("coordinator ledger key")
    assert found.status is CheckStatus.FAIL and "accord provision ledger-key" in found.fix
    config = configfile.validate(
        {
            "kit": str(folder),
            "state_dir": str(tmp_path / "state"),
            "trainer": "accord.demo.lora_mlp:LoraMlpTrainer",
        },
        ParticipantConfig,
        "participant",
    )
    with pytest.raises(ConfigError, match="pins no coordinator ledger key"):
        ParticipantDaemon(config, log=logging.getLogger("accord.test"))


def test_only_heads_signed_by_the_pinned_key_are_kept(tmp_path) -> None:
    coordinator = identity.generate_identity()
    impostor = identity.generate_identity()
    ledger_id = f"{FEDERATION}/coordinator"
    good = chain.sign_head(chain.Head(3, b"\x03" * 32), ledger_id, coordinator.private)
    forged = chain.sign_head(chain.Head(5, b"\x05" * 32), ledger_id, impostor.private)
    with pytest.raises(IntegrityError, match="not by the coordinator ledger key the kit pins"):
        keep_federation_head(
            tmp_path, forged.to_bytes(), impostor.public, pinned=coordinator.public
        )
    with pytest.raises(IntegrityError, match="does not verify"):
        keep_federation_head(
            tmp_path, forged.to_bytes(), coordinator.public, pinned=coordinator.public
        )
    with pytest.raises(IntegrityError, match="no signed federation ledger head"):
        keep_federation_head(tmp_path, b"", b"", pinned=coordinator.public)
    assert not (tmp_path / FEDERATION_HEAD_FILE).exists()
    keep_federation_head(tmp_path, good.to_bytes(), coordinator.public, pinned=coordinator.public)
    key, head, anomalies = read_federation_head(tmp_path / FEDERATION_HEAD_FILE)
    assert (key, head, anomalies) == (coordinator.public, good, [])


def test_a_head_kept_on_first_use_gives_way_to_the_pinned_key(tmp_path) -> None:
    first_seen = identity.generate_identity()
    pinned = identity.generate_identity()
    ledger_id = f"{FEDERATION}/coordinator"
    old = chain.sign_head(chain.Head(2, b"\x02" * 32), ledger_id, first_seen.private)
    keep_federation_head(tmp_path, old.to_bytes(), first_seen.public)
    new = chain.sign_head(chain.Head(4, b"\x04" * 32), ledger_id, pinned.private)
    keep_federation_head(tmp_path, new.to_bytes(), pinned.public, pinned=pinned.public)
    key, head, anomalies = read_federation_head(tmp_path / FEDERATION_HEAD_FILE)
    assert (key, head) == (pinned.public, new)
    assert len(anomalies) == 1 and "replaced" in anomalies[0]


def test_audit_verify_checks_the_federation_ledger_with_the_pinned_key(tmp_path, fed) -> None:
    state = tmp_path / "coordinator"
    FederationLedger(state, FEDERATION, key_file=coordinator_key(fed))
    given = load([state], coordinator_key=str(fed.kits["energy"]))
    assert given.ok and given.coordinators[0].key_source.startswith("--coordinator-key")
    # The kits under PATH pin it, once the auditor pins the CA that certified it.
    found = load([state, fed.kits["energy"].parent], ca_fingerprint=fed.ca_fingerprint)
    assert found.ok and found.authenticated
    assert found.coordinators[0].key_source.startswith("a kit certified by the CA (")
    unpinned = load([state, fed.kits["energy"].parent])  # no CA: a key file alone is not trusted
    assert unpinned.ok and not unpinned.authenticated
    assert unpinned.coordinators[0].key_source == "the ledger itself"
    other = identity.generate_identity().public.hex()
    wrong = load([state], coordinator_key=other)
    assert not wrong.ok
    assert any(f.problem is Problem.WRONG_KEY for f in wrong.coordinators[0].findings)
    with pytest.raises(ConfigError, match="--coordinator-key"):
        load([state], coordinator_key="not-a-key")
