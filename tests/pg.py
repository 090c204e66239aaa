"""A real PostgreSQL server for the tests, or a skip that says exactly why not.

``postgres_url`` (session scope) yields the URL of an empty database:

1. ``ACCORD_TEST_POSTGRES_URL`` if it is set (the server must answer; a set variable that
   does not work fails the tests rather than skipping them);
2. otherwise a throwaway cluster started from the local binaries (``initdb``/``pg_ctl``
   on PATH or under ``/usr/lib/postgresql/*/bin``, which Debian's ``postgresql`` package
   installs): a fresh data folder in a temporary directory, ``127.0.0.1`` on a free port,
   its unix socket inside that directory, password authentication over TCP with a random
   password, stopped and deleted at the end of the session. ``initdb`` refuses to run as
   root, so under root the cluster runs as the ``postgres`` system user (or ``nobody``).
   Durability settings are off (``fsync=off``): the tests kill clients, never this server;
3. otherwise the tests marked ``postgres`` are skipped with the reason and the fix
   (``apt-get install -y postgresql``), shown by ``pytest -ra``. With
   ``ACCORD_REQUIRE_POSTGRES=1`` (CI) they fail instead, so a broken install is never
   mistaken for a pass.

``postgres_schema_url`` (function scope) gives each test a schema of its own in that
database, through ``search_path`` in the URL, and drops it afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support import free_port

ENV_URL = "ACCORD_TEST_POSTGRES_URL"
ENV_REQUIRE = "ACCORD_REQUIRE_POSTGRES"
DATABASE = "accord_test"
FIX = (
    "install the server (Debian/Ubuntu: `apt-get install -y postgresql`) or point "
    f"{ENV_URL} at an empty database, e.g. postgresql://user:password@127.0.0.1:5432/db"
)

__all__ = ["postgres_schema_url", "postgres_url", "with_schema"]


class Unavailable(Exception):
    """No PostgreSQL server could be started; the message says what was missing."""


@dataclass
class Cluster:
    """A throwaway cluster this session started and must stop."""

    root: Path
    bin_dir: Path
    run_as: pwd.struct_passwd | None
    port: int
    password: str
    stopped: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run(
                self,
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
            )
        shutil.rmtree(self.root, ignore_errors=True)


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, newest version first."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p)], reverse=True)
    candidates += [Path(v) for v in versions]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def start_cluster() -> Cluster:
    """Start a throwaway cluster on loopback.

    Raises:
        Unavailable: no binaries, no unprivileged user to run them as, or they failed.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise Unavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under "
            "/usr/lib/postgresql/*/bin"
        )
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="accord-pg-"))
    password = secrets.token_hex(16)
    (root / "pwfile").write_text(password + "\n")
    if run_as is not None:
        os.chown(root, run_as.pw_uid, run_as.pw_gid)
        os.chown(root / "pwfile", run_as.pw_uid, run_as.pw_gid)
    cluster = Cluster(root, bin_dir, run_as, port=0, password=password)
    try:
        initdb = _run(
            cluster,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                "postgres",
                "--pwfile",
                str(root / "pwfile"),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )
        if initdb.returncode != 0:
            raise Unavailable(f"initdb failed: {_tail(initdb.stdout)}")
        for _attempt in range(3):
            cluster.port = free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {cluster.port}",
                    f"-k {shlex.quote(str(root))}",
                    "-c fsync=off",
                    "-c full_page_writes=off",
                    "-c synchronous_commit=off",
                    "-c max_connections=200",
                ]
            )
            started = _run(
                cluster,
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(cluster.data_dir),
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
            )
            if started.returncode == 0:
                break
            log = (root / "server.log").read_text(errors="replace")
            if "could not bind" not in log:
                raise Unavailable(f"pg_ctl start failed: {_tail(started.stdout + log)}")
        else:
            raise Unavailable("pg_ctl start failed three times: no free port on 127.0.0.1")
        atexit.register(cluster.stop)
        _create_database(cluster.url("postgres"), DATABASE)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``search_path`` set to ``schema`` (libpq's ``options`` parameter)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of an empty database on a real PostgreSQL server; see the module docstring."""
    configured = os.environ.get(ENV_URL)
    if configured:
        try:
            _connect(configured).close()
        except Exception as exc:
            pytest.fail(f"{ENV_URL} is set but its server does not answer: {exc}")
        yield configured
        return
    try:
        cluster = start_cluster()
    except Unavailable as exc:
        _unavailable(f"PostgreSQL tests cannot run: {exc}. To run them, {FIX}.")
    try:
        yield cluster.url(DATABASE)
    finally:
        cluster.stop()


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose ``search_path`` is a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with _connect(postgres_url) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(postgres_url, schema)
    finally:
        with _connect(postgres_url) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# -- helpers -------------------------------------------------------------------------------


def _unavailable(message: str) -> NoReturn:
    if os.environ.get(ENV_REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{message} ({ENV_REQUIRE} is set, so this is an error, not a skip)")
    pytest.skip(message)


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise Unavailable(
        "running as root, and initdb refuses root, but there is no 'postgres' or 'nobody' "
        "user to run it as (the postgresql package creates 'postgres')"
    )


def _run(cluster: Cluster, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a server binary, as the unprivileged user when we are root."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "HOME": str(cluster.root)}
    kwargs: dict[str, Any] = {}
    if cluster.run_as is not None:
        kwargs = {
            "user": cluster.run_as.pw_uid,
            "group": cluster.run_as.pw_gid,
            "extra_groups": [],
        }
    return subprocess.run(
        argv,
        cwd=cluster.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def _create_database(admin_url: str, name: str) -> None:
    try:
        with _connect(admin_url) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as exc:
        raise Unavailable(f"the server started but CREATE DATABASE failed: {exc}") from exc


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])
