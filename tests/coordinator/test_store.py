"""The coordinator store, on SQLite and on a real PostgreSQL: what survives, and what is refused.

Every test taking ``store`` or ``store_url`` runs on both backends; the PostgreSQL runs
are marked ``postgres`` and come from ``tests/pg.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.coordinator.store.database import Store, open_store
from accord.coordinator.store.rows import (
    AggregateInfo,
    EventRow,
    ParticipantRow,
    ParticipantStatus,
    RoundRow,
    RoundSnapshot,
    RoundStatus,
)
from accord.coordinator.store.schema import LATEST_VERSION, MIGRATIONS
from accord.crypto.profile import Profile
from accord.errors import ConfigError, IntegrityError, InternalError

from .scan import find_bytes

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL: a SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "coordinator.sqlite")
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        yield opened


def fresh_round(number: int, **changes: Any) -> RoundRow:
    row = RoundRow(
        round=number,
        profile=Profile.CKKS_MASKS,
        config_json=json.dumps({"round": number, "threshold": 3}),
        started_at=1_700_000_000.0 + number,
        stage="advertise",
    )
    return dataclasses.replace(row, **changes)


def participant(pid: str, status: ParticipantStatus = ParticipantStatus.ACTIVE) -> ParticipantRow:
    return ParticipantRow(
        participant_id=pid,
        identity_public=b"\x01" * 32,
        ceremony_public=None,
        cert_fingerprint="sha256:" + "ab" * 32,
        status=status,
        enrolled_at=1_700_000_000.5,
    )


def raw(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement outside the store, as an operator (or an older release) would."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []
    lite = sqlite3.connect(url, isolation_level=None)
    try:
        return lite.execute(statement).fetchall()
    finally:
        lite.close()


# -- opening and migrations -----------------------------------------------------------


def test_opening_twice_migrates_once_and_keeps_the_data(store_url: str) -> None:
    with open_store(store_url) as first:
        first.set_meta("federation_id", b"acme")
    with open_store(store_url) as second:
        assert second.get_meta("federation_id") == b"acme"
    versions = raw(store_url, "SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]


def test_a_store_from_a_newer_accord_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    raw(
        store_url,
        "INSERT INTO schema_version (version, description, applied_at) "
        f"VALUES ({LATEST_VERSION + 1}, 'from the future', 0)",
    )
    with pytest.raises(ConfigError, match="upgrade Accord"):
        open_store(store_url)


def test_sqlite_store_is_wal_full_sync_and_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with open_store(f"sqlite://{path}") as store:
        assert store.dialect == "sqlite"
        store.set_meta("k", b"v")
        assert raw(str(path), "PRAGMA journal_mode") == [("wal",)]
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "accepted forms"),
        ("mysql://u@h/db", "accepted forms"),
        ("sqlite://relative.db", "absolute path"),
        ("sqlite:///no/such/folder/c.sqlite", "does not exist"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_accepted_forms(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        open_store(url)


def test_a_folder_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        open_store(str(tmp_path))
    foreign = tmp_path / "notes.txt"
    foreign.write_bytes(b"not a database, just some text " * 100)
    with pytest.raises(ConfigError, match="not a SQLite database"):
        open_store(str(foreign))


def test_an_unreachable_postgresql_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="cannot connect") as caught:
        open_store("postgresql://accord:hunter2@127.0.0.1:1/accord?connect_timeout=2")
    assert "hunter2" not in str(caught.value)
    assert "accord:***@127.0.0.1:1" in str(caught.value)


def test_a_closed_store_refuses_calls(store: Store) -> None:
    store.close()
    with pytest.raises(InternalError, match="closed"):
        store.get_meta("k")


# -- round trips ----------------------------------------------------------------------


def test_meta_round_trips_and_replaces(store: Store) -> None:
    assert store.get_meta("ckks_public_context") is None
    store.set_meta("ckks_public_context", b"\x00\xffpublic")
    store.set_meta("key_epoch", (3).to_bytes(8, "big"))
    store.set_meta("ckks_public_context", bytearray(b"rotated"))
    assert store.get_meta("ckks_public_context") == b"rotated"
    assert store.get_meta("key_epoch") == (3).to_bytes(8, "big")


def test_participants_round_trip_upsert_and_status(store: Store) -> None:
    store.upsert_participant(participant("urban"))
    store.upsert_participant(participant("energy"))
    rekeyed = dataclasses.replace(participant("urban"), ceremony_public=b"\x02" * 32)
    store.upsert_participant(rekeyed)
    store.set_participant_status("energy", ParticipantStatus.REVOKED)
    assert store.participants() == [
        participant("energy", ParticipantStatus.REVOKED),
        rekeyed,
    ]
    with pytest.raises(InternalError, match="not enrolled"):
        store.set_participant_status("nobody", ParticipantStatus.ACTIVE)


def test_a_round_is_recorded_through_its_stages_until_it_finishes(store: Store) -> None:
    assert store.latest_round() is None
    assert store.in_flight_round() is None
    store.begin_round(fresh_round(1))
    store.set_round_stage(1, "share")
    assert store.in_flight_round() == fresh_round(1, stage="share")
    store.finish_round(1, '{"participants": 3}', finished_at=1_700_000_100.0)
    finished = fresh_round(
        1,
        stage="share",
        status=RoundStatus.FINISHED,
        outcome_json='{"participants": 3}',
        finished_at=1_700_000_100.0,
    )
    assert store.rounds() == [finished]
    assert store.latest_round() == finished
    assert store.in_flight_round() is None


def test_snapshots_move_the_stage_with_them_and_go_when_the_round_ends(store: Store) -> None:
    store.begin_round(fresh_round(4))
    assert store.load_round_snapshot(4) is None
    store.save_round_snapshot(4, "share", b"v1|state after advertise")
    store.save_round_snapshot(4, "upload", b"v1|state after share")
    assert store.load_round_snapshot(4) == RoundSnapshot(4, "upload", b"v1|state after share")
    assert store.in_flight_round() == fresh_round(4, stage="upload")
    store.finish_round(4, "{}", finished_at=2.0)
    assert store.load_round_snapshot(4) is None
    with pytest.raises(InternalError, match="finished, not in flight"):
        store.save_round_snapshot(4, "upload", b"late")


def test_aggregate_round_trips_in_index_order_and_is_dropped(store: Store) -> None:
    store.begin_round(fresh_round(2))
    chunks = [os.urandom(1000 + i) for i in range(12)]
    info = store.put_aggregate(2, iter(chunks))
    assert info == AggregateInfo(2, 12, sum(map(len, chunks)))
    assert store.aggregate_info(2) == info
    assert list(store.aggregate_chunks(2)) == chunks
    assert store.drop_aggregate(2) is True
    assert store.drop_aggregate(2) is False
    assert store.aggregate_info(2) is None
    with pytest.raises(InternalError, match="no stored aggregate"):
        store.aggregate_chunks(2)


def test_events_are_appended_with_dense_sequence_numbers(store: Store) -> None:
    assert store.events() == []
    assert store.append_event(None, "enrolled", '{"participant": "urban"}') == 1
    assert store.append_event(1, "round-finished", '{"participants": 3}') == 2
    assert store.events() == [
        EventRow(1, None, "enrolled", '{"participant": "urban"}'),
        EventRow(2, 1, "round-finished", '{"participants": 3}'),
    ]
    assert store.events(after_seq=1) == [store.events()[1]]


def test_the_replay_guard_remembers_each_message_once(store: Store) -> None:
    assert store.remember_message(1, "upload", "urban", 0) is True
    assert store.remember_message(1, "upload", "urban", 0) is False
    assert store.remember_message(1, "upload", "urban", 1) is True
    assert store.remember_message(1, "unmask", "urban", 0) is True
    assert store.remember_message(1, "upload", "energy", 0) is True
    assert store.remember_message(2, "upload", "urban", 0) is True
    with pytest.raises(InternalError, match="sequence"):
        store.remember_message(1, "upload", "urban", -1)


# -- the rules of a round's life ------------------------------------------------------


def test_finishing_again_with_the_same_outcome_is_a_no_op(store: Store) -> None:
    store.begin_round(fresh_round(1))
    store.finish_round(1, '{"a": 1, "b": [1, 2]}', finished_at=10.0)
    store.finish_round(1, '{"b":[1,2],"a":1}', finished_at=99.0)  # same JSON value
    assert store.rounds()[0].finished_at == 10.0
    with pytest.raises(IntegrityError, match="another outcome"):
        store.finish_round(1, '{"a": 2}', finished_at=11.0)
    with pytest.raises(IntegrityError, match="cannot be aborted"):
        store.abort_round(1, "too late")
    with pytest.raises(InternalError, match="never begun"):
        store.finish_round(7, "{}", finished_at=1.0)


def test_one_round_in_flight_and_numbers_never_repeat(store: Store) -> None:
    store.begin_round(fresh_round(5))
    with pytest.raises(InternalError, match="round 5 is still in flight"):
        store.begin_round(fresh_round(6))
    store.abort_round(5, "coordinator restarted", aborted_at=3.0)
    store.abort_round(5, "a second reason is ignored")
    for number in (5, 4):
        with pytest.raises(IntegrityError, match="never repeat"):
            store.begin_round(fresh_round(number))
    store.begin_round(fresh_round(6))
    aborted = store.rounds()[0]
    assert (aborted.status, aborted.abort_reason, aborted.finished_at) == (
        RoundStatus.ABORTED,
        "coordinator restarted",
        3.0,
    )
    with pytest.raises(IntegrityError, match="was aborted"):
        store.finish_round(5, "{}", finished_at=4.0)
    with pytest.raises(InternalError, match="aborted, not in flight"):
        store.set_round_stage(5, "share")


def test_begin_round_takes_only_a_fresh_well_formed_row(store: Store) -> None:
    with pytest.raises(InternalError, match="fresh in-flight"):
        store.begin_round(fresh_round(1, status=RoundStatus.FINISHED, outcome_json="{}"))
    with pytest.raises(InternalError, match="config_json"):
        store.begin_round(fresh_round(1, config_json="{not json"))
    with pytest.raises(InternalError, match="round"):
        store.begin_round(fresh_round(-1))
    assert store.rounds() == []


def test_aborting_drops_the_snapshot_and_the_aggregate(store: Store) -> None:
    store.begin_round(fresh_round(3))
    store.save_round_snapshot(3, "aggregate", b"snapshot")
    store.put_aggregate(3, [b"sum-0", b"sum-1"])
    store.abort_round(3, "too few participants reached unmask")
    assert store.load_round_snapshot(3) is None
    assert store.aggregate_info(3) is None


# -- atomicity ------------------------------------------------------------------------


class InjectedFailure(Exception):
    pass


def test_a_failure_in_the_middle_of_put_aggregate_leaves_nothing(store: Store) -> None:
    store.begin_round(fresh_round(1))

    def chunks_then_failure() -> Iterator[bytes]:
        yield b"chunk-0" * 100
        yield b"chunk-1" * 100
        raise InjectedFailure("the upload stream broke")

    with pytest.raises(InjectedFailure):
        store.put_aggregate(1, chunks_then_failure())
    assert store.aggregate_info(1) is None
    with pytest.raises(InternalError, match="must be bytes"):
        mixed: list[Any] = [b"fine", "not bytes"]
        store.put_aggregate(1, mixed)
    with pytest.raises(InternalError, match="no chunks"):
        store.put_aggregate(1, [])
    assert store.aggregate_info(1) is None
    assert store.put_aggregate(1, [b"whole"]) == AggregateInfo(1, 1, 5)
    with pytest.raises(IntegrityError, match="already has an aggregate"):
        store.put_aggregate(1, [b"again"])
    assert list(store.aggregate_chunks(1)) == [b"whole"]


def test_no_aggregate_outside_a_round_in_flight(store: Store) -> None:
    with pytest.raises(InternalError, match="never begun"):
        store.put_aggregate(1, [b"x"])
    store.begin_round(fresh_round(1))
    store.finish_round(1, "{}", finished_at=1.0)
    with pytest.raises(InternalError, match="finished, not in flight"):
        store.put_aggregate(1, [b"x"])


def test_a_reader_notices_an_aggregate_dropped_under_it(store: Store) -> None:
    store.begin_round(fresh_round(1))
    store.put_aggregate(1, [b"a" * 10, b"b" * 10, b"c" * 10])
    reader = store.aggregate_chunks(1)
    assert next(reader) == b"a" * 10
    store.drop_aggregate(1)
    store.put_aggregate(1, [b"x" * 10, b"y" * 10, b"z" * 10])
    with pytest.raises(IntegrityError, match="dropped while it was read"):
        next(reader)


# -- threads --------------------------------------------------------------------------


def test_concurrent_writers_from_threads(store: Store) -> None:
    threads, per_thread = 8, 25
    accepted: list[bool] = []
    seqs: list[int] = []
    guard = threading.Lock()
    barrier = threading.Barrier(threads)
    store.begin_round(fresh_round(1))
    store.put_aggregate(1, [os.urandom(256) for _ in range(4)])
    expected_chunks = list(store.aggregate_chunks(1))

    def work(index: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            # Every thread sends the same messages: each must be accepted exactly once.
            mine = [store.remember_message(1, "upload", f"p{n}", 0)]
            seq = store.append_event(1, "tick", json.dumps({"thread": index, "n": n}))
            store.set_meta(f"thread-{index}", n.to_bytes(2, "big"))
            assert list(store.aggregate_chunks(1)) == expected_chunks
            with guard:
                accepted.extend(mine)
                seqs.append(seq)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(w.is_alive() for w in workers)
    assert sorted(seqs) == list(range(1, threads * per_thread + 1))
    assert accepted.count(True) == per_thread
    assert [e.seq for e in store.events()] == list(range(1, threads * per_thread + 1))
    for index in range(threads):
        assert store.get_meta(f"thread-{index}") == (per_thread - 1).to_bytes(2, "big")


@pytest.mark.postgres
def test_a_postgresql_connection_that_died_while_idle_is_replaced(
    postgres_schema_url: str,
) -> None:
    with open_store(postgres_schema_url) as store:
        store.set_meta("k", b"before")
        raw(
            postgres_schema_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'",
        )
        store.set_meta("k", b"after")
        assert store.get_meta("k") == b"after"


# -- crash safety ---------------------------------------------------------------------

WRITER = r"""
import sys
from accord.coordinator.store.database import open_store
from accord.coordinator.store.rows import RoundRow
from accord.crypto.profile import Profile

def chunks(number):
    for i in range(1 + number % 5):
        yield bytes([number % 251, i]) * 8192

store = open_store(sys.argv[1])
number = 0
while True:
    number += 1
    store.begin_round(RoundRow(number, Profile.CKKS, "{}", float(number), "advertise"))
    store.save_round_snapshot(number, "upload", b"snapshot-%d" % number)
    store.put_aggregate(number, chunks(number))
    store.finish_round(number, '{"round": %d}' % number, float(number))
    store.append_event(number, "round-finished", '{"round": %d}' % number)
    print(number, flush=True)
"""


def expected_chunks(number: int) -> list[bytes]:
    return [bytes([number % 251, i]) * 8192 for i in range(1 + number % 5)]


def kill_writer_mid_flight(url: str, rng: random.Random) -> int:
    """Start WRITER, let it finish a few rounds, SIGKILL it at a random moment."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    finished = 0
    try:
        while finished < rng.randint(3, 12):
            line = child.stdout.readline()
            assert line, (
                f"the writer died on its own: {child.stderr.read() if child.stderr else ''}"
            )
            finished = int(line)
        threading.Event().wait(rng.uniform(0, 0.02))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return finished


def check_whole_or_absent(store: Store, at_least: int) -> None:
    """Every round is complete as written, except the last, which is a clean prefix."""
    rounds = store.rounds()
    assert [r.round for r in rounds] == list(range(1, len(rounds) + 1))
    assert len(rounds) >= at_least
    *done, last = rounds
    for row in done:
        assert row.status is RoundStatus.FINISHED
        assert json.loads(row.outcome_json or "") == {"round": row.round}
        assert store.load_round_snapshot(row.round) is None
        assert list(store.aggregate_chunks(row.round)) == expected_chunks(row.round)
    snapshot = store.load_round_snapshot(last.round)
    assert snapshot in (None, RoundSnapshot(last.round, "upload", b"snapshot-%d" % last.round))
    if store.aggregate_info(last.round) is not None:
        assert list(store.aggregate_chunks(last.round)) == expected_chunks(last.round)
    if last.status is RoundStatus.FINISHED:
        assert snapshot is None
        assert store.aggregate_info(last.round) is not None
    else:
        assert last.status is RoundStatus.IN_FLIGHT
    finished = [r.round for r in rounds if r.status is RoundStatus.FINISHED]
    logged = [json.loads(e.body_json)["round"] for e in store.events()]
    assert logged in (finished, finished[:-1])


def crash_and_resume(url: str, seed: int) -> None:
    rng = random.Random(seed)
    finished = kill_writer_mid_flight(url, rng)
    if not url.startswith("postgresql://"):
        assert raw(url, "PRAGMA integrity_check") == [("ok",)]
    with open_store(url) as store:
        check_whole_or_absent(store, at_least=finished)
        # Resume as a restarted coordinator would: abort what was in flight, go on.
        in_flight = store.in_flight_round()
        if in_flight is not None:
            store.abort_round(in_flight.round, "coordinator restarted")
        latest = store.latest_round()
        assert latest is not None
        store.begin_round(fresh_round(latest.round + 1))
        store.abort_round(latest.round + 1, "test over")


def test_a_kill_9_while_writing_rounds_leaves_each_whole_or_absent(store_url: str) -> None:
    open_store(store_url).close()  # migrate first, so the kill lands among rounds
    crash_and_resume(store_url, seed=20240611)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(25))
def test_many_kill_9s_while_writing_rounds(store_url: str, seed: int) -> None:
    crash_and_resume(store_url, seed=seed)


# -- what the files hold --------------------------------------------------------------


def test_find_bytes_sees_a_needle_in_the_wal_before_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    needle = b"PLAINTEXT-NEEDLE-" + os.urandom(8).hex().encode()
    with open_store(str(path)) as store:
        assert not find_bytes(path, needle)
        store.set_meta("planted", b"..." + needle + b"...")
        assert needle not in path.read_bytes()  # still only in the -wal file
        assert find_bytes(path, needle)
        assert find_bytes(f"sqlite://{path}", needle)
        assert find_bytes(tmp_path, needle)
    assert find_bytes(path, needle)  # checkpointed into the file on close


def test_a_dropped_aggregate_leaves_no_bytes_in_the_sqlite_files(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    needle = b"AGGREGATE-" + os.urandom(8).hex().encode()
    with open_store(str(path)) as store:
        store.begin_round(fresh_round(1))
        store.put_aggregate(1, [needle * 1000, b"x" + needle])
        store.finish_round(1, "{}", finished_at=1.0)
        store.drop_aggregate(1)
    assert not find_bytes(path, needle)


@pytest.mark.postgres
def test_find_bytes_sees_a_needle_in_any_postgresql_column(postgres_schema_url: str) -> None:
    needle = b"PLAINTEXT-NEEDLE-" + os.urandom(8).hex().encode()
    with open_store(postgres_schema_url) as store:
        assert not find_bytes(postgres_schema_url, needle)
        store.set_meta("planted", b"\x00" + needle)
        assert find_bytes(postgres_schema_url, needle)
        store.set_meta("planted", b"gone")
        assert not find_bytes(postgres_schema_url, needle)
        store.append_event(None, "note", json.dumps({"text": needle.decode()}))
        assert find_bytes(postgres_schema_url, needle)
