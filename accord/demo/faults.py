"""What `accord demo` does to a running federation to show recovery: drops and restarts.

    --drop NAME:STAGE        NAME's daemon dies abruptly (exit status 17) right before it
                             sends its STAGE message in round 1 (`accord.demo.dropout`:
                             the daemon with a `before_stage` hook), and stays gone; the
                             round completes with the others when at least the threshold
                             remain
    --restart-coordinator R[:STAGE]
                             SIGKILL the coordinator once round R (or a later one) is in
                             STAGE (`upload`, the default, `unmask` or `aggregate`) or a
                             later stage, then start it again with the same config and
                             port; it resumes from its store (a round in `aggregate` goes
                             on, an earlier one is aborted and retried), and the
                             participants ride through by retrying
    --restart-participant NAME:R
                             SIGKILL NAME's daemon once round R started (and NAME saved
                             round R-1's adapter, so that there is something to resume),
                             then start it again with the same config; it resumes from
                             its state folder and takes part again

`plan` checks the flags against the federation (names, the profile's stages, the
threshold) before anything starts. While the demo watches `GetStatus`, `Faults` fires
what is due and records every event for the summary; a trigger the federation never
reached (it finished first) is recorded as such.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from accord.crypto.lifecycle import RUNNING
from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.errors import UsageError

if TYPE_CHECKING:
    from accord.demo.processes import Child
    from accord.proto.v1 import federation_pb2 as pb

DROPOUT_EXIT_STATUS = 17
"""The exit status of a daemon that dropped out on purpose (`accord.demo.dropout`)."""

DROP_ROUND = 1
"""The round in which `--drop` takes effect."""

MASKING_STAGES = (Stage.ADVERTISE, Stage.SHARE, Stage.UPLOAD, Stage.CONSISTENCY, Stage.UNMASK)
"""Where a participant sends a message of its own, in the profiles with masks."""

COORDINATOR_STAGES = (Stage.UPLOAD, Stage.UNMASK, Stage.AGGREGATE)
"""Where `--restart-coordinator` may strike: from uploads on, a round has state to lose."""


def drop_stages(profile: Profile) -> tuple[Stage, ...]:
    """The stages at which a participant of `profile` can drop out (it sends a message)."""
    if profile.uses_masks:
        return MASKING_STAGES
    return (Stage.UPLOAD, Stage.CONSISTENCY) if profile.is_secure else (Stage.UPLOAD,)


@dataclass(frozen=True)
class FaultPlan:
    """What to do to the federation, checked against it by `plan`."""

    drops: dict[str, Stage] = field(default_factory=dict)
    restart_coordinator: int | None = None
    restart_coordinator_stage: Stage = Stage.UPLOAD
    restart_participants: dict[str, int] = field(default_factory=dict)


def plan(
    names: Sequence[str],
    profile: Profile,
    *,
    threshold: int,
    rounds: int,
    drops: Sequence[str] = (),
    restart_coordinator: str | None = None,
    restart_participants: Sequence[str] = (),
) -> FaultPlan:
    """Parse and check the demo's fault flags.

    Args:
        names: the participants.
        profile: the federation's profile (which stages exist).
        threshold: least participants a round needs.
        rounds: rounds the federation runs.
        drops: `NAME:STAGE` values of `--drop`.
        restart_coordinator: `ROUND[:STAGE]` of `--restart-coordinator`.
        restart_participants: `NAME:ROUND` values of `--restart-participant`.

    Raises:
        UsageError: a malformed value, an unknown participant or stage, a round outside
            the federation, or more participants lost than the threshold allows.
    """
    dropped = _drops(names, profile, drops)
    coordinator_round, coordinator_stage = _coordinator_restart(
        profile, rounds, restart_coordinator
    )
    restarted = _participant_restarts(names, rounds, restart_participants, dropped)
    lost = len(dropped) + len(restarted)
    spare = len(names) - threshold
    if lost > spare:
        raise UsageError(
            f"--drop and --restart-participant take {lost} of the {len(names)} participants "
            f"({', '.join(names)}) out of a round, but a round needs threshold {threshold} of "
            f"them, so at most {spare} may go (lower --threshold, or add --participants)"
        )
    return FaultPlan(dropped, coordinator_round, coordinator_stage, restarted)


def _drops(names: Sequence[str], profile: Profile, drops: Sequence[str]) -> dict[str, Stage]:
    """`--drop NAME:STAGE` values: each participant once, at a stage it sends a message."""
    dropped: dict[str, Stage] = {}
    for value in drops:
        name, stage_name = _split(value, "--drop", "NAME:STAGE", "energy:upload")
        _check_name(name, names, f"--drop {value}")
        possible = drop_stages(profile)
        stage = next((s for s in possible if s.value == stage_name), None)
        if stage is None:
            listed = ", ".join(s.value for s in possible)
            raise UsageError(
                f"--drop {value}: profile {profile.value} has no stage {stage_name!r} at which "
                f"a participant sends a message (its stages: {listed})"
            )
        if name in dropped:
            raise UsageError(f"--drop {value}: {name} is already dropped; drop it once")
        dropped[name] = stage
    return dropped


def _coordinator_restart(
    profile: Profile, rounds: int, restart_coordinator: str | None
) -> tuple[int | None, Stage]:
    """`--restart-coordinator ROUND[:STAGE]`: the round (None: no restart) and stage."""
    if restart_coordinator is None:
        return None, Stage.UPLOAD
    what = f"--restart-coordinator {restart_coordinator}"
    round_text, _, stage_name = restart_coordinator.partition(":")
    if not round_text.isdigit():
        raise UsageError(f"{what}: expected ROUND[:STAGE], e.g. 1 or 1:aggregate")
    _check_round(int(round_text), rounds, what)
    if not stage_name:
        return int(round_text), Stage.UPLOAD
    strikes = [s for s in COORDINATOR_STAGES if profile.uses_masks or s is not Stage.UNMASK]
    found = next((s for s in strikes if s.value == stage_name), None)
    if found is None:
        listed = ", ".join(s.value for s in strikes)
        raise UsageError(f"{what}: STAGE must be one of {listed} (profile {profile.value})")
    return int(round_text), found


def _participant_restarts(
    names: Sequence[str], rounds: int, values: Sequence[str], dropped: dict[str, Stage]
) -> dict[str, int]:
    """`--restart-participant NAME:ROUND` values: each participant once, none dropped."""
    restarted: dict[str, int] = {}
    for value in values:
        name, round_text = _split(value, "--restart-participant", "NAME:ROUND", "energy:2")
        what = f"--restart-participant {value}"
        _check_name(name, names, what)
        if not round_text.isdigit():
            raise UsageError(f"{what}: ROUND must be a round number, e.g. {name}:2")
        _check_round(int(round_text), rounds, what)
        if name in dropped:
            raise UsageError(f"{what}: {name} is dropped with --drop; it cannot also restart")
        if name in restarted:
            raise UsageError(f"{what}: {name} is already restarted; restart it once")
        restarted[name] = int(round_text)
    return restarted


def _split(value: str, flag: str, form: str, example: str) -> tuple[str, str]:
    name, colon, rest = value.partition(":")
    if not colon or not name or not rest:
        raise UsageError(f"{flag} {value}: expected {form}, e.g. {flag} {example}")
    return name, rest


def _check_name(name: str, names: Sequence[str], what: str) -> None:
    if name not in names:
        raise UsageError(f"{what}: no participant {name!r} (the participants: {', '.join(names)})")


def _check_round(round_number: int, rounds: int, what: str) -> None:
    if not 1 <= round_number <= rounds:
        raise UsageError(f"{what}: the federation runs {rounds} rounds; choose 1 to {rounds}")


class Faults:
    """Fires the planned restarts as the federation reaches them; records every event.

    Args:
        fault_plan: what to do.
        coordinator: the coordinator's process (restarted in place).
        participants: the participants' processes (restarted in place).
        restart: kills a child with SIGKILL and starts it again with the same arguments.
        round_applied: the last round a participant saved the global adapter of (0: none).
        started_s: the demo's start, on the `time.monotonic` clock.
    """

    def __init__(
        self,
        fault_plan: FaultPlan,
        *,
        coordinator: Child,
        participants: Sequence[Child],
        restart: Callable[[Child], None],
        round_applied: Callable[[str], int],
        started_s: float,
    ) -> None:
        self.plan = fault_plan
        self.events: list[dict[str, Any]] = []
        self._coordinator = coordinator
        self._participants = {child.name: child for child in participants}
        self._restart = restart
        self._round_applied = round_applied
        self._started_s = started_s
        self._coordinator_due = fault_plan.restart_coordinator
        self._participants_due = dict(fault_plan.restart_participants)
        self._dropped: set[str] = set()

    @property
    def pending(self) -> bool:
        """True while a restart is still due: the watcher then polls often."""
        return self._coordinator_due is not None or bool(self._participants_due)

    def on_status(self, status: pb.StatusResponse) -> None:
        """Fire each restart whose moment `status` shows."""
        from accord.proto.v1 import federation_pb2 as pb

        name = pb.Stage.Name(status.stage)
        stage = Stage[name] if name in Stage.__members__ else None
        due = self._coordinator_due
        if due is not None and status.round >= due and stage in COORDINATOR_STAGES:
            assert stage is not None
            at_least = COORDINATOR_STAGES.index(self.plan.restart_coordinator_stage)
            if COORDINATOR_STAGES.index(stage) >= at_least:
                self._coordinator_due = None
                self._fire(self._coordinator, "coordinator", status.round, stage.value)
        for participant, due_round in list(self._participants_due.items()):
            # Round R shows before every survivor of R-1 has saved it; killed in between,
            # a participant would have nothing of R-1 to resume from.
            started = status.round >= due_round and stage in RUNNING
            if started and self._round_applied(participant) >= min(due_round, status.round) - 1:
                assert stage is not None
                del self._participants_due[participant]
                child = self._participants[participant]
                self._fire(child, "participant", status.round, stage.value)

    def expected_exit(self, child: Child, code: int) -> bool:
        """Whether `child` exiting with `code` is planned (a drop); records it once."""
        stage = self.plan.drops.get(child.name)
        if stage is None or code != DROPOUT_EXIT_STATUS:
            return False
        if child.name not in self._dropped:
            self._dropped.add(child.name)
            child.dropped_at = stage.value
            self.events.append(
                {
                    "event": "dropped",
                    "process": "participant",
                    "name": child.name,
                    "round": DROP_ROUND,
                    "stage": stage.value,
                    "exit_status": code,
                    "at_s": self._elapsed(),
                }
            )
        return True

    def finish(self) -> None:
        """Record the restarts the federation never reached, and drops that did not happen."""
        if self._coordinator_due is not None:
            self.events.append(
                {
                    "event": "not_reached",
                    "process": "coordinator",
                    "name": "coordinator",
                    "round": self._coordinator_due,
                }
            )
        for name, due_round in self._participants_due.items():
            self.events.append(
                {"event": "not_reached", "process": "participant", "name": name, "round": due_round}
            )
        for name, stage in self.plan.drops.items():
            if name not in self._dropped:
                self.events.append(
                    {
                        "event": "not_reached",
                        "process": "participant",
                        "name": name,
                        "round": DROP_ROUND,
                        "stage": stage.value,
                    }
                )

    def _fire(self, child: Child, process: str, round_number: int, stage: str) -> None:
        """Restart `child` and record it.

        The event's `restart_s` is how long the restart took: until the new process
        started, or for the coordinator until it served again.
        """
        killed_s = self._elapsed()
        self._restart(child)
        self.events.append(
            {
                "event": "restarted",
                "process": process,
                "name": child.name,
                "signal": signal.Signals.SIGKILL.name,
                "round": round_number,
                "stage": stage,
                "at_s": killed_s,
                "restart_s": round_s(self._elapsed() - killed_s),
            }
        )

    def _elapsed(self) -> float:
        return round_s(time.monotonic() - self._started_s)


def round_s(seconds: float) -> float:
    """Seconds as the summary shows them (milliseconds)."""
    return round(seconds, 3)
