"""A provisioned mTLS federation and its coordinator, for the e2e and deploy tests.

`provision_loopback(folder, port, names)` runs `accord provision`'s own code into `folder/fed`;
`write_coordinator_config(folder, port)` writes `folder/coordinator.toml` that serves
it (TLS folder and roster from `fed/coordinator`); `serve(config_file, log)` starts the
real gRPC coordinator in this process and stops it on leaving. `kit_participant` is a
participant of a kit on the synthetic trainer; `wait_until` polls a condition,
and `stop_daemons` stops the daemons a test ran in threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from accord.coordinator import server
from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile
from accord.federation.provision import (
    FederationFile,
    FederationSection,
    ParticipantSection,
    ProvisionedFederation,
    provision_federation,
)
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon

FEDERATION = "city-safety"

SYNTHETIC_TRAINER = "accord.demo.synthetic_trainer:SyntheticTrainer"


def provision_loopback(
    folder: Path, port: int, names: Sequence[str], **federation: Any
) -> ProvisionedFederation:
    """Provision `names` for a coordinator on 127.0.0.1:`port` into `folder/fed`.

    `federation` holds more `FederationSection` fields (`id` defaults to `FEDERATION`),
    and `terms`, the `TermsSection` the CA signs.
    """
    terms = federation.pop("terms", None)
    federation.setdefault("id", FEDERATION)
    return provision_federation(
        FederationFile(
            federation=FederationSection(coordinator=f"127.0.0.1:{port}", **federation),
            participants=tuple(ParticipantSection(name=name) for name in names),
            terms=terms,
        ),
        folder / "fed",
    )


def write_coordinator_config(
    folder: Path, port: int, *, profile: str = "masks", settings: str = ""
) -> Path:
    """Write `folder/coordinator.toml` serving `provision_loopback`'s federation (+ `settings`)."""
    path = folder / "coordinator.toml"
    path.write_text(
        "[coordinator]\n"
        f'federation_id = "{FEDERATION}"\n'
        f"listen_port = {port}\n"
        'state_dir = "state"\n'
        f'profile = "{profile}"\n'
        'tls_dir = "fed/coordinator"\n'
        'roster = "fed/coordinator/roster.json"\n' + settings,
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def serve(config_file: Path, log: logging.Logger) -> Iterator[server.RunningServer]:
    """The coordinator of `config_file`, serving until the block ends."""
    config = configfile.load(config_file, CoordinatorConfig, "coordinator")
    config.state_dir.mkdir(exist_ok=True)
    running = server.start(config, log=log)
    try:
        yield running
    finally:
        running.stop(grace_s=0)


def kit_participant(kit: Path, state_dir: Path, **settings: Any) -> ParticipantConfig:
    """A participant of `kit` on the synthetic trainer (64 parameters); `settings` override."""
    table = {
        "kit": str(kit),
        "state_dir": str(state_dir),
        "poll_s": 0.5,
        "trainer": SYNTHETIC_TRAINER,
        "synthetic_parameters": 64,
        **settings,
    }
    return configfile.validate(table, ParticipantConfig, "participant")


def stop_daemons(workers: Iterable[tuple[ParticipantDaemon, threading.Thread]]) -> None:
    """Stop every daemon, then wait for its thread (a stopped daemon ends its `run`)."""
    pairs = list(workers)
    for daemon, _ in pairs:
        daemon.stop()
    for _, worker in pairs:
        worker.join(timeout=30)


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float = 120) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)
