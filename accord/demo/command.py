"""`accord demo`: a whole federation on this machine, as separate processes.

The launcher writes one TOML file per role into the work folder, starts
`python -m accord.coordinator serve` and N `python -m accord.participant run`
children, and watches them only through the coordinator's `GetStatus` RPC, the way an
operator would: the processes share nothing but the addresses in their configs, so
each could run on its own host. Layout of the work folder (kept afterwards):

    DIR/provision/      ca/ (the demo CA and its key), coordinator/ (server.pem,
                        server.key, ca.pem, roster.json), as `accord provision` writes them
    DIR/coordinator/    coordinator.toml, coordinator.log (JSON lines), output.log, port
    DIR/participants/<name>/
                        participant.toml, kit/ (startup kit: mTLS certificate and key,
                        identity.key, ceremony.key, pinned ca.pem), participant.log,
                        output.log, state.json, upload.json, metrics.jsonl, ledger.jsonl,
                        privacy_accountant.json, adapters/round-NNNN/ (PEFT)
    DIR/data/<name>/    that participant's data (manifest layout, docs/ml.md), and
    DIR/data/pooled-test/
                        every enterprise's test split, the shared evaluation set;
                        benchmark.json says which enterprise each participant is
    DIR/features/       the frozen towers' cached features, shared by the participants
    DIR/summary.json    what `--json` also writes, when given

What the participants train (`--trainer`): by default the multimodal trainer
(`participant/training/multimodal.py`: the bundled MiniLM + EfficientNet-Lite0 towers,
frozen, with a fusion head trained by FFA-LoRA's rules) on the synthetic city-safety
benchmark (`participant/data/city_safety.py`), enterprise i of N going to participant i, so
that the label skew between enterprises holds for any N >= 2. Each trains with
sample-level DP-SGD (`--target-epsilon` at delta 1e-5 over all rounds, RDP
accountant; `--no-dp` turns it off) and reports, besides the federated global
adapter's accuracy, that of a local-only model trained on the side with the same
steps and DP settings on its own data alone; the summary sets them side by side.
`--trainer lora-mlp` is the tiny LoRA MLP on synthetic data (seconds; tests).

Every connection is mTLS: the launcher first picks a free port and provisions the
federation for `127.0.0.1:<port>` exactly as `accord provision federation.toml --out
DIR/provision` would (CA, the coordinator's certificate, one startup kit per
participant, moved to that participant's folder). It watches `GetStatus` with the first
participant's certificate (the call claims no participant id).
With `--insecure-plaintext` (loopback debugging; required by `--profile none`) there is
no TLS: the launcher makes each participant's Ed25519 identity key itself
(`participants/<name>/identity.pem`, instead of `kit/`) and lists the public keys in
the coordinator's file. Either way the port is fixed before the coordinator starts, so
that a restarted coordinator serves where the participants already dial.

To show recovery, `--drop NAME:STAGE` makes a participant die before it sends its
STAGE message in round 1, `--restart-coordinator ROUND` and `--restart-participant
NAME:ROUND` kill a process with SIGKILL mid-round and start it again
(`accord.demo.faults`); the summary records each event, and per round who was
selected, who survived and who dropped.

This module tells the story of a run as named steps: plan (`accord.demo.options`, which
also declares every option), set up, run the federation, report. What is written before
anything starts is in `accord.demo.setup`, the child processes in
`accord.demo.processes`, the watching in `accord.demo.progress` and the summary in
`accord.demo.report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from accord.crypto.profile import Profile
from accord.demo import options
from accord.demo.data import DemoData, write_demo_data
from accord.demo.dropout import participant_entry
from accord.demo.faults import FaultPlan, Faults
from accord.demo.options import DemoOptions, DemoPlan, plan_demo
from accord.demo.processes import (
    Child,
    restart_child,
    round_applied,
    start_child,
    stop_children,
    wait_for_port,
)
from accord.demo.setup import (
    DEMO_CLIP_NORM,
    DemoPrivacy,
    DemoTrainer,
    demo_terms,
    free_port,
    participant_table,
    prepare_workdir,
    provision_demo,
    write_coordinator_config,
    write_participant_config,
)

if TYPE_CHECKING:
    import grpc

    from accord.federation.provision import ProvisionedFederation
    from accord.proto.v1 import federation_pb2 as pb

SLOW_START_ENROLL_DEADLINE_S = 300.0
"""How long round 1 waits for every multimodal participant: each first loads the towers
and caches their features (tens of seconds per participant on a busy 2-core machine)."""


def demo(
    participants: int = options.PARTICIPANTS,
    rounds: int = options.ROUNDS,
    profile: Profile = options.PROFILE,
    workdir: Path = options.WORKDIR,
    json_path: Path | None = options.JSON_PATH,
    seed: int = options.SEED,
    trainer: DemoTrainer = options.TRAINER,
    no_dp: bool = options.NO_DP,
    client_noise: float = options.CLIENT_NOISE,
    target_epsilon: float = options.TARGET_EPSILON,
    insecure_plaintext: bool = options.INSECURE_PLAINTEXT,
    timeout_s: float = options.TIMEOUT_S,
    threshold: int | None = options.THRESHOLD,
    drop: list[str] | None = options.DROP,
    restart_coordinator: str | None = options.RESTART_COORDINATOR,
    restart_participant: list[str] | None = options.RESTART_PARTICIPANT,
    stage_deadline_s: float = options.STAGE_DEADLINE_S,
    store: str | None = options.STORE,
    bench_parameters: int | None = options.BENCH_PARAMETERS,
) -> None:
    """Run the demo; see the module docstring for what it leaves in `--workdir`."""
    given = DemoOptions(
        participants=participants,
        rounds=rounds,
        profile=profile,
        workdir=workdir,
        json_path=json_path,
        seed=seed,
        trainer=trainer,
        no_dp=no_dp,
        client_noise=client_noise,
        target_epsilon=target_epsilon,
        insecure_plaintext=insecure_plaintext,
        timeout_s=timeout_s,
        threshold=threshold,
        drop=drop,
        restart_coordinator=restart_coordinator,
        restart_participant=restart_participant,
        stage_deadline_s=stage_deadline_s,
        store=store,
        bench_parameters=bench_parameters,
    )
    run = plan_demo(given)
    setup = set_up(run)
    outcome = run_federation(run, setup)
    report(run, outcome)


@dataclass(frozen=True)
class DemoSetup:
    """What is on disk before any process starts, and the port the coordinator takes.

    `privacy` is None when the participants train without DP-SGD (`--no-dp`, or a trainer
    other than the multimodal one); `provisioned` is None with `--insecure-plaintext`.
    """

    data: DemoData | None
    privacy: DemoPrivacy | None
    port: int
    provisioned: ProvisionedFederation | None
    coordinator_config: Path


@dataclass(frozen=True)
class DemoOutcome:
    """How the run ended: the last status, the faults' events, every child process."""

    final: pb.StatusResponse
    faults: Faults
    children: list[Child]
    started_s: float


def set_up(run: DemoPlan) -> DemoSetup:
    """Write the work folder: the data, the federation's kits (mTLS), the coordinator's file."""
    given, workdir = run.options, run.workdir
    prepare_workdir(workdir)
    data = write_demo_data(workdir, run.names, seed=given.seed) if run.multimodal else None
    private = DemoPrivacy(given.target_epsilon, given.rounds + fault_plan_restarts(run.faults))
    privacy = private if run.multimodal and not given.no_dp else None
    # The port goes into the kits and the participants' configs, and a restarted
    # coordinator must serve on it again, so it is chosen before anything starts.
    port = free_port()
    provisioned: ProvisionedFederation | None = None
    if not given.insecure_plaintext:
        provisioned = _provision(run, data, privacy, port)
    coordinator_config = write_coordinator_config(
        workdir,
        run.names,
        given.profile,
        given.rounds,
        provisioned=provisioned,
        threshold=run.threshold,
        stage_deadline_s=given.stage_deadline_s,
        enroll_deadline_s=_enroll_deadline_s(
            run.faults, given.stage_deadline_s, slow_start=run.multimodal
        ),
        store_url=given.store,
        port=port,
        clip_norm=DEMO_CLIP_NORM[run.trainer],
        client_noise=run.client_noise,
    )
    return DemoSetup(data, privacy, port, provisioned, coordinator_config)


def _provision(
    run: DemoPlan, data: DemoData | None, privacy: DemoPrivacy | None, port: int
) -> ProvisionedFederation:
    """Provision the federation for `127.0.0.1:<port>` under the terms the CA signs."""
    given = run.options
    # The CA signs the federation's terms (threshold, cohort, model, adapter size, ...):
    # members and coordinator refuse whatever departs from them.
    terms = demo_terms(
        run.workdir,
        given.profile,
        rounds=given.rounds,
        threshold=run.threshold,
        clip_norm=DEMO_CLIP_NORM[run.trainer],
        client_noise=run.client_noise,
        participant_table=participant_table(
            run.names[0],
            f"127.0.0.1:{port}",
            seed=given.seed,
            index=0,
            synthetic_parameters=given.bench_parameters,
            trainer=run.trainer,
            data=data,
            privacy=privacy,
            rounds=given.rounds,
        ),
    )
    return provision_demo(run.workdir, run.names, given.profile, port=port, terms=terms)


def run_federation(run: DemoPlan, setup: DemoSetup) -> DemoOutcome:
    """Start the coordinator and the participants, and watch them with progress to the end.

    Raises:
        typer.Exit: 130 on Ctrl-C, once every child is stopped.
    """
    from accord.demo import progress as demo_progress

    workdir = run.workdir
    started = time.monotonic()
    children: list[Child] = []
    faults: Faults | None = None
    try:
        coordinator = start_child(
            "coordinator",
            ["accord.coordinator", "serve", "--config", str(setup.coordinator_config)],
            workdir / "coordinator",
        )
        children.append(coordinator)
        port = wait_for_port(workdir / "coordinator" / "port", coordinator)
        address = f"127.0.0.1:{port}"
        _start_participants(run, setup, address, children)
        faults = Faults(
            run.faults,
            coordinator=coordinator,
            participants=children[1:],
            restart=restart_child,
            round_applied=lambda name: round_applied(workdir / "participants" / name),
            started_s=started,
        )
        final = demo_progress.watch(
            address,
            coordinator,
            children[1:],
            profile=run.options.profile,
            timeout_s=run.options.timeout_s,
            credentials=_watch_credentials(setup.provisioned),
            faults=faults,
        )
    except KeyboardInterrupt:
        stop_children(children)
        typer.echo(f"\ninterrupted; logs are in {workdir}", err=True)
        raise typer.Exit(130) from None
    finally:
        stop_children(children)
    assert faults is not None  # set before `watch`, which is the only way here
    faults.finish()
    return DemoOutcome(final, faults, children, started)


def _start_participants(
    run: DemoPlan, setup: DemoSetup, address: str, children: list[Child]
) -> None:
    """Write each participant's file and start its process, in order, onto `children`.

    Each joins `children` as soon as it starts, so that Ctrl-C stops those already running.
    """
    given = run.options
    for index, name in enumerate(run.names):
        kit = setup.provisioned.kits[name] if setup.provisioned is not None else None
        dropped_at = run.faults.drops.get(name)
        config = write_participant_config(
            run.workdir,
            name,
            address,
            seed=given.seed,
            index=index,
            kit=kit,
            synthetic_parameters=given.bench_parameters,
            trainer=run.trainer,
            data=setup.data,
            privacy=setup.privacy,
            rounds=given.rounds,
        )
        children.append(start_child(name, participant_entry(config, dropped_at), config.parent))


def report(run: DemoPlan, outcome: DemoOutcome) -> None:
    """Write and print the summary, then how to audit the ledgers the run left."""
    from accord.demo import report as demo_report

    workdir = run.workdir
    summary = demo_report.summary(
        outcome.final,
        workdir=workdir,
        names=run.names,
        wall_s=time.monotonic() - outcome.started_s,
        transport="plaintext" if run.options.insecure_plaintext else "mtls",
        threshold=run.threshold,
        events=outcome.faults.events,
        processes={
            child.name: {
                "exit_status": child.process.returncode,
                "dropped_at": child.dropped_at,
                "restarts": child.restarts,
            }
            for child in outcome.children
        },
    )
    demo_report.write_json(summary, workdir / "summary.json")
    if run.options.json_path is not None:
        demo_report.write_json(summary, run.options.json_path)
    demo_report.print_summary(summary)
    # Keys are trusted only as far as they chain to the CA (docs/audit.md); a plaintext
    # demo has none, so its audit is a consistency check, asked for by name.
    ca_path = workdir / "provision" / "ca" / "ca.pem"
    ca = f"--ca {ca_path}" if ca_path.exists() else "--unauthenticated"
    pin = f" --ca {ca_path}" if ca_path.exists() else ""
    typer.echo(
        "\nEvery participant and the coordinator kept a signed privacy ledger; audit them:\n"
        f"  accord audit verify {workdir} {ca}\n"
        f"  accord audit budget --ledger {workdir}{pin} --plot {workdir / 'epsilon.png'}\n"
        f"  accord audit contributions --ledger {workdir}{pin}"
    )


def _enroll_deadline_s(
    fault_plan: FaultPlan, stage_deadline_s: float, *, slow_start: bool = False
) -> float | None:
    """How long a round waits for every member to be online; None: the coordinator's 120 s.

    A restarted coordinator waits for every member before its next round, also for those
    dropped for good: with both faults planned, it gives up on them sooner. Otherwise the
    default leaves slow machines time to start every participant for round 1, and
    `slow_start` (the multimodal trainer, which caches tower features before it enrols)
    more than that.
    """
    if fault_plan.drops and fault_plan.restart_coordinator is not None:
        return max(60.0, 2 * stage_deadline_s)
    return SLOW_START_ENROLL_DEADLINE_S if slow_start else None


def fault_plan_restarts(fault_plan: FaultPlan) -> int:
    """Rounds a planned restart may abort after the participants trained (and spent budget).

    A killed coordinator aborts its round in flight, and so may a killed participant; the
    round is tried again under a new number, so each restart may cost one round of budget.
    """
    return (fault_plan.restart_coordinator is not None) + len(fault_plan.restart_participants)


def _watch_credentials(provisioned: ProvisionedFederation | None) -> grpc.ChannelCredentials | None:
    """mTLS credentials for the launcher's `GetStatus` calls: the first participant's kit.

    `GetStatus` claims no participant id, so any certificate of the federation may ask.
    """
    if provisioned is None:
        return None
    from accord.participant.kit.startup_kit import Kit, channel_credentials

    return channel_credentials(Kit.load(next(iter(provisioned.kits.values()))))
