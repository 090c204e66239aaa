"""The participant's privacy ledger: written before the upload, refusals, kept heads, and a
federation in which a participant runs out of budget while the others carry on."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accord.core import configfile
from accord.core.ledger_store import TORN_SUFFIX, read_lines
from accord.crypto import identity
from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_verify import verify_chain
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import IntegrityError, RoundAborted
from accord.participant import privacy_ledger as ledger
from accord.participant.config import ParticipantConfig
from accord.participant.federation_head import (
    FEDERATION_HEAD_FILE,
    keep_federation_head,
    read_federation_head,
)
from accord.participant.training import privacy
from accord.participant.training.protocol import LocalUpdate
from tests.support.trainers import FakeTrainer

NAMES = ("energy", "residential", "urban")
SIGMA, RATE, STEPS = 1.0, 0.1, 40
DELTA = 1e-5


def keypair(name: str) -> identity.KeyPair:
    return identity.generate_identity(lambda n: hashlib.sha256(name.encode()).digest()[:n])


KEY = keypair("energy")


@dataclass(frozen=True)
class DpUpdate(LocalUpdate):
    """A `LocalUpdate` with the `privacy` a DP trainer reports (as `PrivateUpdate`)."""

    privacy: privacy.PrivacySpent | None = None


def spent(rounds: int) -> privacy.PrivacySpent:
    history = [(SIGMA, RATE, STEPS * rounds)]
    return privacy.PrivacySpent(
        accountant="rdp",
        noise_multiplier=SIGMA,
        sample_rate=RATE,
        steps=STEPS * rounds,
        epsilon=privacy.epsilon("rdp", history, DELTA),
        delta=DELTA,
        max_grad_norm=1.0,
    )


def settings(tmp_path: Path, name: str = "energy", **extra: Any) -> ParticipantConfig:
    table: dict[str, Any] = {"name": name, "state_dir": str(tmp_path / name), **extra}
    return configfile.validate(table, ParticipantConfig, "participant", base_dir=tmp_path)


def dp(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "noise_multiplier": SIGMA, "accountant": "rdp", **extra}


def round_config(round: int) -> RoundConfig:
    return RoundConfig(
        federation_id="accord-demo",
        round=round,
        profile=Profile.NONE,
        selected=NAMES,
        threshold=2,
        quant=QuantSpec(modulus_bits=16, max_participants=3, clip_norm=2.0),
        element_count=11,
    )


def update(rounds: int | None, samples: int = 64) -> LocalUpdate:
    delta = np.zeros(10, dtype=np.float32)
    metrics = {"eval_loss_before": 1.0, "local_steps": float(STEPS)}
    if rounds is None:
        return LocalUpdate(delta=delta, sample_count=samples, metrics=metrics)
    return DpUpdate(delta=delta, sample_count=samples, metrics=metrics, privacy=spent(rounds))


CHUNKS = [b"first chunk", b"second"]


def release(config: ParticipantConfig, round: RoundConfig, update: LocalUpdate) -> str | None:
    """What the daemon records of one upload: the round, then (not refused) what was sent."""
    refused = ledger.before_upload(config, KEY.private, round, update)
    if refused is None:
        digest = hashlib.sha256(b"".join(CHUNKS)).digest()
        ledger.upload_sent(
            config, KEY.private, round.round, digest, len(CHUNKS), sum(map(len, CHUNKS))
        )
    return refused


def entries(config: ParticipantConfig, kind: str) -> list[dict[str, Any]]:
    book = ledger.ParticipantLedger.open(config, KEY.private).book
    return [dict(e.body) for e in book.entries if e.kind == kind]


def test_a_round_is_recorded_with_its_mechanism_counts_and_upload_digest(tmp_path) -> None:
    config = settings(tmp_path, dp=dp())
    for number in (1, 2):
        assert release(config, round_config(number), update(number)) is None
    first, second = entries(config, ledger.ROUND)
    assert first["round"] == 1 and first["samples"] == 64 and first["profile"] == "none"
    assert "upload" not in first  # recorded before a chunk is protected: no digest yet
    uploads = entries(config, ledger.UPLOAD)
    assert [u["round"] for u in uploads] == [1, 2]
    assert uploads[0]["upload"] == {
        "sha256": hashlib.sha256(b"".join(CHUNKS)).hexdigest(),
        "chunks": 2,
        "bytes": sum(map(len, CHUNKS)),
    }
    assert first["sample_dp"] == {
        "mechanism": "dp-sgd",
        "accountant": "rdp",
        "noise_multiplier": "1.0",
        "sample_rate": "0.1",
        "steps": STEPS,
        "steps_total": STEPS,
        "max_grad_norm": "1.0",
        "delta": "1e-05",
        "epsilon": repr(spent(1).epsilon),
    }
    # Steps per round come from the trainer's running total, so runs never double-count.
    assert second["sample_dp"]["steps"] == STEPS and second["sample_dp"]["steps_total"] == 2 * STEPS
    assert first["client_dp"] == {"mechanism": "none"}
    assert first["update_clip_norm"] == "2.0" and first["local_steps"] == STEPS
    assert first["data_quality"] == {"filter": "not run", "flagged": 0, "excluded": 0}
    opened = ledger.ParticipantLedger.open(config, KEY.private)
    assert opened.runs() == [(SIGMA, RATE, STEPS), (SIGMA, RATE, STEPS)]
    # The file verifies with the participant's identity key, and ends with a checkpoint.
    report = verify_chain(read_lines(config.state_dir / "ledger.jsonl"), KEY.public)
    assert report.ok and report.entries[-1].kind == chain.CHECKPOINT
    assert report.ledger_id == "accord-demo/participant/energy"


def test_without_dp_the_round_says_so(tmp_path) -> None:
    config = settings(tmp_path)
    assert release(config, round_config(1), update(None)) is None
    assert entries(config, ledger.ROUND)[0]["sample_dp"] == {"mechanism": "none"}


def test_dp_configured_but_not_reported_is_refused(tmp_path) -> None:
    config = settings(tmp_path, dp=dp())
    refused = release(config, round_config(1), update(None))
    assert refused is not None and "reported no DP-SGD accounting" in refused
    assert entries(config, ledger.ROUND) == []
    assert entries(config, ledger.REFUSAL)[0]["round"] == 1


def test_max_epsilon_refuses_after_training_then_before_the_round(tmp_path) -> None:
    limit = (spent(1).epsilon + spent(2).epsilon) / 2
    config = settings(tmp_path, dp=dp(max_epsilon=limit))
    assert ledger.before_round(config, KEY.private, 1) is None  # nothing to project from
    assert release(config, round_config(1), update(1)) is None
    # The projection of round 2 (round 1's run again) exceeds the limit: refused up front.
    refused = ledger.before_round(config, KEY.private, 2)
    assert refused is not None and "above [participant.dp] max_epsilon" in refused
    # A round that trained past the limit is refused before anything leaves.
    refused = release(config, round_config(2), update(2))
    assert refused is not None and "the update is not sent" in refused
    refusals = entries(config, ledger.REFUSAL)
    assert [r["round"] for r in refusals] == [2, 2]
    assert refusals[1]["steps_total"] == 2 * STEPS and refusals[0]["steps_total"] is None
    assert float(refusals[1]["epsilon"]) == pytest.approx(spent(2).epsilon)
    assert len(entries(config, ledger.ROUND)) == 1
    # Refused steps never left the machine: a later release counts only its own.
    opened = ledger.ParticipantLedger.open(config, KEY.private)
    assert opened.steps_total() == 2 * STEPS and opened.runs() == [(SIGMA, RATE, STEPS)]


def test_max_epsilon_without_dp_refuses(tmp_path) -> None:
    config = settings(tmp_path, dp={"max_epsilon": 8.0})
    refused = ledger.before_round(config, KEY.private, 1)
    assert refused is not None and "DP is off" in refused


def test_the_validation_gain_and_flagged_counts_are_recorded(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "flagged.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "check": "x"}) for i in ("a", "b", "a")) + "\n"
    )
    config = settings(tmp_path, data_dir=str(data), data_quality={"exclude_flagged": True})
    release(config, round_config(1), update(None))
    assert entries(config, ledger.ROUND)[0]["data_quality"] == {
        "filter": "exclude",
        "flagged": 2,
        "excluded": 2,
    }
    metrics = {"accuracy_before": 0.5, "global_accuracy": 0.625, "eval_loss_before": 1.0}
    ledger.after_apply(config, KEY.private, 1, metrics)
    ledger.after_apply(config, KEY.private, 2, {"eval_loss_before": 1.0, "global_eval_loss": 0.75})
    ledger.after_apply(config, KEY.private, 3, {})
    assert [e["validation"] for e in entries(config, ledger.APPLIED)] == [
        {"metric": "accuracy", "before": "0.5", "after": "0.625", "gain": "0.125"},
        {"metric": "eval_loss", "before": "1.0", "after": "0.75", "gain": "0.25"},
    ]


def test_a_tampered_ledger_is_never_appended_to(tmp_path) -> None:
    config = settings(tmp_path)
    release(config, round_config(1), update(None))
    path = config.state_dir / ledger.LEDGER_FILE
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"samples":64', '"samples":6400')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(IntegrityError, match=r"entry 2, line 3: edited"):
        release(config, round_config(2), update(None))
    with pytest.raises(IntegrityError, match="wrong key"):
        path.write_text("\n".join(lines[:2]) + "\n")
        ledger.ParticipantLedger.open(config, keypair("mallory").private)


def test_a_torn_last_line_is_set_aside_and_the_ledger_closed_again(tmp_path) -> None:
    config = settings(tmp_path)
    release(config, round_config(1), update(None))
    path = config.state_dir / ledger.LEDGER_FILE
    data = path.read_bytes()
    path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 20])  # half a checkpoint line
    opened = ledger.ParticipantLedger.open(config, KEY.private)
    assert (path.parent / (path.name + TORN_SUFFIX)).exists()
    assert opened.book.entries[-1].kind == chain.CHECKPOINT
    assert verify_chain(read_lines(path), KEY.public).ok
    assert len(entries(config, ledger.ROUND)) == 1


def test_the_federation_head_is_kept_when_it_moves_forward_and_anomalies_noted(tmp_path) -> None:
    coordinator = keypair("coordinator")
    heads = [
        chain.sign_head(
            chain.Head(count, bytes([count]) * 32), "accord-demo/coordinator", coordinator.private
        )
        for count in (1, 3)
    ]
    keep_federation_head(tmp_path, b"", b"")
    assert not (tmp_path / FEDERATION_HEAD_FILE).exists()
    keep_federation_head(tmp_path, heads[1].to_bytes(), coordinator.public)
    keep_federation_head(tmp_path, heads[0].to_bytes(), coordinator.public)  # went back
    keep_federation_head(tmp_path, heads[1].to_bytes(), keypair("other").public)  # bad sig
    impostor = keypair("impostor")
    forged = chain.sign_head(
        chain.Head(5, b"\x05" * 32), "accord-demo/coordinator", impostor.private
    )
    keep_federation_head(tmp_path, forged.to_bytes(), impostor.public)  # key changed
    key, head, anomalies = read_federation_head(tmp_path / FEDERATION_HEAD_FILE)
    assert key == coordinator.public and head == heads[1]
    assert len(anomalies) == 3
    assert "went back or forked" in anomalies[0]
    assert "does not verify" in anomalies[1]
    assert "key changed" in anomalies[2]


# ---- a federation in which one participant's budget runs out ----


def dp_trainer() -> FakeTrainer:
    """A DP trainer in miniature: a fixed run per round and the accounting it implies."""

    def train(round: int) -> LocalUpdate:
        return DpUpdate(
            delta=np.full(10, 0.01, dtype=np.float32),
            sample_count=64,
            metrics={"eval_loss_before": 1.0 / trainer.rounds, "local_steps": float(STEPS)},
            privacy=spent(trainer.rounds),
        )

    trainer = FakeTrainer(train=train)
    return trainer


@pytest.mark.e2e
def test_a_participant_out_of_budget_stops_and_the_federation_continues(tmp_path) -> None:
    from accord.audit.ledgers import load
    from accord.audit.reports import budget_summary
    from accord.coordinator import server
    from accord.participant.daemon import ParticipantDaemon
    from tests.coordinator.plaintext_federation import make_config

    keys = {name: keypair(name) for name in NAMES}
    coordinator_config = make_config(
        tmp_path, keys, threshold=2, stage_deadline_s=2.0, heartbeat_interval_s=0.2
    )
    coordinator_config.state_dir.mkdir()
    log = logging.getLogger("accord.test-ledger")
    running = server.start(coordinator_config, log=log)
    limit = (spent(1).epsilon + spent(2).epsilon) / 2
    outcomes: dict[str, BaseException | None] = {}
    try:
        workers = []
        for name in NAMES:
            folder = tmp_path / name
            folder.mkdir()
            (folder / "identity.pem").write_bytes(identity.dump_private(keys[name].private))
            config = settings(
                tmp_path,
                name,
                coordinator=f"127.0.0.1:{running.port}",
                identity_key=str(folder / "identity.pem"),
                insecure_plaintext=True,
                poll_s=1.0,
                dp=dp(max_epsilon=limit) if name == "urban" else dp(),
            )
            daemon = ParticipantDaemon(config, log=log, trainer=dp_trainer())

            def work(daemon: ParticipantDaemon = daemon, name: str = name) -> None:
                try:
                    daemon.run()
                    outcomes[name] = None
                except BaseException as error:
                    outcomes[name] = error

            workers.append(threading.Thread(target=work, daemon=True))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        status = running.orchestrator.status()
    finally:
        running.stop(grace_s=0)

    assert outcomes["energy"] is None and outcomes["residential"] is None
    stopped = outcomes["urban"]
    assert isinstance(stopped, RoundAborted) and "max_epsilon" in str(stopped)
    assert status.rounds_completed == 2
    last = status.recent_rounds[-1]
    assert last.survivors == ("energy", "residential")

    audit = load([tmp_path])
    assert audit.ok, [(x.name, [str(f) for f in x.findings]) for x in audit.ledgers]
    summary = budget_summary(audit, accountant="rdp")
    by_name = {p["participant"]: p for p in summary["participants"]}
    assert by_name["urban"]["rounds"] == 1 and by_name["urban"]["refusals"] == 1
    assert by_name["energy"]["rounds"] == 2
    # The audit recomputes with dp-accounting's RDP; the trainer records opacus's, which
    # skips some fractional orders: at most 0.2% apart (docs/audit.md).
    assert by_name["urban"]["epsilon"] == pytest.approx(spent(1).epsilon, rel=2e-3)
    assert by_name["energy"]["epsilon"] == pytest.approx(spent(2).epsilon, rel=2e-3)
    federation = next(x for x in audit.ledgers if x.role == "coordinator")
    second = federation.bodies("round")[-1]
    assert sorted(second["uploads"]) == ["energy", "residential"]
    assert second["survivors"] == ["energy", "residential"] and second["quorum"] == 2
    # Every participant kept the federation ledger's head it was last shown.
    for name in NAMES:
        key, head, anomalies = read_federation_head(tmp_path / name / FEDERATION_HEAD_FILE)
        assert head is not None and key is not None and anomalies == []
