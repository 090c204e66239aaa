"""The coordinator process: a gRPC server around the orchestrator, until it is stopped.

`serve(config)` binds the port (writing it to `<state_dir>/port` when it was 0), registers
the Coordinator service, the standard health service and reflection, starts the deadline
ticker and the optional Prometheus endpoint, and runs until SIGTERM or SIGINT.

Transport: mTLS by default. The port serves only with `tls.server_credentials(tls_dir)`
(client certificates from the federation's CA required), every call answers with the
server's clock as `date` metadata (`DateHeaderInterceptor`, for `accord kit check`),
and every request header's participant id is checked against the caller's certificate
in the roster (`tls.authenticate`, from `CoordinatorService._header`). The roster is
read at start for the members and their identity keys, and re-stated at most once a
second (`ROSTER_CHECK_INTERVAL_S`) so that a revocation takes effect without a
restart; unless the settings list `participants`, a participant approved since the
start is admitted when it enrols (`Orchestrator.admit`). The Enroll response hands out
each member's certificate from the roster, with which participants check its keys.
`insecure_plaintext = true` serves without TLS, for loopback debugging only.

`AccordErrorInterceptor` (`coordinator/interceptors.py`) is the one place where an
`AccordError` becomes a gRPC status (`grpc_status` on its class); anything else is a bug
and answers INTERNAL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from accord.coordinator import tls
from accord.coordinator.aggregation.sum_workers import SumWorkers, worker_count
from accord.coordinator.call_limits import CallLimits, worker_threads
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.interceptors import (
    AccordErrorInterceptor,
    AdmissionInterceptor,
    DateHeaderInterceptor,
)
from accord.coordinator.live_roster import Roster
from accord.coordinator.metrics import start_metrics
from accord.coordinator.orchestrator import Orchestrator
from accord.coordinator.service import CoordinatorService
from accord.coordinator.store.database import Store, open_store
from accord.coordinator.store.persistence import FederationRecords
from accord.coordinator.terms import load_terms
from accord.core import logs, transport
from accord.crypto.terms import FederationTerms
from accord.errors import ConfigError
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Coordinator"].full_name
TICK_S = 0.2
"""How often stage deadlines are checked."""

ROSTER_CHECK_INTERVAL_S = 1.0
"""Least seconds between two stats of the roster file: a revocation takes effect within it."""


@dataclass
class RunningServer:
    """A started coordinator: stop it with `stop()`."""

    server: grpc.Server
    port: int
    orchestrator: Orchestrator
    stop_ticker: threading.Event
    roster: Roster | None = None
    """The live roster (None with `insecure_plaintext`)."""
    store: Store | None = None
    """The durable store, closed on `stop()`."""
    sum_workers: SumWorkers | None = None
    """The aggregation worker processes (`aggregation_workers`), stopped on `stop()`."""

    def stop(self, grace_s: float = transport.GRACEFUL_STOP_S) -> None:
        """Stop ticking and serving; running calls get `grace_s` to finish."""
        self.stop_ticker.set()
        self.server.stop(grace_s).wait()
        if self.sum_workers is not None:
            self.sum_workers.close()
        if self.store is not None:
            self.store.close()


def start(config: CoordinatorConfig, *, log: logging.Logger) -> RunningServer:
    """Bind, register the services and start serving in background threads.

    Raises:
        ConfigError: a TLS file or the roster is missing or malformed, the roster is of
            another federation or lacks a listed participant, or the port is taken.
        UsageError: the profile is not wired into the services yet.
    """
    # Without a list in the settings the members are the roster's, newcomers included.
    admit_from_roster = "participants" not in config.model_fields_set
    config, roster, credentials, interceptors = _security(config, log)
    terms = _terms(config)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(config.resolved_store_url)
    orchestrator, sum_workers = _orchestrator(config, roster, store, terms, log)
    # Every identity is capped (`call_limits.py`), so members at their caps leave spares.
    workers = worker_threads(len(config.participants))
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="accord-rpc"),
        interceptors=interceptors,
        options=transport.server_options(config.max_message_bytes),
        maximum_concurrent_rpcs=workers * 4,
    )
    service = CoordinatorService(
        config,
        orchestrator,
        authenticate=_authenticator(roster) if roster is not None else None,
        roster=roster,
        admit_from_roster=admit_from_roster,
    )
    health_servicer = _add_services(server, service)
    port = _bind(server, f"{config.listen_host}:{config.listen_port}", credentials)
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(config.port_file, f"{port}\n")
    stop_ticker = threading.Event()
    threading.Thread(
        target=_tick, args=(orchestrator, stop_ticker, log), name="accord-ticker", daemon=True
    ).start()
    if config.metrics_port is not None:
        metrics_port = start_metrics(config.listen_host, config.metrics_port)
        _write_atomically(config.state_dir / "metrics_port", f"{metrics_port}\n")
    logs.event(
        log,
        "serving",
        address=f"{config.listen_host}:{port}",
        federation=config.federation_id,
        profile=config.profile.value,
        participants=list(config.participants),
        rounds=config.rounds,
        transport="insecure-plaintext" if roster is None else "mtls",
    )
    return RunningServer(server, port, orchestrator, stop_ticker, roster, store, sum_workers)


def _security(
    config: CoordinatorConfig, log: logging.Logger
) -> tuple[
    CoordinatorConfig, Roster | None, grpc.ServerCredentials | None, list[grpc.ServerInterceptor]
]:
    """The roster, TLS credentials and interceptors (mTLS unless insecure_plaintext)."""
    roster: Roster | None = None
    credentials: grpc.ServerCredentials | None = None
    interceptors: list[grpc.ServerInterceptor] = [AccordErrorInterceptor(log)]
    if not config.insecure_plaintext:
        if config.tls_dir is None or config.roster is None:  # the config's validator says so
            raise ConfigError("[coordinator] tls_dir and roster are required with mTLS")
        credentials = tls.server_credentials(config.tls_dir)
        roster = Roster.load(config.roster, check_interval_s=ROSTER_CHECK_INTERVAL_S)
        config = _members_from_roster(config, roster)
        # Outermost, so that every answer carries the clock, refusals included.
        interceptors.insert(0, DateHeaderInterceptor())
        # Innermost, so that its refusals are answered by AccordErrorInterceptor.
        interceptors.append(AdmissionInterceptor(SERVICE_NAME, _identifier(roster), CallLimits()))
    return config, roster, credentials, interceptors


def _terms(config: CoordinatorConfig) -> FederationTerms | None:
    """The federation's signed terms, verified by the CA in tls_dir, when configured."""
    if config.terms is None:
        return None
    if config.tls_dir is None:
        raise ConfigError("[coordinator] terms: needs tls_dir (its ca.pem verifies them)")
    return load_terms(config.terms, config.tls_dir / "ca.pem")


def _orchestrator(
    config: CoordinatorConfig,
    roster: Roster | None,
    store: Store,
    terms: FederationTerms | None,
    log: logging.Logger,
) -> tuple[Orchestrator, SumWorkers | None]:
    """The orchestrator over the store, with a sum worker pool when it is worth one."""
    # The pool starts its processes on the first round large enough to use them.
    worker_processes = worker_count(config.aggregation_workers)
    sum_workers = SumWorkers(worker_processes) if worker_processes >= 2 else None
    orchestrator = Orchestrator(
        config,
        log=log,
        sum_workers=sum_workers,
        identities=(
            {n: k for n, k in roster.identity_keys().items() if n in config.participants}
            if roster is not None
            else None
        ),
        records=FederationRecords(store, keep_aggregates=config.keep_aggregates),
        terms=terms,
    )
    return orchestrator, sum_workers


def _add_services(server: grpc.Server, service: CoordinatorService) -> health.HealthServicer:
    """Register the coordinator, health and reflection services; returns the health one."""
    pb_grpc.add_CoordinatorServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return health_servicer


def _bind(server: grpc.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind ``address`` (mTLS when there are credentials); the port bound."""
    try:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))
    except RuntimeError as error:
        raise ConfigError(f"[coordinator] listen_port: cannot bind {address} ({error})") from None


def _members_from_roster(config: CoordinatorConfig, roster: Roster) -> CoordinatorConfig:
    """`config` with the roster's active participants, unless it lists its own subset.

    Raises:
        ConfigError: the roster is another federation's, a listed participant is not
            active in it, or the threshold exceeds its participants.
    """
    where = f"[coordinator] roster = {str(roster.path)!r}"
    if roster.federation_id != config.federation_id:
        raise ConfigError(
            f"{where}: the roster is of federation {roster.federation_id!r}, but federation_id "
            f"= {config.federation_id!r} (set federation_id = {roster.federation_id!r})"
        )
    active = roster.active_ids()
    if "participants" in config.model_fields_set:
        missing = [name for name in config.participants if name not in active]
        if missing:
            raise ConfigError(
                f"{where}: {', '.join(missing)} is not an active participant in the roster "
                "(approve it with `accord provision approve`, or remove it from participants)"
            )
        return config
    if config.threshold > len(active):
        raise ConfigError(
            f"{where}: threshold = {config.threshold} exceeds the {len(active)} active "
            "participants of the roster (lower threshold, or approve more participants)"
        )
    # The roster validated the ids (pattern, unique); the threshold check bounds the count.
    return config.model_copy(update={"participants": active})


def _authenticator(roster: Roster) -> Callable[[grpc.ServicerContext, str], None]:
    """The check `CoordinatorService` makes for every request header (see `tls.authenticate`)."""

    def authenticate(context: grpc.ServicerContext, claimed_participant_id: str) -> None:
        tls.authenticate(context, roster, claimed_participant_id)

    return authenticate


def _identifier(roster: Roster) -> Callable[[grpc.ServicerContext], str]:
    """The caller's participant id from its certificate, when a call opens."""

    def identify(context: grpc.ServicerContext) -> str:
        return tls.authenticate(context, roster, None)

    return identify


def serve(config: CoordinatorConfig, *, log: logging.Logger) -> None:
    """Run the coordinator until SIGTERM or SIGINT."""
    limit_malloc_arenas()
    running = start(config, log=log)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    logs.event(log, "stopping")
    running.stop()


MALLOC_ARENAS = 2
"""glibc malloc arenas of a coordinator process (`limit_malloc_arenas`)."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas, before the gRPC threads start; True if it applied.

    glibc gives threads up to 8 arenas per core, and a coordinator runs 4 RPC threads
    per participant: each arena keeps its own freed chunks, so memory grew with the
    number of participants (measured at 50 participants x 1M parameters: 867 MiB peak
    with glibc's default, 646 MiB with 2 arenas; `MALLOC_ARENA_MAX=2` does the same).
    Elsewhere than glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


_M_ARENA_MAX = -8  # glibc's malloc.h


def _tick(orchestrator: Orchestrator, stop: threading.Event, log: logging.Logger) -> None:
    """Tick until stopped; an exception is logged and the thread ticks on.

    `Orchestrator.tick` aborts the round in which a step failed; this loop only makes
    sure that nothing else it raises ends the thread that closes every stage.
    """
    while not stop.wait(TICK_S):
        try:
            orchestrator.tick()
        except Exception as error:
            logs.event(log, "tick_failed", error=repr(error), level=logging.ERROR)


def _write_atomically(path: os.PathLike[str] | str, text: str) -> None:
    temporary = f"{os.fspath(path)}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
