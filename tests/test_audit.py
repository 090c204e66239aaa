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

from accord import accounting, configfile
from accord.audit import budget_summary, contribution_rows, load
from accord.cli import app
from accord.coordinator.ledger import FederationLedger
from accord.coordinator.roster import RosterEntry, RosterSnapshot
from accord.crypto import identity
from accord.crypto.messages import RoundConfig, Stage
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.participant import ledger, privacy
from accord.participant.config import ParticipantConfig
from accord.participant.trainer import LocalUpdate

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
            refused = ledger.before_upload(
                configs[name], keypair(name).private, round_config(number), update, chunks
            )
            assert refused is None
            federation.note_upload(number, name, hashlib.sha256(b"".join(chunks)).digest())
        finished = SimpleNamespace(
            config=round_config(number),
            stage=Stage.DONE,
            outcome=SimpleNamespace(survivors=NAMES),
            abort_reason="",
        )
        federation.round_finished(finished, [b"aggregate", str(number).encode()], federation_size=3)  # type: ignore[arg-type]
        for name in NAMES:
            ledger.keep_federation_head(
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
    write_federation(tmp_path)
    write_roster(tmp_path / "roster.json", {n: keypair(n).public for n in NAMES})
    code, report = audit_json("verify", str(tmp_path))
    assert code == 0 and report["ok"]
    assert {x["name"]: x["key_source"] for x in report["ledgers"]} == {
        "coordinator": "kept heads",
        "energy": "roster",
        "residential": "roster",
        "urban": "roster",
    }
    result = runner.invoke(app, ["audit", "verify", str(tmp_path)])
    assert result.exit_code == 0 and result.output.count("OK") == 4


@pytest.mark.parametrize(
    ("tamper", "problem", "where"),
    [
        ("edit", "edited", "entry 6"),
        ("drop", "missing", "entry 4"),
        ("reorder", "reordered", "entry 4"),
        ("signature", "bad signature", "entry 2"),
        ("tail", "truncated", "entry 12"),
    ],
)
def test_tampering_with_a_participant_ledger_is_named(
    tmp_path, tamper: str, problem: str, where: str
) -> None:
    write_federation(tmp_path)
    path = tmp_path / "participants" / "residential" / "ledger.jsonl"
    lines = path.read_text().splitlines()
    if tamper == "edit":
        lines[6] = lines[6].replace('"steps":30', '"steps":3')  # round 2's entry
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
    path.write_text("\n".join(lines[:-4]) + "\n")  # round 3 and its applied entry, cleanly cut
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
    write_federation(tmp_path)
    keys = {n: keypair(n).public for n in NAMES} | {"energy": keypair("impostor").public}
    write_roster(tmp_path / "roster.json", keys)
    code, report = audit_json("verify", str(tmp_path))
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
    ledger.before_upload(config, keypair("solo").private, round_config(1), plain, [b"x"])
    summary = budget_summary(load([tmp_path]))
    solo = next(p for p in summary["participants"] if p["participant"] == "solo")
    assert solo["epsilon"] is None and solo["mechanism"] == "none"
    assert summary["federation"]["record_level"] == {
        **summary["federation"]["record_level"],
        "max": None,
        "composed": None,
    }
