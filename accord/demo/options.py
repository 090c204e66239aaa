"""The `accord demo` command line and what it means: its options, checked into a plan.

Each option is declared here once, as the default of the matching parameter of
`accord.demo.command.demo` (typer reads the declaration from there). `DemoOptions` is
what they say together; `plan_demo` checks them and makes the `DemoPlan` the steps of
the run follow, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from accord.crypto.profile import Profile
from accord.demo.faults import FaultPlan, plan
from accord.demo.setup import (
    DEMO_CLIENT_NOISE,
    DemoTrainer,
    check_threshold,
    participant_names,
)
from accord.errors import UsageError

PARTICIPANTS = typer.Option(3, "--participants", "-n", min=2, max=64, help="Participants.")

ROUNDS = typer.Option(5, "--rounds", "-r", min=1, help="Rounds of federated averaging.")

PROFILE = typer.Option(
    Profile.CKKS_MASKS.value,
    "--profile",
    help="How updates are protected: ckks+masks, ckks, masks, or none (plaintext).",
)

WORKDIR = typer.Option(
    Path("accord-demo"),
    "--workdir",
    help="Folder for every config, log, state and adapter; kept afterwards.",
)

JSON_PATH = typer.Option(None, "--json", help="Also write the machine-readable summary here.")

SEED = typer.Option(0, "--seed", min=0, help="Seed of the base model and data.")

TRAINER = typer.Option(
    DemoTrainer.MULTIMODAL.value,
    "--trainer",
    metavar="NAME",
    help="What the participants train: multimodal (the bundled image + text model on the "
    "synthetic city-safety benchmark, the default) or lora-mlp (a tiny LoRA MLP on "
    "synthetic data, seconds; for tests).",
)

NO_DP = typer.Option(
    False,
    "--no-dp",
    help="Train without sample-level DP-SGD. By default every multimodal participant "
    "trains with it, the budget spread over all rounds, and its ledger records it.",
)

CLIENT_NOISE = typer.Option(
    DEMO_CLIENT_NOISE,
    "--client-noise",
    min=0.0,
    help="Client-level noise multiplier of the aggregate (each participant adds its share "
    "of Skellam noise before masking); 0 turns it off. Off in plaintext and in "
    "--bench-parameters runs, which measure the protocol alone.",
)

TARGET_EPSILON = typer.Option(
    8.0,
    "--target-epsilon",
    min=0.01,
    help="Each participant's sample-level epsilon over all rounds, at delta 1e-5 (RDP).",
)

INSECURE_PLAINTEXT = typer.Option(
    False,
    "--insecure-plaintext",
    help="Run without TLS on loopback (debugging; required by --profile none). Otherwise "
    "the demo provisions a CA and startup kits in DIR/provision and uses mTLS throughout.",
)

TIMEOUT_S = typer.Option(600.0, "--timeout-s", min=1.0, help="Give up after this.")

THRESHOLD = typer.Option(
    None,
    "--threshold",
    "-t",
    help="Least participants whose inputs a round sums (default: two thirds of them, at least 2).",
)

DROP = typer.Option(
    None,
    "--drop",
    metavar="NAME:STAGE",
    help="Kill participant NAME right before it sends its STAGE message in round 1 "
    "(advertise, share, upload, unmask; ckks and none have only upload); it stays gone "
    "and the round completes with the rest. Repeatable, at most n - threshold.",
)

RESTART_COORDINATOR = typer.Option(
    None,
    "--restart-coordinator",
    metavar="ROUND[:STAGE]",
    help="SIGKILL the coordinator once round ROUND is in STAGE (upload, the default, "
    "unmask or aggregate) or later, and start it again: it resumes from its store, the "
    "participants ride through.",
)

RESTART_PARTICIPANT = typer.Option(
    None,
    "--restart-participant",
    metavar="NAME:ROUND",
    help="SIGKILL participant NAME when round ROUND starts and start it again: it resumes "
    "from its state folder and takes part again. Repeatable.",
)

STAGE_DEADLINE_S = typer.Option(
    30.0,
    "--stage-deadline-s",
    min=1.0,
    help="Seconds a round stage waits for a participant that does not answer (a dropped one).",
)

STORE = typer.Option(
    None,
    "--store",
    hidden=True,
    help="The coordinator's store URL (e.g. postgresql://...); default SQLite in DIR/coordinator.",
)

BENCH_PARAMETERS = typer.Option(
    None,
    "--bench-parameters",
    min=1,
    hidden=True,
    help="Benchmarks only (bench/round_bench.py): participants use the synthetic trainer "
    "with an adapter of this many parameters and no training.",
)


@dataclass(frozen=True)
class DemoOptions:
    """The options of one `accord demo` run, as typer parsed them (see each option's help)."""

    participants: int
    rounds: int
    profile: Profile
    workdir: Path
    json_path: Path | None
    seed: int
    trainer: DemoTrainer
    no_dp: bool
    client_noise: float
    target_epsilon: float
    insecure_plaintext: bool
    timeout_s: float
    threshold: int | None
    drop: list[str] | None
    restart_coordinator: str | None
    restart_participant: list[str] | None
    stage_deadline_s: float
    store: str | None
    bench_parameters: int | None


@dataclass(frozen=True)
class DemoPlan:
    """The checked options: who takes part, what they train, which faults strike, where.

    Attributes:
        options: the command line as given.
        names: the participants' names, in order.
        threshold: `--threshold` or its default.
        faults: the planned drops and restarts.
        trainer: what the participants train ("synthetic" with `--bench-parameters`).
        workdir: `--workdir`, resolved.
        client_noise: `--client-noise`, or 0 with `--bench-parameters`.
    """

    options: DemoOptions
    names: list[str]
    threshold: int
    faults: FaultPlan
    trainer: str
    workdir: Path
    client_noise: float

    @property
    def multimodal(self) -> bool:
        """Whether the participants run the multimodal trainer on the city-safety data."""
        return self.trainer == DemoTrainer.MULTIMODAL.value


def plan_demo(given: DemoOptions) -> DemoPlan:
    """Check the options and plan the run; nothing is written yet.

    Raises:
        UsageError: a forbidden combination, a bad threshold or fault (each names the option).
    """
    check_demo_flags(given.profile, given.insecure_plaintext)
    names = participant_names(given.participants)
    threshold = check_threshold(given.threshold, len(names))
    fault_plan = plan(
        names,
        given.profile,
        threshold=threshold,
        rounds=given.rounds,
        drops=given.drop or (),
        restart_coordinator=given.restart_coordinator,
        restart_participants=given.restart_participant or (),
    )
    return DemoPlan(
        options=given,
        names=names,
        threshold=threshold,
        faults=fault_plan,
        trainer="synthetic" if given.bench_parameters is not None else given.trainer.value,
        workdir=given.workdir.resolve(),
        client_noise=given.client_noise if given.bench_parameters is None else 0.0,
    )


def check_demo_flags(profile: Profile, insecure_plaintext: bool) -> None:
    """Refuse the one combination the design forbids.

    Raises:
        UsageError: the plaintext profile without `--insecure-plaintext`.
    """
    if profile is Profile.NONE and not insecure_plaintext:
        raise UsageError(
            "--profile none sends updates in clear and is kept for benchmarks only; add "
            "--insecure-plaintext to run it (which also drops TLS), or use a secure profile"
        )
