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
(`participant/multimodal_trainer.py`: the bundled MiniLM + EfficientNet-Lite0 towers,
frozen, with a fusion head trained by FFA-LoRA's rules) on the synthetic city-safety
benchmark (`participant/benchmarks.py`), enterprise i of N going to participant i, so
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
(`accord.demo_faults`); the summary records each event, and per round who was
selected, who survived and who dropped.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from accord.crypto.profile import Profile
from accord.demo_faults import FaultPlan, Faults, plan
from accord.errors import RoundAborted, UsageError

if TYPE_CHECKING:
    import grpc

    from accord.provision import ProvisionedFederation

DEMO_FEDERATION = "accord-demo"
"""The demo federation's id."""

DEMO_NAMES = ("energy", "residential", "urban")
"""The three enterprises of the paper's city-safety case study; then p4, p5, ..."""


class DemoTrainer(str, enum.Enum):
    """What the demo's participants train (`--trainer`)."""

    MULTIMODAL = "multimodal"
    LORA_MLP = "lora-mlp"


DEMO_TRAINING: dict[str, object] = {"local_steps": 10, "batch_size": 128, "learning_rate": 0.05}
"""The multimodal trainer's demo profile: 10 AdamW steps of (expected) batch 128 per round.

Its updates measure delta_l2 of about 25 with DP-SGD and 28-33 without (16,650 head
parameters), below `DEMO_CLIP_NORM`, so clipping leaves them whole (docs/ml.md).
"""

DEMO_CLIP_NORM = {"multimodal": 40.0, "lora-mlp": 1.0, "synthetic": 1.0}
"""The coordinator's clip_norm for each trainer: just above its updates' L2 norm."""

DEMO_DP_DELTA = 1e-5
"""The delta at which the demo's sample-level epsilon is targeted and reported."""

DEMO_CLIENT_NOISE = 0.01
"""The demo's client-level noise multiplier (`[coordinator.client_dp]`, secure profiles).

With three participants the aggregate's noise, z * clip_norm per coordinate, cannot be
both meaningful and harmless: z = 0.01 leaves the multimodal demo's pooled accuracy
where it is without noise (0.85-0.87 after 5 rounds; z = 0.02 costs about 8 points),
and `accord audit budget` reports the honest client-level epsilon of that, in the
thousands. Client-level DP pays off with hundreds of participants (docs/audit.md)."""

SLOW_START_ENROLL_DEADLINE_S = 300.0
"""How long round 1 waits for every multimodal participant: each first loads the towers
and caches their features (tens of seconds per participant on a busy 2-core machine)."""

DATA_DIR = "data"
FEATURES_DIR = "features"
BENCHMARK_FILE = "benchmark.json"

MARKER = ".accord-demo"
"""A work folder holding this file may be wiped by the next demo run."""

START_TIMEOUT_S = 60.0
POLL_S = 0.25
STOP_GRACE_S = 10.0


def participant_names(count: int) -> list[str]:
    """`energy`, `residential`, `urban`, then `p4`, `p5`, ... for larger federations."""
    return [DEMO_NAMES[i] if i < len(DEMO_NAMES) else f"p{i + 1}" for i in range(count)]


@dataclass
class Child:
    """One started process, where its output goes, and what happened to it.

    `restart_child` replaces `process` in place, so every holder sees the new one.
    """

    name: str
    process: subprocess.Popen[bytes]
    output: Path
    arguments: tuple[str, ...] = ()
    folder: Path | None = None
    dropped_at: str | None = None
    """The stage at which it dropped out on purpose (`--drop`), once it did."""
    restarts: int = 0

    def tail(self, lines: int = 15) -> str:
        """The last lines of its output, for error messages."""
        try:
            text = self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


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
    from accord import demo_report

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
    provisioned: ProvisionedFederation | None = None
    if not insecure_plaintext:
        provisioned = provision_demo(workdir, names, profile, port=port)
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
        client_noise=client_noise if bench_parameters is None else 0.0,
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
            dropped_at = fault_plan.drops.get(name)
            config = write_participant_config(
                workdir,
                name,
                address,
                seed=seed,
                index=index,
                kit=kit,
                exit_before_stage=dropped_at.value if dropped_at is not None else None,
                synthetic_parameters=bench_parameters,
                trainer=trainer_name,
                data=data,
                privacy=private if multimodal and not no_dp else None,
            )
            children.append(
                start_child(
                    name,
                    ["accord.participant", "run", "--config", str(config)],
                    config.parent,
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
    typer.echo(
        "\nEvery participant and the coordinator kept a signed privacy ledger; audit them:\n"
        f"  accord audit verify {workdir}\n"
        f"  accord audit budget --ledger {workdir} --plot {workdir / 'epsilon.png'}\n"
        f"  accord audit contributions --ledger {workdir}"
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


@dataclass(frozen=True)
class DemoPrivacy:
    """The demo participants' sample-level DP: `target_epsilon` over `rounds` rounds."""

    target_epsilon: float
    rounds: int


@dataclass(frozen=True)
class DemoData:
    """Where `write_demo_data` put each participant's data and the shared test set."""

    folders: dict[str, Path]
    pooled_test: Path
    feature_cache: Path


def write_demo_data(workdir: Path, names: Sequence[str], *, seed: int) -> DemoData:
    """Write the city-safety benchmark for `names`: enterprise i's data to participant i.

    `DIR/data/<name>/` holds that participant's train and test splits, `DIR/data/
    pooled-test/` every test split (the shared evaluation set), and `benchmark.json`
    each participant's enterprise (domain) and label counts.
    """
    from accord.participant import benchmarks, datasets

    bench = benchmarks.city_safety_benchmark(len(names), seed=seed)
    root = workdir / DATA_DIR
    folders: dict[str, Path] = {}
    described: dict[str, object] = {}
    for name, enterprise in zip(names, bench.enterprises, strict=True):
        folders[name] = root / name
        datasets.write_dataset(enterprise.train + enterprise.test, folders[name], bench.labels)
        described[name] = {
            "enterprise": enterprise.name,
            "train": len(enterprise.train),
            "test": len(enterprise.test),
            "train_labels": dict(
                zip(
                    bench.labels,
                    benchmarks.label_counts(enterprise.train, bench.labels),
                    strict=True,
                )
            ),
        }
    pooled = root / benchmarks.POOLED_TEST
    datasets.write_dataset(bench.pooled_test, pooled, bench.labels)
    (root / BENCHMARK_FILE).write_text(
        json.dumps(
            {
                "benchmark": bench.name,
                "settings": bench.settings,
                "labels": list(bench.labels),
                "pooled_test": len(bench.pooled_test),
                "participants": described,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return DemoData(folders=folders, pooled_test=pooled, feature_cache=workdir / FEATURES_DIR)


def default_threshold(participants: int) -> int:
    """Two thirds of the participants, rounded up, and at least 2."""
    return max(2, (2 * participants + 2) // 3)


def check_threshold(threshold: int | None, participants: int) -> int:
    """`--threshold`, or its default.

    Raises:
        UsageError: below 2 or above the number of participants.
    """
    if threshold is None:
        return default_threshold(participants)
    if not 2 <= threshold <= participants:
        raise UsageError(
            f"--threshold {threshold}: must be from 2 to the {participants} participants "
            "(least number of participants whose inputs a round sums)"
        )
    return threshold


def prepare_workdir(workdir: Path) -> None:
    """Create the work folder, or clear the one a previous demo left.

    Raises:
        UsageError: the folder is not empty and no demo made it.
    """
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise UsageError(
            f"--workdir {workdir}: not empty and not made by `accord demo`; choose another folder"
        )
    for part in (
        "provision",
        "coordinator",
        "participants",
        DATA_DIR,
        FEATURES_DIR,
        "summary.json",
    ):
        target = workdir / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by `accord demo`; the next run may clear this folder\n")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def provision_demo(
    workdir: Path, names: Sequence[str], profile: Profile, *, port: int
) -> ProvisionedFederation:
    """Provision the demo federation in `DIR/provision`; move each kit to its participant.

    The same request, approve and package steps as `accord provision`, with the
    coordinator at `127.0.0.1:<port>`. Each kit ends in `DIR/participants/<name>/kit`,
    so that a participant's folder holds everything its process reads.
    """
    from accord.provision import (
        FederationFile,
        FederationSection,
        ParticipantSection,
        provision_federation,
    )

    federation = FederationFile(
        federation=FederationSection.model_validate(
            {"id": DEMO_FEDERATION, "coordinator": f"127.0.0.1:{port}", "profile": profile}
        ),
        participants=tuple(ParticipantSection(name=name) for name in names),
    )
    provisioned = provision_federation(federation, workdir / "provision")
    kits: dict[str, Path] = {}
    for name, made in provisioned.kits.items():
        kit = workdir / "participants" / name / "kit"
        kit.parent.mkdir(parents=True, exist_ok=True)
        os.replace(made, kit)
        kits[name] = kit
    (provisioned.root / "kits").rmdir()
    return dataclasses.replace(provisioned, kits=kits)


def write_coordinator_config(
    workdir: Path,
    names: Sequence[str],
    profile: Profile,
    rounds: int,
    *,
    provisioned: ProvisionedFederation | None = None,
    threshold: int | None = None,
    stage_deadline_s: float | None = None,
    enroll_deadline_s: float | None = None,
    store_url: str | None = None,
    port: int = 0,
    clip_norm: float | None = None,
    client_noise: float = DEMO_CLIENT_NOISE,
) -> Path:
    """Write the coordinator's TOML file.

    With `provisioned`, it serves mTLS on the port in the kits, from the provisioned
    TLS files and roster. Without (`--insecure-plaintext`), it serves plaintext on `port`
    (0: a free one), and this makes each participant's identity key and lists the
    public keys. Unset settings keep the demo's defaults (`threshold`) or the
    coordinator's (`stage_deadline_s`, `enroll_deadline_s`, `store_url`, `clip_norm`).
    `client_noise` is the client-level noise multiplier (`DEMO_CLIENT_NOISE`; 0: off, and
    always off with profile none).
    """
    from accord import configfile
    from accord.coordinator.config import CoordinatorConfig

    folder = workdir / "coordinator"
    folder.mkdir(parents=True, exist_ok=True)
    table: dict[str, object] = {
        "federation_id": DEMO_FEDERATION,
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "state_dir": ".",
        "profile": profile.value,
        "participants": list(names),
        "threshold": threshold if threshold is not None else default_threshold(len(names)),
        "rounds": rounds,
    }
    if stage_deadline_s is not None:
        table["stage_deadline_s"] = stage_deadline_s
    if enroll_deadline_s is not None:
        table["enroll_deadline_s"] = enroll_deadline_s
    if store_url is not None:
        table["store_url"] = store_url
    if clip_norm is not None:
        table["clip_norm"] = clip_norm
    if client_noise > 0 and profile is not Profile.NONE:
        # Client-level DP of the aggregate; plaintext has nothing to hide the shares in.
        table["client_dp"] = {"noise_multiplier": client_noise, "delta": DEMO_DP_DELTA}
    if provisioned is None:
        table["identity_keys"] = _make_identity_keys(workdir, names)
        table["insecure_plaintext"] = True
    else:
        from accord.coordinator.provision import split_address

        kit = provisioned.kits[names[0]]
        table["listen_port"] = split_address(_kit_coordinator(kit))[1]
        table["tls_dir"] = str(provisioned.coordinator_dir)
        table["roster"] = str(provisioned.roster_path)
    config = configfile.validate(table, CoordinatorConfig, "coordinator", base_dir=folder)
    path = folder / "coordinator.toml"
    path.write_text(configfile.dumps(config, "coordinator", relative_to=folder), encoding="utf-8")
    return path


def write_participant_config(
    workdir: Path,
    name: str,
    coordinator: str,
    *,
    seed: int,
    index: int,
    kit: Path | None = None,
    exit_before_stage: str | None = None,
    synthetic_parameters: int | None = None,
    trainer: str = DemoTrainer.MULTIMODAL.value,
    data: DemoData | None = None,
    privacy: DemoPrivacy | None = None,
) -> Path:
    """Write one participant's TOML file next to its kit (or, without one, its identity key).

    `exit_before_stage` (`--drop`) makes the daemon die before it sends that stage's
    message in round 1. `synthetic_parameters` (`--bench-parameters`) selects the
    benchmark-only synthetic trainer with an adapter of that size; otherwise `trainer`
    names it. The multimodal trainer gets the demo profile (`DEMO_TRAINING`, one torch
    thread per process), its folder of `data` with the shared test set and feature
    cache, and with `privacy` sample-level DP-SGD.
    """
    from accord import configfile
    from accord.participant.config import ParticipantConfig

    folder = workdir / "participants" / name
    table: dict[str, object] = {
        "coordinator": coordinator,
        "state_dir": ".",
        "seed": seed * 1000 + index + 1,
        "model_seed": seed,
    }
    if exit_before_stage is not None:
        table["exit_before_stage"] = exit_before_stage
        table["exit_in_round"] = 1
    if synthetic_parameters is not None:
        table["trainer"] = "synthetic"
        table["synthetic_parameters"] = synthetic_parameters
    elif trainer != DemoTrainer.MULTIMODAL.value:
        table["trainer"] = trainer
    else:
        table["trainer"] = trainer
        table.update(DEMO_TRAINING)
        # Several participants share the machine: one thread each, or they thrash.
        training: dict[str, object] = {"torch_threads": 1}
        if data is not None:
            table["data_dir"] = str(data.folders[name])
            training["eval_data_dir"] = str(data.pooled_test)
            training["feature_cache_dir"] = str(data.feature_cache)
        table["training"] = training
        if privacy is not None:
            table["dp"] = {
                "enabled": True,
                "target_epsilon": privacy.target_epsilon,
                "delta": DEMO_DP_DELTA,
                "rounds": privacy.rounds,
                "accountant": "rdp",
            }
    if kit is None:
        table.update(
            name=name,
            federation_id=DEMO_FEDERATION,
            identity_key="identity.pem",
            insecure_plaintext=True,
        )
    else:
        table["kit"] = str(kit)
    config = configfile.validate(table, ParticipantConfig, "participant", base_dir=folder)
    path = folder / "participant.toml"
    path.write_text(configfile.dumps(config, "participant", relative_to=folder), encoding="utf-8")
    return path


def _make_identity_keys(workdir: Path, names: Sequence[str]) -> dict[str, str]:
    """Without provisioning: each participant's identity key, and the public keys in hex."""
    from accord.crypto import identity

    keys: dict[str, str] = {}
    for name in names:
        folder = workdir / "participants" / name
        folder.mkdir(parents=True, exist_ok=True)
        pair = identity.generate_identity()
        key_file = folder / "identity.pem"
        key_file.write_bytes(identity.dump_private(pair.private))
        key_file.chmod(0o600)
        keys[name] = pair.public.hex()
    return keys


def _kit_coordinator(kit: Path) -> str:
    from accord.participant.kit import KitManifest

    return KitManifest.read(kit).coordinator


def _watch_credentials(provisioned: ProvisionedFederation | None) -> grpc.ChannelCredentials | None:
    """mTLS credentials for the launcher's `GetStatus` calls: the first participant's kit.

    `GetStatus` claims no participant id, so any certificate of the federation may ask.
    """
    if provisioned is None:
        return None
    from accord.participant.kit import Kit, channel_credentials

    return channel_credentials(Kit.load(next(iter(provisioned.kits.values()))))


def start_child(name: str, arguments: Sequence[str], folder: Path) -> Child:
    """Start `python -m <arguments>` with its output in `folder/output.log`."""
    output = folder / "output.log"
    process = _spawn(arguments, folder, output, mode="wb")
    return Child(name, process, output, arguments=tuple(arguments), folder=folder)


def restart_child(child: Child) -> None:
    """Kill `child` with SIGKILL, as a crash would, and start it again with the same arguments.

    Its output goes on in the same `output.log`. A coordinator's port file is removed
    first and awaited again, so that this returns once the new process serves.

    Raises:
        RoundAborted: a restarted coordinator exited or did not start in time.
    """
    assert child.folder is not None, "only children of `start_child` restart"
    child.process.kill()
    child.process.wait()
    port_file = child.folder / "port"
    is_coordinator = child.name == "coordinator"
    if is_coordinator:
        port_file.unlink(missing_ok=True)
    with child.output.open("ab") as sink:
        sink.write(b"\n--- killed with SIGKILL and started again by accord demo ---\n")
    child.process = _spawn(child.arguments, child.folder, child.output, mode="ab")
    child.restarts += 1
    if is_coordinator:
        wait_for_port(port_file, child)


def round_applied(folder: Path) -> int:
    """The last round whose global adapter the participant in `folder` saved (0: none)."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(state.get("round_applied", 0))


def _spawn(
    arguments: Sequence[str], folder: Path, output: Path, *, mode: str
) -> subprocess.Popen[bytes]:
    with output.open(mode) as sink:
        return subprocess.Popen(
            [sys.executable, "-m", *arguments],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def wait_for_port(port_file: Path, coordinator: Child) -> int:
    """The port the coordinator bound, once it wrote it.

    Raises:
        RoundAborted: the coordinator exited or did not start in time.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text().strip())
        if coordinator.process.poll() is not None:
            raise RoundAborted(
                f"the coordinator exited with status {coordinator.process.returncode}:\n"
                f"{coordinator.tail()}"
            )
        time.sleep(0.05)
    raise RoundAborted(f"the coordinator did not start within {START_TIMEOUT_S:g} s")


def stop_children(children: Sequence[Child]) -> None:
    """SIGTERM every child still running, then SIGKILL what outlives the grace period."""
    running = [c for c in children if c.process.poll() is None]
    for child in running:
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in running:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
