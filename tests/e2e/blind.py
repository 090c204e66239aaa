"""DESIGN.md guarantee 1 as a check on a finished demo: the coordinator stayed blind.

In the CKKS profiles the coordinator's database and every file in its folder (logs,
output, spool, config) must hold neither the CKKS secret key nor plaintext adapter
bytes. The needles:

- the secret key, as the participants hold it: each participant's kit opens its
  envelope from the coordinator's store (`ceremony.open_secret`, the daemon's own
  path), and the needles are windows of the serialized key blob (the key part of
  `SecretContext.to_bytes()`, not the public parameters the coordinator does hold) and
  of its raw coefficients (little-endian uint64);
- the plaintext global adapter of every round at every participant that has one
  (`adapter_model.safetensors`): windows of float32 tensor data with no zero in them.

`find_bytes` (tests/coordinator/scan.py) scans raw SQLite files with their WAL, every
file below a folder, or a PostgreSQL database. `check_scanner_finds_planted` is the
positive control: the same scanner finds a needle planted in copies of the same files.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np

from ..coordinator.scan import find_bytes

WINDOW = 32
"""Bytes per needle: long enough that a hit cannot be chance."""
WINDOWS_PER_OBJECT = 6


def _windows(data: bytes, count: int = WINDOWS_PER_OBJECT) -> list[bytes]:
    """`count` windows spread over `data`."""
    if len(data) < WINDOW:
        return []
    step = max(1, (len(data) - WINDOW) // max(1, count - 1))
    return [data[i : i + WINDOW] for i in range(0, len(data) - WINDOW + 1, step)][:count]


def _open_store_copy(store_url: str | None, coordinator_dir: Path, scratch: Path):
    """The store, opened on a copy when it is SQLite (opening may checkpoint its WAL)."""
    from accord.coordinator.store.database import open_store

    if store_url is not None:
        return open_store(store_url)
    scratch.mkdir(parents=True, exist_ok=True)
    source = coordinator_dir / "coordinator.sqlite"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", scratch / f"coordinator.sqlite{suffix}")
    return open_store(str(scratch / "coordinator.sqlite"))


def secret_key_needles(
    workdir: Path, names: list[str], *, store_url: str | None, scratch: Path
) -> list[bytes]:
    """Windows of the federation's CKKS secret key, opened as each participant opens it."""
    from accord.coordinator.store.persistence import FederationRecords
    from accord.crypto import ceremony, ckks
    from accord.participant.kit.startup_kit import Kit

    store = _open_store_copy(store_url, workdir / "coordinator", scratch)
    try:
        keys = FederationRecords(store).load_keys()
    finally:
        store.close()
    assert keys.epoch >= 1 and keys.sealed, "no key ceremony happened"
    kits = {name: Kit.load(workdir / "participants" / name / "kit") for name in names}
    needles: set[bytes] = set()
    for name, sealed in keys.sealed.items():
        opened = ceremony.open_secret(
            sealed.envelope,
            kits[name].ceremony_key,
            federation_id=kits[name].federation_id,
            key_epoch=keys.epoch,
            recipient=name,
            public=keys.public,
            signature=sealed.signature,
            maker=keys.maker,
            maker_identity_public=kits[keys.maker].identity_public_key,
        )
        # The integrity key (the aggregate's MAC key) must never reach the coordinator.
        needles.update(_windows(opened.integrity_key))
        secret = opened.ckks
        assert secret is not None, "a CKKS federation's key holds no CKKS secret"
        _params_blob, key_blob = ckks._split_blobs(secret.to_bytes(), "the secret key", 2)
        needles.update(_windows(key_blob))
        plain = secret._secret_key.data()
        coefficients = np.array(
            [plain[i] for i in range(plain.coeff_count())], dtype="<u8"
        ).tobytes()
        needles.update(_windows(coefficients))
    return sorted(needles)


def adapter_needles(workdir: Path, names: list[str]) -> list[bytes]:
    """Windows of every saved global adapter's float32 tensors, none holding a zero."""
    from safetensors.numpy import load_file

    needles: set[bytes] = set()
    files = sorted((workdir / "participants").glob("*/adapters/round-*/adapter_model.safetensors"))
    assert files, "no participant saved an adapter"
    for path in files:
        for tensor in load_file(str(path)).values():
            values = np.ascontiguousarray(tensor, dtype="<f4").reshape(-1)
            nonzero = values[values != 0]
            needles.update(w for w in _windows(nonzero.tobytes(), 3) if len(w) == WINDOW)
    return sorted(needles)


def assert_coordinator_blind(
    coordinator_dir: Path, needles: list[bytes], *, store_url: str | None = None
) -> None:
    """No needle in any file under `coordinator_dir` (its SQLite store included) or the store."""
    assert needles
    assert (coordinator_dir / "coordinator.log").stat().st_size > 0
    found = [n.hex() for n in needles if find_bytes(coordinator_dir, n)]
    assert not found, f"{len(found)} needles found under {coordinator_dir}: {found[:3]}"
    if store_url is not None:
        found = [n.hex() for n in needles if find_bytes(store_url, n)]
        assert not found, f"{len(found)} needles found in the PostgreSQL store: {found[:3]}"


def check_scanner_finds_planted(coordinator_dir: Path, needle: bytes, scratch: Path) -> None:
    """The positive control: a needle planted in copies of the same files is found."""
    copy = scratch / "planted"
    shutil.copytree(coordinator_dir, copy)
    assert not find_bytes(copy, needle)
    with (copy / "coordinator.log").open("ab") as log:
        log.write(b'{"event": "oops", "payload": "' + needle + b'"}\n')
    assert find_bytes(copy / "coordinator.log", needle)
    database = copy / "coordinator.sqlite"
    if database.exists():
        (copy / "coordinator.log").unlink()
        assert not find_bytes(copy, needle)
        # Written the way the store writes (into its WAL, when it uses one).
        connection = sqlite3.connect(database)
        with connection:
            connection.execute("CREATE TABLE planted (value BLOB)")
            connection.execute("INSERT INTO planted VALUES (?)", (needle,))
        connection.close()
        assert find_bytes(database, needle)
        assert find_bytes(f"sqlite:///{database}", needle)
    assert find_bytes(copy, needle)


def check_postgres_scanner_finds_planted(store_url: str, needle: bytes) -> None:
    """The positive control for a PostgreSQL store: a planted row is found, then removed."""
    import psycopg

    assert not find_bytes(store_url, needle)
    with psycopg.connect(store_url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA accord_planted")
        try:
            connection.execute("CREATE TABLE accord_planted.planted (value bytea)")
            connection.execute("INSERT INTO accord_planted.planted VALUES (%s)", (needle,))
            assert find_bytes(store_url, needle)
        finally:
            connection.execute("DROP SCHEMA accord_planted CASCADE")
