"""The federation ledger: its provisioned key, a round a restart aborted, the client-level
noise of each round."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accord.coordinator import federation_ledger
from accord.coordinator.aggregation.round_sum import round_config
from accord.coordinator.federation_ledger import FederationLedger
from accord.coordinator.operator.ca import CertificateAuthority, create_ca
from accord.coordinator.operator.server_certs import issue_server_cert
from accord.coordinator.orchestrator import Orchestrator
from accord.coordinator.store.database import open_store
from accord.coordinator.store.persistence import FederationRecords
from accord.core.ledger_store import read_lines
from accord.crypto import identity, integrity
from accord.crypto.ledger_key import check
from accord.crypto.ledger_verify import verify_chain
from accord.crypto.profile import Profile
from accord.errors import BadSignature, ConfigError, UsageError

from .plaintext_federation import (
    ADAPTER_PARAMETERS,
    MODEL_HASH,
    NAMES,
    json_logger,
    make_config,
    make_keys,
)
from .test_orchestrator import FakeClock, header, upload


def round_entries(state_dir) -> list[dict]:
    lines = read_lines(state_dir / federation_ledger.LEDGER_FILE)
    report = verify_chain(lines, None)
    assert report.ok, [str(f) for f in report.findings]
    return [dict(e.body) for e in report.entries if e.kind == federation_ledger.ROUND]


def test_a_round_a_restart_aborts_gets_its_ledger_entry_once(tmp_path) -> None:
    keys = make_keys()
    log = json_logger(tmp_path)
    store_path = str(tmp_path / "coordinator.sqlite")

    def start() -> Orchestrator:
        config = make_config(tmp_path, keys)
        config.state_dir.mkdir(exist_ok=True)
        return Orchestrator(
            config, log=log, clock=FakeClock(), records=FederationRecords(open_store(store_path))
        )

    first = start()
    for name in NAMES:
        first.enroll(
            header(name), base_model_hash=MODEL_HASH, adapter_parameters=ADAPTER_PARAMETERS
        )
    upload(first, make_keys(), "energy", np.full(ADAPTER_PARAMETERS, 0.1, np.float32))
    # The process dies in the upload stage; a new one starts on the same store and state.
    start()
    state_dir = tmp_path / "coordinator"
    rounds = round_entries(state_dir)
    assert len(rounds) == 1
    aborted = rounds[0]
    assert (aborted["round"], aborted["outcome"]) == (1, "aborted")
    assert "restarted during upload" in aborted["reason"]
    assert aborted["selected"] == list(NAMES) and aborted["survivors"] == []
    assert aborted["aggregate_sha256"] is None and aborted["client_dp"] == {"mechanism": "none"}
    start()  # a second restart finds nothing in flight: no second entry
    assert len(round_entries(state_dir)) == 1


def test_a_ledger_entry_written_before_a_crash_is_not_written_again(tmp_path) -> None:
    keys = make_keys()
    config = make_config(tmp_path, keys, profile="masks")
    config.state_dir.mkdir()
    ledger = FederationLedger(config.state_dir, config.federation_id)
    rc = round_config(config, round=4, selected=NAMES, element_count=11, graph_seed=bytes(32))
    ledger.round_aborted(rc, "the coordinator restarted during share", federation_size=3)
    ledger.round_aborted(rc, "the coordinator restarted during share", federation_size=3)
    assert ledger.recorded_rounds() == {4}
    assert len(round_entries(config.state_dir)) == 1


def test_the_federation_ledger_records_each_rounds_client_level_noise(tmp_path) -> None:
    keys = make_keys()
    config = make_config(
        tmp_path, keys, profile="masks", client_dp={"noise_multiplier": 1.0, "honest_fraction": 0.5}
    )
    count = integrity.protected_length(100, Profile.MASKS)  # 100 parameters, weight, tags
    rc = round_config(config, round=1, selected=NAMES, element_count=count, graph_seed=bytes(32))
    assert rc.client_noise is not None
    done = federation_ledger.client_dp_record(rc, survivors=3)
    sigma = 1.0 * config.clip_norm / rc.quant.step
    assert done["mechanism"] == "skellam"
    assert (float(done["noise_multiplier"]), float(done["honest_fraction"])) == (1.0, 0.5)
    assert done["honest_participants"] == 2  # ceil(0.5 * 3)
    assert float(done["share_mu"]) == pytest.approx(sigma**2 / 4)
    # Three shares of sigma^2 / 4 each: 3 - (3 - 2) = 2 sure to be honest, carrying sigma^2.
    assert float(done["noise_std_levels"]) == pytest.approx(sigma)
    sensitivity = config.clip_norm / rc.quant.step + math.sqrt(100)
    assert float(done["sensitivity_levels"]) == pytest.approx(sensitivity)
    assert float(done["guaranteed_noise_multiplier"]) == pytest.approx(sigma / sensitivity)
    dropped = federation_ledger.client_dp_record(rc, survivors=2)
    assert float(dropped["noise_std_levels"]) == pytest.approx(sigma / math.sqrt(2))
    aborted = federation_ledger.client_dp_record(rc, survivors=None)
    assert "guaranteed_noise_multiplier" not in aborted and aborted["share_mu"] == done["share_mu"]


# ---- the provisioned key ----


def ca(tmp_path) -> CertificateAuthority:
    return create_ca(tmp_path / "ca", "city-safety", roster_path=tmp_path / "roster.json")


def test_provisioning_makes_the_ledger_key_and_the_ca_certifies_it(tmp_path) -> None:
    authority = ca(tmp_path)
    issue_server_cert(authority.root, tmp_path / "coordinator")
    key_file = tmp_path / "coordinator" / federation_ledger.PROVISIONED_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    certified = federation_ledger.certified_key(authority.root)
    assert certified is not None
    check(authority.certificate, "city-safety", certified.public_key, certified.signature)
    with pytest.raises(BadSignature):
        check(authority.certificate, "other-federation", certified.public_key, certified.signature)
    # The coordinator signs with it; nothing is made in its state folder.
    ledger = FederationLedger(tmp_path / "state", "city-safety", key_file=key_file)
    assert ledger.public_key == certified.public_key
    assert not (tmp_path / "state" / federation_ledger.KEY_FILE).exists()
    # Idempotent: running it again changes nothing.
    again = federation_ledger.provision_key(authority, tmp_path / "coordinator")
    assert again == certified


def test_a_federation_provisioned_before_adopts_its_key_and_never_replaces_it(tmp_path) -> None:
    authority = ca(tmp_path)
    folder = tmp_path / "coordinator"
    old = identity.generate_identity()
    federation_ledger.save_key(folder / federation_ledger.PROVISIONED_KEY_FILE, old.private)
    adopted = federation_ledger.provision_key(authority, folder)
    assert adopted.public_key == old.public
    elsewhere = tmp_path / "elsewhere"
    federation_ledger.save_key(
        elsewhere / federation_ledger.PROVISIONED_KEY_FILE, identity.generate_identity().private
    )
    with pytest.raises(UsageError, match="not the ledger key the CA certified"):
        federation_ledger.provision_key(authority, elsewhere)


def test_a_coordinator_without_its_provisioned_key_refuses_to_start(tmp_path) -> None:
    with pytest.raises(ConfigError, match="accord provision ledger-key"):
        FederationLedger(tmp_path, "city-safety", key_file=tmp_path / "tls" / "ledger.key")


def test_accord_provision_ledger_key_certifies_the_key_of_an_older_federation(tmp_path) -> None:
    from typer.testing import CliRunner

    from accord.cli.main import app

    authority = ca(tmp_path)  # a CA made without the coordinator's material
    assert federation_ledger.certified_key(authority.root) is None
    folder = tmp_path / "coordinator"
    arguments = ["provision", "ledger-key", "--ca", str(authority.root)]
    result = CliRunner().invoke(app, [*arguments, "--coordinator-dir", str(folder)])
    assert result.exit_code == 0, result.output
    certified = federation_ledger.certified_key(authority.root)
    assert certified is not None and certified.public_key.hex() in result.output
    ledger = FederationLedger(
        tmp_path / "state", "city-safety", key_file=folder / federation_ledger.PROVISIONED_KEY_FILE
    )
    assert ledger.public_key == certified.public_key


def test_a_ledger_begun_under_the_self_made_key_says_how_to_adopt_it(tmp_path) -> None:
    state = tmp_path / "state"
    FederationLedger(state, "city-safety")  # insecure plaintext: its own key
    authority = ca(tmp_path)
    issue_server_cert(authority.root, tmp_path / "coordinator")
    key_file = tmp_path / "coordinator" / federation_ledger.PROVISIONED_KEY_FILE
    with pytest.raises(ConfigError, match="accord provision ledger-key"):
        FederationLedger(state, "city-safety", key_file=key_file)
    # The documented way: the self-made key becomes the provisioned, certified one.
    key_file.unlink()
    (authority.root / federation_ledger.CERTIFIED_KEY_FILE).unlink()
    (state / federation_ledger.KEY_FILE).rename(key_file)
    certified = federation_ledger.provision_key(authority, tmp_path / "coordinator")
    assert FederationLedger(state, "city-safety", key_file=key_file).public_key == (
        certified.public_key
    )
