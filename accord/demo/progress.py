"""What `accord demo` shows while rounds run: a live view of the coordinator's status.

`watch` polls the coordinator's `GetStatus` RPC, fires the demo's faults when they are
due, stops when a participant process dies unexpectedly, and returns the final status;
`accord.demo.report` summarises it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from accord.crypto.profile import Profile
from accord.demo.report import describe_event
from accord.errors import RoundAborted
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from accord.demo.faults import Faults
    from accord.demo.processes import Child

POLL_S = 0.25
FAST_POLL_S = 0.01
"""While a restart is due: rounds of the demo model last a fraction of a second."""
STATUS_TIMEOUT_S = 5.0


def watch(
    address: str,
    coordinator: Child,
    participants: Sequence[Child],
    *,
    profile: Profile,
    timeout_s: float,
    credentials: grpc.ChannelCredentials | None = None,
    faults: Faults | None = None,
) -> pb.StatusResponse:
    """Show live progress until every participant exited; return the last status.

    `credentials` are the mTLS credentials to call `GetStatus` with (any certificate of
    the federation will do); None calls over plaintext (`--insecure-plaintext`).
    `faults` fires the planned restarts as the status reaches them, and says which
    exits are planned drops.

    Raises:
        RoundAborted: a process failed, or the federation did not finish in `timeout_s`.
    """
    console = Console()
    started = time.monotonic()
    shown = 0.0
    status = pb.StatusResponse()
    if credentials is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, credentials)
    with channel, Live(console=console, refresh_per_second=8, transient=False) as live:
        stub = pb_grpc.CoordinatorStub(channel)
        while True:
            # Starting up or busy: the process checks below decide whether that matters.
            with contextlib.suppress(grpc.RpcError):
                status = stub.GetStatus(pb.StatusRequest(), timeout=STATUS_TIMEOUT_S)
                if faults is not None:
                    faults.on_status(status)
            elapsed = time.monotonic() - started
            if elapsed - shown >= POLL_S:
                live.update(_live_view(status, participants, profile, elapsed, faults))
                shown = elapsed
            if _check_processes(coordinator, participants, faults):
                status = _final_status(stub)
                live.update(_live_view(status, participants, profile, elapsed, faults))
                return status
            if elapsed > timeout_s:
                raise RoundAborted(f"the federation did not finish within {timeout_s:g} s")
            time.sleep(FAST_POLL_S if faults is not None and faults.pending else POLL_S)


def _final_status(stub: pb_grpc.CoordinatorStub) -> pb.StatusResponse:
    """The coordinator's last word; a restarted one may need a moment to answer again."""
    deadline = time.monotonic() + STATUS_TIMEOUT_S
    while True:
        try:
            return stub.GetStatus(pb.StatusRequest(), timeout=STATUS_TIMEOUT_S)
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_S)


def _check_processes(
    coordinator: Child, participants: Sequence[Child], faults: Faults | None
) -> bool:
    """True once every participant exited as it should (0, or a planned drop).

    Raises:
        RoundAborted: the coordinator exited, or a participant failed.
    """
    if coordinator.process.poll() is not None:
        raise RoundAborted(
            f"the coordinator exited with status {coordinator.process.returncode}; "
            f"its output ({coordinator.output}) ends:\n{coordinator.tail()}"
        )
    finished = True
    for child in participants:
        code = child.process.poll()
        if code is None:
            finished = False
        elif code != 0 and not (faults is not None and faults.expected_exit(child, code)):
            raise RoundAborted(
                f"participant {child.name} exited with status {code}; its output "
                f"({child.output}) ends:\n{child.tail()}"
            )
    return finished


def _live_view(
    status: pb.StatusResponse,
    participants: Sequence[Child],
    profile: Profile,
    elapsed_s: float,
    faults: Faults | None = None,
) -> Group:
    stage = pb.Stage.Name(status.stage).lower() if status.federation_id else "starting"
    planned = status.rounds_planned or "?"
    headline = Text.assemble(
        ("Accord demo ", "bold"),
        f"profile {profile.value} · round {status.round}/{planned} · stage {stage} · ",
        f"{status.rounds_completed} done · {elapsed_s:5.1f} s",
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("participant", "process", "online", "state", "bytes up", "bytes down"):
        table.add_column(column, justify="right" if column.startswith("bytes") else "left")
    by_name = {p.participant_id: p for p in status.participants}
    for child in participants:
        code = child.process.poll()
        if child.dropped_at is not None:
            process = f"dropped at {child.dropped_at}"
        elif code is None:
            process = f"pid {child.process.pid}"
        else:
            process = f"exited {code}"
        if child.restarts:
            process += f" (restarted {child.restarts}x)"
        entry = by_name.get(child.name)
        table.add_row(
            child.name,
            process,
            ("yes" if entry.online else "no") if entry else "-",
            entry.state if entry else "starting",
            f"{entry.bytes_up:,}" if entry else "0",
            f"{entry.bytes_down:,}" if entry else "0",
        )
    lines: list[Text] = [headline]
    if faults is not None:
        lines += [Text(describe_event(event), style="yellow") for event in faults.events[-5:]]
    return Group(*lines, table)
