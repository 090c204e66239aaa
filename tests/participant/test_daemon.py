"""The daemon's edges: refusals come back as Accord errors, settings are checked first."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from accord.core import configfile
from accord.errors import ConfigError, NotAllowed
from accord.participant.clock import SYSTEM_CLOCK, Clock
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon
from accord.participant.rpc_errors import accord_error
from accord.participant.training.protocol import LocalUpdate
from accord.participant.transfers import with_last
from tests.support.trainers import FakeTrainer


class Refusal(grpc.RpcError):
    def __init__(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details


def test_a_refusal_names_its_accord_error() -> None:
    error = accord_error(Refusal("NotAllowed: 'mallory' is not a participant"))
    assert isinstance(error, NotAllowed)
    assert str(error) == "'mallory' is not a participant"
    other = Refusal("Socket closed")
    assert accord_error(other) is other


def test_the_last_chunk_is_flagged() -> None:
    assert list(with_last(iter([b"a", b"b", b"c"]))) == [
        (b"a", False),
        (b"b", False),
        (b"c", True),
    ]
    assert list(with_last(iter([]))) == []


def test_plaintext_needs_the_flag_and_a_key_is_required(tmp_path) -> None:
    def settings(**extra: object) -> ParticipantConfig:
        table = {"name": "energy", "state_dir": str(tmp_path), **extra}
        return configfile.validate(table, ParticipantConfig, "participant", base_dir=tmp_path)

    with pytest.raises(ConfigError, match="kit: required unless insecure_plaintext = true"):
        ParticipantDaemon(settings(), log=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"identity_key = .*: no such file"):
        ParticipantDaemon(settings(insecure_plaintext=True), log=None)  # type: ignore[arg-type]


def _refuse_training(round: int) -> LocalUpdate:
    """The daemon's trainer here: enough for its bookkeeping; training is refused."""
    raise TrainingStarted(round)


class TrainingStarted(Exception):
    pass


@pytest.fixture
def daemon(tmp_path) -> ParticipantDaemon:
    return _daemon(tmp_path)


def _daemon(tmp_path, *, clock: Clock = SYSTEM_CLOCK, **settings: object) -> ParticipantDaemon:
    """A plaintext daemon whose trainer refuses to train; `settings` join its config."""
    from accord.core import logs
    from accord.crypto import identity

    key_file = tmp_path / "identity.pem"
    if not key_file.exists():
        key_file.write_bytes(identity.dump_private(identity.generate_identity().private))
    config = configfile.validate(
        {"name": "energy", "state_dir": str(tmp_path), "insecure_plaintext": True, **settings},
        ParticipantConfig,
        "participant",
        base_dir=tmp_path,
    )
    log = logs.configure("participant", tmp_path / "participant.log")
    trainer = FakeTrainer(train=_refuse_training)
    return ParticipantDaemon(config, log=log, trainer=trainer, clock=clock)  # type: ignore[arg-type]


def _round_config(tmp_path, round: int):
    from accord.coordinator.aggregation.round_sum import round_config

    from ..coordinator.plaintext_federation import NAMES, make_config, make_keys

    return round_config(
        make_config(tmp_path / "coordinator", make_keys()),
        round=round,
        selected=NAMES,
        element_count=11,
        graph_seed=bytes(32),
        key_epoch=0,
    )


def test_a_survivor_that_lost_its_round_machine_still_applies_the_aggregate(
    daemon, tmp_path
) -> None:
    from accord.crypto.messages import Stage
    from accord.proto.v1 import federation_pb2 as pb

    downloads = []

    def download(number: int, *, machine: object) -> None:
        downloads.append(number)

    daemon._applier.download = download  # type: ignore[method-assign]
    config = _round_config(tmp_path, 2)
    assert daemon._round is None  # restarted, or its download broke off
    task = pb.Task(stage=pb.AGGREGATE, survivors=["energy", "urban"])
    daemon._on_task(Stage.AGGREGATE, config, task)
    # The download itself checks whose sum it is (the signed survivor set it carries).
    expected = [config.round]
    assert downloads == expected
    # Whose update is not in the aggregate does not fetch it during the round: it catches
    # up once the round has closed (`_catch_up`, before its next round or at the end).
    other = pb.Task(stage=pb.AGGREGATE, survivors=["residential", "urban"])
    daemon._on_task(Stage.AGGREGATE, config, other)
    assert downloads == expected


def test_a_round_is_trained_and_uploaded_at_most_once_across_restarts(tmp_path) -> None:
    from accord.crypto.member_tasks import Step
    from accord.crypto.participant_round import ParticipantRound
    from accord.proto.v1 import federation_pb2 as pb

    first = _daemon(tmp_path)
    config = _round_config(tmp_path, 3)
    machine = ParticipantRound(config, "energy", first._identity_private, {})
    first._round = machine
    with pytest.raises(TrainingStarted):  # the process dies while it trains or sends
        first._perform(Step.UPLOAD, machine, config, pb.Task(stage=pb.UPLOAD))
    assert (tmp_path / "upload.json").read_text().count('"round_uploaded": 3') == 1

    second = _daemon(tmp_path)  # restarted on the same state folder
    second._round = machine
    second._perform(Step.UPLOAD, machine, config, pb.Task(stage=pb.UPLOAD))  # no training
    assert second._round is None
    later = ParticipantRound(_round_config(tmp_path, 4), "energy", second._identity_private, {})
    with pytest.raises(TrainingStarted):
        second._uploader.upload(later)


def test_a_member_that_cannot_apply_a_missed_aggregate_stops_instead_of_diverging(
    daemon, tmp_path
) -> None:
    from accord import errors

    def gone(number: int, *, machine: object) -> None:
        raise errors.Expired(f"round {number}'s aggregate is no longer kept")

    daemon._applier.download = gone  # type: ignore[method-assign]
    with pytest.raises(errors.Expired, match=r"round 1's aggregate cannot be applied .* diverge"):
        daemon._catch_up(1)
    assert daemon._applier.round_applied == 0  # nothing was marked applied
    events = (tmp_path / "participant.log").read_text(encoding="utf-8")
    assert '"adapter_diverged"' in events and '"adapter_lags"' not in events


def test_the_driver_refuses_a_round_that_departs_from_the_signed_terms(daemon, tmp_path) -> None:
    """A coordinator offering a lowered threshold or a too-small cohort is refused."""
    import dataclasses

    from accord.crypto.messages import Stage
    from accord.crypto.terms import FederationTerms
    from accord.errors import TermsDeparted
    from accord.proto.v1 import federation_pb2 as pb

    config = _round_config(tmp_path, 3)  # three selected, the `none` profile
    daemon._terms = FederationTerms(
        federation_id=config.federation_id,
        profile=config.profile,
        threshold=2,
        min_cohort=3,
        modulus_bits=config.quant.modulus_bits,
        clip_norm=config.quant.clip_norm,
        base_model_hash="ab" * 32,
        adapter_parameters=10,
        rounds=2,
    )
    task = pb.Task(stage=pb.UPLOAD)
    for offered, message in (
        (
            dataclasses.replace(config, threshold=1),
            "round 3 from the coordinator: threshold 1 departs from the signed terms "
            "(>= 2 of 3 selected)",
        ),
        (
            dataclasses.replace(config, selected=config.selected[:2], threshold=2),
            "cohort of 2 selected departs from the signed terms (at least 3)",
        ),
    ):
        with pytest.raises(TermsDeparted) as caught:
            daemon._on_task(Stage.UPLOAD, offered, task)
        assert message in str(caught.value)
        assert daemon._round is None  # no round machine was made, nothing was sent


class SteppingClock:
    """`tests.support.FakeClock` as the daemon's clock: sleeping moves it forward."""

    def __init__(self) -> None:
        from tests.support import FakeClock

        self.fake = FakeClock()
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.fake()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.fake.now += seconds

    def now(self):
        import datetime as dt

        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=self.fake())


def daemon_on_a_stepping_clock(
    tmp_path: Path, **settings: object
) -> tuple[ParticipantDaemon, SteppingClock]:
    """A plaintext daemon with `connect_timeout_s` 2, and the clock it reads."""
    clock = SteppingClock()
    return _daemon(tmp_path, clock=clock, connect_timeout_s=2.0, **settings), clock


def test_the_daemon_gives_up_connecting_on_its_clock_without_sleeping(tmp_path) -> None:
    """Nothing listens on the port: the retries sleep on the injected clock only."""
    from tests.support import free_port

    daemon, clock = daemon_on_a_stepping_clock(tmp_path, coordinator=f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="no answer within 2 s"):
        daemon.run()
    # It retried with backoff until its clock passed the deadline, never sleeping for real.
    assert len(clock.slept) >= 2 and sum(clock.slept) > 2.0
    assert clock.fake() == pytest.approx(1000.0 + sum(clock.slept))  # only its sleeps moved it


class Failing(grpc.RpcError):
    """A refusal of the coordinator's, as gRPC raises it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_a_call_is_retried_on_the_daemons_clock_while_the_coordinator_is_away(
    tmp_path,
) -> None:
    """`Session.call`: retry UNAVAILABLE until `connect_timeout_s`, refuse the rest at once."""
    daemon, clock = daemon_on_a_stepping_clock(tmp_path)
    session = daemon._session
    away = Failing(grpc.StatusCode.UNAVAILABLE, "Socket closed")
    calls: list[float] = []

    def back_after_two(request: str, *, timeout: float) -> str:
        calls.append(timeout)
        if len(calls) <= 2:
            raise away
        return f"answer to {request}"

    assert session.call(back_after_two, "ask", timeout=7.0) == "answer to ask"
    assert calls == [7.0, 7.0, 7.0] and len(clock.slept) == 2

    def never_back(request: str, *, timeout: float) -> str:
        raise away

    clock.slept.clear()
    with pytest.raises(Failing) as caught:
        session.call(never_back, "ask")
    assert caught.value is away  # no Accord error named: the RpcError itself
    assert sum(clock.slept) > 2.0  # it gave up only once its clock passed the deadline

    def refusing(request: str, *, timeout: float) -> str:
        raise Failing(grpc.StatusCode.PERMISSION_DENIED, "NotAllowed: 'energy' is revoked")

    clock.slept.clear()
    with pytest.raises(NotAllowed, match="'energy' is revoked"):
        session.call(refusing, "ask")
    assert clock.slept == []  # a refusal is not retried


def test_a_caught_up_round_leaves_no_round_machine_behind(daemon, tmp_path) -> None:
    """The daemon drops its machine of a round once catch-up applied that round."""
    from accord.crypto.participant_round import ParticipantRound

    def applied(number: int, *, machine: object) -> None:
        daemon._applier.mark_applied(number, None)

    daemon._applier.download = applied  # type: ignore[method-assign]
    later = ParticipantRound(_round_config(tmp_path, 3), "energy", daemon._identity_private, {})
    daemon._round = later
    daemon._catch_up(2)
    assert daemon._applier.round_applied == 2
    assert daemon._round is later  # round 3 is still to come
    daemon._catch_up(3)
    assert daemon._applier.round_applied == 3
    assert daemon._round is None


def test_a_diverged_update_is_refused_before_anything_is_recorded_or_sent(tmp_path) -> None:
    """A trainer that returns NaN (e.g. after a too-noisy aggregate) gets a clear error."""
    import numpy as np

    from accord.crypto.participant_round import ParticipantRound
    from accord.errors import RoundAborted

    def diverged(round: int) -> LocalUpdate:
        delta = np.full(11, np.nan, dtype=np.float32)
        return LocalUpdate(delta=delta, sample_count=50, metrics={"local_steps": 4.0})

    daemon = _daemon(tmp_path)
    daemon._uploader._trainer = FakeTrainer(train=diverged)
    machine = ParticipantRound(_round_config(tmp_path, 1), "energy", daemon._identity_private, {})
    with pytest.raises(RoundAborted, match=r"local training diverged.*lower learning_rate"):
        daemon._uploader.upload(machine)
    ledger = tmp_path / "ledger.jsonl"
    assert not ledger.exists() or '"round"' not in ledger.read_text(encoding="utf-8")


def test_tower_settings_over_the_rounds_clip_are_refused_before_training(tmp_path) -> None:
    """Without signed terms the round's clip_norm is the one checked, before anything is
    trained, marked uploaded or ledgered (with terms, the daemon checks at start)."""
    from accord.crypto.participant_round import ParticipantRound
    from accord.participant.training.multimodal import MultimodalTrainer
    from tests.support.multimodal import small_city_benchmark, tiny_model_config

    data = small_city_benchmark(tmp_path / "city")
    training = {"tune_towers": True, "tower_learning_rate": 5.0}
    trainer = MultimodalTrainer(tiny_model_config(tmp_path / "tiny", data, training=training))
    daemon = _daemon(tmp_path)
    daemon._uploader._trainer = trainer
    config = _round_config(tmp_path, 1)
    machine = ParticipantRound(config, "energy", daemon._identity_private, {})
    with pytest.raises(ConfigError, match=r"tower_learning_rate = 5 .* clip_norm 40\b"):
        daemon._uploader.upload(machine)
    assert not (tmp_path / "upload.json").exists()
    ledger = tmp_path / "ledger.jsonl"
    assert not ledger.exists() or '"round"' not in ledger.read_text(encoding="utf-8")
