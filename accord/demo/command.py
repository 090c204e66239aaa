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
benchmark (`participant/data/incident_sets.py`), enterprise i of N going to participant i, so
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

This module tells the story of a run; what is written before anything starts is in
`accord.demo.setup`, the child processes in `accord.demo.processes`, and the watching
and the summary in `accord.demo.report`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from accord.crypto.profile import Profile
from accord.demo.faults import FaultPlan, Faults, participant_arguments, plan
from accord.demo.processes import (
    Child,
    restart_child,
    round_applied,
    start_child,
    stop_children,
    wait_for_port,
)
from accord.demo.setup import (
    DEMO_CLIENT_NOISE,
    DEMO_CLIP_NORM,
    DemoPrivacy,
    DemoTrainer,
    check_threshold,
    demo_terms,
    free_port,
    participant_names,
    participant_table,
    prepare_workdir,
    provision_demo,
    write_coordinator_config,
    write_demo_data,
    write_participant_config,
)
from accord.errors import UsageError

if TYPE_CHECKING:
    import grpc

    from accord.federation.provision import ProvisionedFederation

SLOW_START_ENROLL_DEADLINE_S = 300.0
"""How long round 1 waits for every multimodal participant: each first loads the towers
and caches their features (tens of seconds per participant on a busy 2-core machine)."""


def demo(
    participants: int = typer.Option(
        3, "--participants", "-n", min=2, max=64, help="Participants."
    ),
    rounds: int = typer.Option(5, "--rounds", "-r", min=1, help="Rounds of federated averaging."),
    profile: Profile = typer.Option(
        Profile.CKKS_MASKS.value,
        "--profile",
        help="How updates are protected: ckks+masks, ckks, masks, or none (plaintext).",
    ),
    workdir: Path = typer.Option(
        Path("accord-demo"),
        "--workdir",
        help="Folder for every config, log, state and adapter; kept afterwards.",
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the machine-readable summary here."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the base model and data."),
    trainer: DemoTrainer = typer.Option(
        DemoTrainer.MULTIMODAL.value,
        "--trainer",
        metavar="NAME",
        help="What the participants train: multimodal (the bundled image + text model on the "
        "synthetic city-safety benchmark, the default) or lora-mlp (a tiny LoRA MLP on "
        "synthetic data, seconds; for tests).",
    ),
    no_dp: bool = typer.Option(
        False,
        "--no-dp",
        help="Train without sample-level DP-SGD. By default every multimodal participant "
        "trains with it, the budget spread over all rounds, and its ledger records it.",
    ),
    client_noise: float = typer.Option(
        DEMO_CLIENT_NOISE,
        "--client-noise",
        min=0.0,
        help="Client-level noise multiplier of the aggregate (each participant adds its share "
        "of Skellam noise before masking); 0 turns it off. Off in plaintext and in "
        "--bench-parameters runs, which measure the protocol alone.",
    ),
    target_epsilon: float = typer.Option(
        8.0,
        "--target-epsilon",
        min=0.01,
        help="Each participant's sample-level epsilon over all rounds, at delta 1e-5 (RDP).",
    ),
    insecure_plaintext: bool = typer.Option(
        False,
        "--insecure-plaintext",
        help="Run without TLS on loopback (debugging; required by --profile none). Otherwise "
        "the demo provisions a CA and startup kits in DIR/provision and uses mTLS throughout.",
    ),
    timeout_s: float = typer.Option(600.0, "--timeout-s", min=1.0, help="Give up after this."),
    threshold: int | None = typer.Option(
        None,
        "--threshold",
        "-t",
        help="Least participants whose inputs a round sums (default: two thirds of them, at "
        "least 2).",
    ),
    drop: list[str] | None = typer.Option(
        None,
        "--drop",
        metavar="NAME:STAGE",
        help="Kill participant NAME right before it sends its STAGE message in round 1 "
        "(advertise, share, upload, unmask; ckks and none have only upload); it stays gone "
        "and the round completes with the rest. Repeatable, at most n - threshold.",
    ),
    restart_coordinator: str | None = typer.Option(
        None,
        "--restart-coordinator",
        metavar="ROUND[:STAGE]",
        help="SIGKILL the coordinator once round ROUND is in STAGE (upload, the default, "
        "unmask or aggregate) or later, and start it again: it resumes from its store, the "
        "participants ride through.",
    ),
    restart_participant: list[str] | None = typer.Option(
        None,
        "--restart-participant",
        metavar="NAME:ROUND",
        help="SIGKILL participant NAME when round ROUND starts and start it again: it resumes "
        "from its state folder and takes part again. Repeatable.",
    ),
    stage_deadline_s: float = typer.Option(
        30.0,
        "--stage-deadline-s",
        min=1.0,
        help="Seconds a round stage waits for a participant that does not answer (a dropped one).",
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        hidden=True,
        help="The coordinator's store URL (e.g. postgresql://...); default SQLite in "
        "DIR/coordinator.",
    ),
    bench_parameters: int | None = typer.Option(
        None,
        "--bench-parameters",
        min=1,
        hidden=True,
        help="Benchmarks only (bench/round_bench.py): participants use the synthetic trainer "
        "with an adapter of this many parameters and no training.",
    ),
) -> None:
    """Run the demo; see the module docstring for what it leaves in `--workdir`."""
    from accord.demo import report as demo_report

    check_demo_flags(profile, insecure_plaintext)
    names = participant_names(participants)
    threshold = check_threshold(threshold, len(names))
    fault_plan = plan(
        names,
        profile,
        threshold=threshold,
        rounds=rounds,
        drops=drop or (),
        restart_coordinator=restart_coordinator,
        restart_participants=restart_participant or (),
    )
    trainer_name = "synthetic" if bench_parameters is not None else trainer.value
    multimodal = trainer_name == DemoTrainer.MULTIMODAL.value
    workdir = workdir.resolve()
    prepare_workdir(workdir)
    data = write_demo_data(workdir, names, seed=seed) if multimodal else None
    private = DemoPrivacy(target_epsilon, rounds + fault_plan_restarts(fault_plan))
    # The port goes into the kits and the participants' configs, and a restarted
    # coordinator must serve on it again, so it is chosen before anything starts.
    port = free_port()
    client_noise = client_noise if bench_parameters is None else 0.0
    provisioned: ProvisionedFederation | None = None
    if not insecure_plaintext:
        # The CA signs the federation's terms (threshold, cohort, model, adapter size, ...):
        # members and coordinator refuse whatever departs from them.
        terms = demo_terms(
            workdir,
            profile,
            rounds=rounds,
            threshold=threshold,
            clip_norm=DEMO_CLIP_NORM[trainer_name],
            client_noise=client_noise,
            participant_table=participant_table(
                names[0],
                f"127.0.0.1:{port}",
                seed=seed,
                index=0,
                synthetic_parameters=bench_parameters,
                trainer=trainer_name,
                data=data,
                privacy=private if multimodal and not no_dp else None,
            ),
        )
        provisioned = provision_demo(workdir, names, profile, port=port, terms=terms)
    coordinator_config = write_coordinator_config(
        workdir,
        names,
        profile,
        rounds,
        provisioned=provisioned,
        threshold=threshold,
        stage_deadline_s=stage_deadline_s,
        enroll_deadline_s=_enroll_deadline_s(fault_plan, stage_deadline_s, slow_start=multimodal),
        store_url=store,
        port=port,
        clip_norm=DEMO_CLIP_NORM[trainer_name],
        client_noise=client_noise,
    )
    started = time.monotonic()
    children: list[Child] = []
    faults: Faults | None = None
    try:
        coordinator = start_child(
            "coordinator",
            ["accord.coordinator", "serve", "--config", str(coordinator_config)],
            workdir / "coordinator",
        )
        children.append(coordinator)
        port = wait_for_port(workdir / "coordinator" / "port", coordinator)
        address = f"127.0.0.1:{port}"
        for index, name in enumerate(names):
            kit = provisioned.kits[name] if provisioned is not None else None
            config = write_participant_config(
                workdir,
                name,
                address,
                seed=seed,
                index=index,
                kit=kit,
                synthetic_parameters=bench_parameters,
                trainer=trainer_name,
                data=data,
                privacy=private if multimodal and not no_dp else None,
            )
            children.append(
                start_child(
                    name, participant_arguments(config, fault_plan.drops.get(name)), config.parent
                )
            )
        faults = Faults(
            fault_plan,
            coordinator=coordinator,
            participants=children[1:],
            restart=restart_child,
            round_applied=lambda name: round_applied(workdir / "participants" / name),
            started_s=started,
        )
        final = demo_report.watch(
            address,
            coordinator,
            children[1:],
            profile=profile,
            timeout_s=timeout_s,
            credentials=_watch_credentials(provisioned),
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
    summary = demo_report.summary(
        final,
        workdir=workdir,
        names=names,
        wall_s=time.monotonic() - started,
        transport="plaintext" if insecure_plaintext else "mtls",
        threshold=threshold,
        events=faults.events,
        processes={
            child.name: {
                "exit_status": child.process.returncode,
                "dropped_at": child.dropped_at,
                "restarts": child.restarts,
            }
            for child in children
        },
    )
    demo_report.write_json(summary, workdir / "summary.json")
    if json_path is not None:
        demo_report.write_json(summary, json_path)
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
