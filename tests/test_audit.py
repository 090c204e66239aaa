"""`accord audit`: epsilon checked against an independent accountant, and the three commands
on a small federation's ledgers written by the roles' own code (participant and coordinator),
clean and tampered with."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from accord.audit.ledgers import load
from accord.audit.reports import budget_summary, contribution_rows
from accord.cli.main import app
from accord.coordinator.federation_ledger import FederationLedger
from accord.coordinator.roster import RosterEntry, RosterSnapshot
from accord.core import accounting, configfile
from accord.crypto import identity
from accord.crypto.messages import RoundConfig, Stage
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.participant import privacy_ledger as ledger
from accord.participant.config import ParticipantConfig
from accord.participant.federation_head import keep_federation_head
from accord.participant.training import privacy
from accord.participant.training.protocol import LocalUpdate

runner = CliRunner()
NAMES = ("energy", "residential", "urban")
FEDERATION = "accord-demo"
DELTA = 1e-5
SIGMAS = {"energy": 1.0, "residential": 1.5, "urban": 2.0}
RATE, STEPS = 0.05, 30


@dataclass(frozen=True)
class PrivateUpdate(LocalUpdate):
    """As `multimodal_trainer.PrivateUpdate` (without importing the multimodal stack)."""

    privacy: privacy.PrivacySpent | None = None


# ---- epsilon against Google's dp-accounting ----

GRID = list(itertools.product((0.8, 1.1, 2.0), (0.001, 0.01, 0.05), (100, 1000), (1e-5, 1e-6)))


def dp_accounting_rdp(runs: list[tuple[float, float, int]], delta: float) -> float:
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant()
    for sigma, rate, steps in runs:
        event = dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(sigma))
        accountant.compose(event, steps)
    return float(accountant.get_epsilon(delta))


def test_rdp_epsilon_agrees_with_dp_accounting_within_one_percent() -> None:
    # The grid spans the budgets a federation plans with (epsilon ~0.1 to ~15). Far
    # beyond (epsilon > 50 with sigma < 0.8 and q = 0.1) the two libraries' grids of
    # Renyi orders differ enough to part by several percent; no budget lives there.
    off = []
    for sigma, rate, steps, delta in GRID:
        ours = accounting.epsilon([(sigma, rate, steps)], delta, "rdp")
        theirs = dp_accounting_rdp([(sigma, rate, steps)], delta)
        if abs(ours - theirs) > 0.01 * theirs:
            off.append((sigma, rate, steps, delta, ours, theirs))
    assert not off


def test_a_history_of_different_runs_composes_as_dp_accounting_does() -> None:
    runs = [(1.0, 0.01, 400), (1.5, 0.02, 300), (0.9, 0.005, 1000)]
    ours = accounting.epsilon(runs, DELTA, "rdp")
    assert ours == pytest.approx(dp_accounting_rdp(runs, DELTA), rel=0.01)
    # Never a sum of per-run epsilons, which is far looser.
    assert ours < sum(accounting.epsilon([run], DELTA, "rdp") for run in runs)


def test_prv_is_tight_and_gdp_may_understate() -> None:
    import dp_accounting

    run = (1.0, 0.01, 1000)
    pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    pld.compose(
        dp_accounting.PoissonSampledDpEvent(run[1], dp_accounting.GaussianDpEvent(run[0])), run[2]
    )
    prv = accounting.epsilon([run], DELTA, "prv")
    rdp = accounting.epsilon([run], DELTA, "rdp")
    gdp = accounting.epsilon([run], DELTA, "gdp")
    assert prv == pytest.approx(pld.get_epsilon(DELTA), rel=0.02)
    assert gdp < prv < rdp
    assert "gdp" in accounting.UNDERSTATES
    # mu-GDP composes by the root of the sum of squares: one run or two halves agree.
    halves = [(1.0, 0.01, 500), (1.0, 0.01, 500)]
    assert accounting.epsilon(halves, DELTA, "gdp") == pytest.approx(gdp, rel=1e-9)


def test_epsilon_edge_cases_and_the_curve_over_rounds() -> None:
    assert accounting.epsilon([], DELTA) == 0.0
    assert accounting.epsilon([(1.0, 0.1, 0)], DELTA) == 0.0
    assert accounting.epsilon([(0.0, 0.1, 5)], DELTA) == math.inf
    curve = accounting.epsilon_over_rounds(
        [(1, (1.0, 0.05, 30)), (2, (1.0, 0.05, 30)), (3, None), (4, (1.0, 0.05, 30))], DELTA
    )
    assert [r for r, _ in curve] == [1, 2, 3, 4]
    assert 0 < curve[0][1] < curve[1][1] and curve[2][1] == curve[3][1] == math.inf
    with pytest.raises(Exception, match="accountant"):
        accounting.epsilon([(1.0, 0.1, 1)], DELTA, "moments")


# ---- a federation's ledgers, written by the roles' code ----


def keypair(name: str) -> identity.KeyPair:
    return identity.generate_identity(lambda n: hashlib.sha256(name.encode()).digest()[:n])


def round_config(round: int) -> RoundConfig:
    return RoundConfig(
        federation_id=FEDERATION,
        round=round,
        profile=Profile.NONE,
        selected=NAMES,
        threshold=2,
        quant=QuantSpec(modulus_bits=16, max_participants=3, clip_norm=1.0),
        element_count=5,
    )


def spent(name: str, rounds: int) -> privacy.PrivacySpent:
    history = [(SIGMAS[name], RATE, STEPS * rounds)]
    return privacy.PrivacySpent(
        "rdp",
        SIGMAS[name],
        RATE,
        STEPS * rounds,
        privacy.epsilon("rdp", history, DELTA),
        DELTA,
        1.0,
    )


def write_federation(root: Path, rounds: int = 3) -> dict[str, Any]:
    """Ledgers of a 3-participant federation: `root/coordinator`, `root/participants/<name>`."""
    federation = FederationLedger(root / "coordinator", FEDERATION)
    configs: dict[str, ParticipantConfig] = {}
    for name in NAMES:
        table = {
            "name": name,
            "state_dir": str(root / "participants" / name),
            "dp": {"enabled": True, "noise_multiplier": SIGMAS[name], "accountant": "rdp"},
        }
        configs[name] = configfile.validate(table, ParticipantConfig, "participant", base_dir=root)
    for number in range(1, rounds + 1):
        for index, name in enumerate(NAMES):
            chunks = [f"{name}/{number}/a".encode(), b"b"]
            update = PrivateUpdate(
                delta=np.zeros(4, dtype=np.float32),
                sample_count=100 * (index + 1),
                metrics={"accuracy_before": 0.5 + 0.01 * number},
                privacy=spent(name, number),
            )
            key = keypair(name).private
            refused = ledger.before_upload(configs[name], key, round_config(number), update)
            assert refused is None
            digest = hashlib.sha256(b"".join(chunks)).digest()
            size = sum(map(len, chunks))
            ledger.upload_sent(configs[name], key, number, digest, len(chunks), size)
            federation.note_upload(number, name, hashlib.sha256(b"".join(chunks)).digest())
        finished = SimpleNamespace(
            config=round_config(number),
            stage=Stage.DONE,
            outcome=SimpleNamespace(survivors=NAMES),
            abort_reason="",
        )
        federation.round_finished(finished, [b"aggregate", str(number).encode()], federation_size=3)  # type: ignore[arg-type]
        for name in NAMES:
            keep_federation_head(
                configs[name].state_dir, federation.signed_head, federation.public_key
            )
            metrics = {
                "accuracy_before": 0.5 + 0.01 * number,
                "global_accuracy": 0.52 + 0.01 * number,
            }
            ledger.after_apply(configs[name], keypair(name).private, number, metrics)
    return {"configs": configs, "federation": federation}


def write_roster(path: Path, keys: dict[str, bytes]) -> None:
    entries = tuple(
        RosterEntry(
            participant_id=name,
            cert_sha256=hashlib.sha256(name.encode()).hexdigest(),
            identity_public_key=key,
            ceremony_public_key=bytes(32),
        )
        for name, key in keys.items()
    )
    path.write_bytes(RosterSnapshot(FEDERATION, entries).to_bytes())


def audit_json(*arguments: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["audit", *arguments, "--json"])
    return result.exit_code, json.loads(result.output)


def test_a_clean_federation_verifies_everywhere(tmp_path) -> None:
    pinned = pinned_federation(tmp_path)
    ca = ["--ca", str(pinned["ca_path"])]
    code, report = audit_json("verify", str(tmp_path), *ca)
    assert code == 0 and report["ok"]
    assert {x["name"]: x["key_source"] for x in report["ledgers"]} == {
        "coordinator": f"a kit certified by the CA ({tmp_path / 'kits' / 'energy' / 'kit.toml'})",
        "energy": "roster (certified by the CA)",
        "residential": "roster (certified by the CA)",
        "urban": "roster (certified by the CA)",
    }
    result = runner.invoke(app, ["audit", "verify", str(tmp_path), *ca])
    assert result.exit_code == 0 and result.output.count("OK") == 4
    # Without the kit, the federation ledger is checked with the key the participants kept.
    code, report = audit_json("verify", str(tmp_path), "--unauthenticated")
    assert code == 0 and not report["authenticated"]
    coordinator = next(x for x in report["ledgers"] if x["name"] == "coordinator")
    assert coordinator["key_source"] == "kept heads" and coordinator["ok"]


@pytest.mark.parametrize(
    ("tamper", "problem", "where"),
    [
        ("edit", "edited", "entry 8"),
        ("drop", "missing", "entry 4"),
        ("reorder", "reordered", "entry 4"),
        ("signature", "bad signature", "entry 2"),
        ("tail", "truncated", "entry 18"),
    ],
)
def test_tampering_with_a_participant_ledger_is_named(
    tmp_path, tamper: str, problem: str, where: str
) -> None:
    write_federation(tmp_path)
    path = tmp_path / "participants" / "residential" / "ledger.jsonl"
    lines = path.read_text().splitlines()
    if tamper == "edit":
        lines[8] = lines[8].replace('"steps":30', '"steps":3')  # round 2's entry
    elif tamper == "drop":
        del lines[4]
    elif tamper == "reorder":
        lines[4], lines[5] = lines[5], lines[4]
    elif tamper == "signature":
        first, second = json.loads(lines[2]), json.loads(lines[4])
        first["signature"], second["signature"] = second["signature"], first["signature"]
        lines[2], lines[4] = json.dumps(first), json.dumps(second)
    else:
        lines = lines[:-1]  # the last checkpoint
    path.write_text("\n".join(lines) + "\n")
    code, report = audit_json("verify", str(tmp_path))
    assert code == 1 and not report["ok"]
    broken = {x["name"]: x["findings"] for x in report["ledgers"]}
    assert all(not broken[n] for n in ("coordinator", "energy", "urban"))
    messages = [f["message"] for f in broken["residential"]]
    assert any(m.startswith(where) and f": {problem}: " in m for m in messages), messages
    text = runner.invoke(app, ["audit", "verify", str(tmp_path)]).output
    assert "FAIL" in text and f"{problem}:" in text


def test_a_participant_ledger_cut_at_a_checkpoint_is_caught_by_the_federation_ledger(
    tmp_path,
) -> None:
    write_federation(tmp_path)
    path = tmp_path / "participants" / "urban" / "ledger.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-6]) + "\n")  # round 3, its upload and applied entries
    code, report = audit_json("verify", str(tmp_path))
    assert code == 1
    urban = next(x for x in report["ledgers"] if x["name"] == "urban")
    assert [f["problem"] for f in urban["findings"]] == ["truncated"]
    assert (
        "received its round 3 upload; this ledger ends at round 2" in urban["findings"][0]["detail"]
    )


def test_a_federation_ledger_cut_at_a_checkpoint_is_caught_by_the_kept_heads(tmp_path) -> None:
    write_federation(tmp_path)
    path = tmp_path / "coordinator" / "ledger.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")
    code, report = audit_json("verify", str(tmp_path))
    assert code == 1
    coordinator = next(x for x in report["ledgers"] if x["name"] == "coordinator")
    problems = [f["problem"] for f in coordinator["findings"]]
    assert problems == ["truncated"] * 3  # one per participant that kept the head
    assert (
        "kept by energy covers 7 entries; the ledger has 6" in coordinator["findings"][0]["detail"]
    )


def test_a_roster_key_that_differs_is_a_wrong_key(tmp_path) -> None:
    pinned = pinned_federation(tmp_path)
    keys = {n: keypair(n).public for n in NAMES} | {"energy": keypair("impostor").public}
    write_signed_roster(tmp_path / "roster.json", pinned["ca_key"], pinned["ca"], keys)
    code, report = audit_json("verify", str(tmp_path), "--ca", str(pinned["ca_path"]))
    assert code == 1
    energy = next(x for x in report["ledgers"] if x["name"] == "energy")
    assert [f["problem"] for f in energy["findings"]] == ["wrong key"]


def test_budget_recomputes_epsilon_from_the_runs_and_states_its_assumptions(tmp_path) -> None:
    write_federation(tmp_path)
    plot = tmp_path / "epsilon.png"
    code, summary = audit_json("budget", "--ledger", str(tmp_path), "--plot", str(plot))
    assert code == 0 and summary["verified"]
    by_name = {p["participant"]: p for p in summary["participants"]}
    for name in NAMES:
        expected = accounting.epsilon([(SIGMAS[name], RATE, 3 * STEPS)], DELTA, "rdp")
        assert by_name[name]["epsilon"] == pytest.approx(expected, rel=1e-9)
        assert by_name[name]["epsilon_recorded"] == pytest.approx(spent(name, 3).epsilon)
        assert by_name[name]["rounds"] == 3 and by_name[name]["steps"] == 3 * STEPS
        assert [r for r, _ in by_name[name]["epsilon_by_round"]] == [1, 2, 3]
    record = summary["federation"]["record_level"]
    assert record["max"] == pytest.approx(by_name["energy"]["epsilon"])
    composed = accounting.epsilon(
        [(SIGMAS[n], RATE, STEPS) for n in NAMES for _ in range(3)], DELTA, "rdp"
    )
    assert record["composed"] == pytest.approx(composed, rel=1e-9)
    assert record["max"] < record["composed"]
    assert "one enterprise" in record["max_assumes"] and "every" in record["composed_assumes"]
    assert summary["federation"]["client_level"]["status"] == "off"
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    gdp = runner.invoke(app, ["audit", "budget", "-l", str(tmp_path), "--accountant", "gdp"])
    assert gdp.exit_code == 0 and "may understate" in gdp.output
    assert "record-level" in gdp.output


def test_budget_of_a_tampered_ledger_exits_1(tmp_path) -> None:
    write_federation(tmp_path, rounds=1)
    path = tmp_path / "participants" / "energy" / "ledger.jsonl"
    path.write_text(
        path.read_text().replace('"noise_multiplier":"1.0"', '"noise_multiplier":"9.0"')
    )
    code, summary = audit_json("budget", "--ledger", str(tmp_path))
    assert code == 1 and not summary["verified"]
    assert not next(p for p in summary["participants"] if p["participant"] == "energy")["verified"]


def test_contributions_per_participant_and_round(tmp_path) -> None:
    write_federation(tmp_path, rounds=2)
    code, document = audit_json("contributions", "--ledger", str(tmp_path))
    assert code == 0
    rows = {(r["participant"], r["round"]): r for r in document["rows"]}
    assert len(rows) == 6
    row = rows[("residential", 2)]
    assert row["samples"] == 200 and row["metric"] == "accuracy"
    assert row["gain"] == pytest.approx(0.02)
    assert row["flagged_share"] is None  # no data-quality check ran
    assert set(row) == {
        "participant",
        "round",
        "samples",
        "flagged",
        "flagged_share",
        "metric",
        "before",
        "after",
        "gain",
        "verified",
        "missing",
    }
    assert contribution_rows(load([tmp_path])) == document["rows"]
    table = runner.invoke(app, ["audit", "contributions", "-l", str(tmp_path)])
    assert table.exit_code == 0 and "residential" in table.output


def test_budget_summary_counts_a_release_without_dp_as_unbounded(tmp_path) -> None:
    write_federation(tmp_path, rounds=1)
    config = configfile.validate(
        {"name": "solo", "state_dir": str(tmp_path / "participants" / "solo")},
        ParticipantConfig,
        "participant",
        base_dir=tmp_path,
    )
    plain = PrivateUpdate(delta=np.zeros(4, dtype=np.float32), sample_count=5, metrics={})
    ledger.before_upload(config, keypair("solo").private, round_config(1), plain)
    summary = budget_summary(load([tmp_path]))
    solo = next(p for p in summary["participants"] if p["participant"] == "solo")
    assert solo["epsilon"] is None and solo["mechanism"] == "none"
    assert summary["federation"]["record_level"] == {
        **summary["federation"]["record_level"],
        "max": None,
        "composed": None,
    }


# ---- issue 12, finding 7: a missing or empty ledger fails; trust only what chains to the CA ----


def make_ca(name: str = "Accord CA") -> tuple[Any, Any]:
    """A self-signed P-256 CA as `accord provision` makes one (key, certificate)."""
    from tests.support.pki import make_ca as self_signed_ca

    return self_signed_ca(name)


def member_certificate(ca_key: Any, ca: Any, name: str, identity_public: bytes) -> str:
    """A client certificate for `name` certifying its identity key (PEM)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from accord.crypto.credential import MemberKeys, extension

    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(extension(MemberKeys(name, identity_public, bytes(32))), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def write_signed_roster(path: Path, ca_key: Any, ca: Any, keys: dict[str, bytes]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    entries = []
    for name, key in keys.items():
        pem = member_certificate(ca_key, ca, name, key)
        der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
        entries.append(
            RosterEntry(
                participant_id=name,
                cert_sha256=hashlib.sha256(der).hexdigest(),
                identity_public_key=key,
                ceremony_public_key=bytes(32),
                certificate=pem,
            )
        )
    path.write_bytes(RosterSnapshot(FEDERATION, tuple(entries)).to_bytes())


def write_kit(folder: Path, ca_key: Any, ca: Any, ledger_public: bytes, *, signer: Any) -> None:
    """The audit-relevant files of a startup kit: ca.pem, kit.toml, coordinator_ledger.pub."""
    from cryptography.hazmat.primitives import serialization

    from accord.crypto import ledger_key

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    signature = ledger_key.certify(signer, FEDERATION, ledger_public)
    (folder / "kit.toml").write_text(
        "format_version = 1\n"
        f'federation_id = "{FEDERATION}"\n'
        f'coordinator_ledger_key = "{ledger_public.hex()}"\n'
        f'coordinator_ledger_key_signature = "{signature.hex()}"\n'
    )
    (folder / "coordinator_ledger.pub").write_bytes(ledger_key.to_pem(ledger_public))


def pinned_federation(root: Path, rounds: int = 3) -> dict[str, Any]:
    """`write_federation` plus a CA, a CA-signed roster and one kit: everything chains."""
    from cryptography.hazmat.primitives import serialization

    written = write_federation(root, rounds)
    ca_key, ca = make_ca()
    (root / "ca").mkdir()
    (root / "ca" / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write_signed_roster(root / "roster.json", ca_key, ca, {n: keypair(n).public for n in NAMES})
    write_kit(root / "kits" / "energy", ca_key, ca, written["federation"].public_key, signer=ca_key)
    return written | {"ca_key": ca_key, "ca": ca, "ca_path": root / "ca" / "ca.pem"}


def test_a_pinned_federation_verifies_with_every_key_chained_to_the_ca(tmp_path) -> None:
    pinned = pinned_federation(tmp_path)
    code, report = audit_json("verify", str(tmp_path), "--ca", str(pinned["ca_path"]))
    assert code == 0 and report["ok"] and report["authenticated"], report
    sources = {x["name"]: x["key_source"] for x in report["ledgers"]}
    assert sources["energy"] == "roster (certified by the CA)"
    assert sources["coordinator"].startswith("a kit certified by the CA")
    assert all(x["authenticated"] for x in report["ledgers"])


def test_an_empty_participant_ledger_fails_verify_naming_the_member(tmp_path) -> None:
    pinned = pinned_federation(tmp_path)
    (tmp_path / "participants" / "urban" / "ledger.jsonl").write_text("")
    code, report = audit_json("verify", str(tmp_path), "--ca", str(pinned["ca_path"]))
    assert code == 1 and not report["ok"]
    text = runner.invoke(app, ["audit", "verify", str(tmp_path), "--ca", str(pinned["ca_path"])])
    assert text.exit_code == 1 and "FAIL" in text.output
    assert "urban" in text.output and "empty" in text.output
    path = tmp_path / "participants" / "urban" / "ledger.jsonl"
    assert report["missing"] == [
        {
            "participant": "urban",
            "rounds": [1, 2, 3],
            "ledger": str(path),
            "detail": f"the federation ledger names urban (rounds 1, 2, 3), but its ledger "
            f"{path} is empty or unreadable",
        }
    ]
    code, summary = audit_json("budget", "-l", str(tmp_path), "--ca", str(pinned["ca_path"]))
    urban = next(p for p in summary["participants"] if p["participant"] == "urban")
    assert code == 1 and urban["missing"] and urban["epsilon"] is None


@pytest.mark.parametrize("command", ["verify", "budget", "contributions"])
def test_a_deleted_participant_ledger_is_a_failure_and_flagged(tmp_path, command: str) -> None:
    pinned = pinned_federation(tmp_path)
    (tmp_path / "participants" / "urban" / "ledger.jsonl").unlink()
    ca = ["--ca", str(pinned["ca_path"])]
    where = [str(tmp_path)] if command == "verify" else ["--ledger", str(tmp_path)]
    code, document = audit_json(command, *where, *ca)
    assert code == 1
    assert document["missing"] == [
        {
            "participant": "urban",
            "rounds": [1, 2, 3],
            "ledger": None,
            "detail": "the federation ledger names urban (rounds 1, 2, 3), but no ledger of "
            "urban was found",
        }
    ]
    if command == "budget":
        urban = next(p for p in document["participants"] if p["participant"] == "urban")
        assert urban["missing"] and not urban["verified"] and urban["epsilon"] is None
        assert not document["verified"]
        # The federation's record-level budget cannot be bounded without urban's runs.
        assert document["federation"]["record_level"]["max"] is None
    if command == "contributions":
        urban = [r for r in document["rows"] if r["participant"] == "urban"]
        assert [r["round"] for r in urban] == [1, 2, 3]
        assert all(r["missing"] and r["samples"] is None and not r["verified"] for r in urban)
    text = runner.invoke(app, ["audit", command, *where, *ca])
    assert text.exit_code == 1 and "urban" in text.output and "no ledger" in text.output


def test_an_unsigned_roster_in_the_folder_is_not_trusted(tmp_path) -> None:
    # An impostor rewrites urban's ledger under its own key and plants a roster naming it.
    pinned = pinned_federation(tmp_path)
    write_roster(tmp_path / "roster.json", {n: keypair(n).public for n in NAMES})
    code, report = audit_json("verify", str(tmp_path), "--ca", str(pinned["ca_path"]))
    assert code == 1 and not report["authenticated"]
    sources = {x["name"]: x["key_source"] for x in report["ledgers"]}
    assert sources["urban"] == "the ledger itself"
    notes = report["notes"]
    assert any("roster entry of urban" in note and "not trusted" in note for note in notes)


def test_a_roster_signed_by_another_ca_is_not_trusted(tmp_path) -> None:
    pinned = pinned_federation(tmp_path)
    other_key, other = make_ca("Impostor CA")
    write_signed_roster(
        tmp_path / "roster.json", other_key, other, {n: keypair(n).public for n in NAMES}
    )
    code, report = audit_json("verify", str(tmp_path), "--ca", str(pinned["ca_path"]))
    assert code == 1 and not report["authenticated"]
    assert {x["key_source"] for x in report["ledgers"] if x["role"] == "participant"} == {
        "the ledger itself"
    }


def test_a_coordinator_key_in_the_folder_not_certified_by_the_ca_is_not_trusted(tmp_path) -> None:
    pinned = pinned_federation(tmp_path)
    other_key, _ = make_ca("Impostor CA")
    write_kit(
        tmp_path / "kits" / "energy",
        pinned["ca_key"],
        pinned["ca"],
        pinned["federation"].public_key,
        signer=other_key,
    )
    code, report = audit_json("verify", str(tmp_path), "--ca", str(pinned["ca_path"]))
    assert code == 1 and not report["authenticated"]
    coordinator = next(x for x in report["ledgers"] if x["role"] == "coordinator")
    assert not coordinator["authenticated"]
    assert any("not certified by the CA" in note for note in report["notes"])


def test_a_coordinator_key_named_from_a_kit_must_be_certified_by_the_pinned_ca(tmp_path) -> None:
    pinned = pinned_federation(tmp_path)
    kit = tmp_path / "kits" / "energy"
    ca = ["--ca", str(pinned["ca_path"])]
    code, report = audit_json("verify", str(tmp_path), "--coordinator-key", str(kit), *ca)
    assert code == 0 and report["authenticated"]
    other_key, _ = make_ca("Impostor CA")
    write_kit(
        kit, pinned["ca_key"], pinned["ca"], pinned["federation"].public_key, signer=other_key
    )
    result = runner.invoke(
        app, ["audit", "verify", str(tmp_path), "--coordinator-key", str(kit), *ca]
    )
    assert result.exit_code == 2
    assert "ConfigError: --coordinator-key" in result.output and "did not certify" in result.output


def test_verify_without_a_pinned_ca_authenticates_nothing_it_finds(tmp_path) -> None:
    pinned_federation(tmp_path)  # a CA-signed roster and kit lie in the folder, ca.pem too
    code, report = audit_json("verify", str(tmp_path))
    assert code == 1 and report["ok"] and not report["authenticated"]
    assert {x["key_source"] for x in report["ledgers"] if x["role"] == "participant"} == {
        "the ledger itself"
    }
    result = runner.invoke(app, ["audit", "verify", str(tmp_path)])
    assert result.exit_code == 1 and "--ca" in result.output
    # Consistency only, asked for by name: exit 0, still said to be unauthenticated.
    plain = runner.invoke(app, ["audit", "verify", str(tmp_path), "--unauthenticated"])
    assert plain.exit_code == 0 and "not authenticated" in plain.output


def test_a_ca_fingerprint_pins_a_ca_pem_found_in_the_folder(tmp_path) -> None:
    from accord.core.pki import fingerprint

    pinned = pinned_federation(tmp_path)
    good = fingerprint(pinned["ca"])
    code, report = audit_json("verify", str(tmp_path), "--ca-fingerprint", good)
    assert code == 0 and report["authenticated"]
    wrong = runner.invoke(app, ["audit", "verify", str(tmp_path), "--ca-fingerprint", "ab" * 32])
    assert wrong.exit_code == 2 and "ConfigError" in wrong.output and "ab" * 32 in wrong.output
