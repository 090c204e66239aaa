"""What `accord demo` writes before any process starts: its folder, data, kits and configs.

`prepare_workdir` clears what a previous demo left, `provision_demo` provisions the
federation for a loopback port chosen first (`free_port`), and one TOML file is written
per role (`write_coordinator_config`, `write_participant_config`); the multimodal
trainer's data is written by `accord.demo.data`. The layout of the work folder is in
`accord.demo.command`'s docstring.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.core.kitformat import TERMS_FILE, split_address
from accord.crypto.profile import Profile
from accord.demo.data import DATA_DIR, FEATURES_DIR, DemoData
from accord.errors import UsageError

if TYPE_CHECKING:
    from accord.federation.provision import ProvisionedFederation

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

DEMO_TRAINER_PATHS = {
    "lora-mlp": "accord.demo.lora_mlp:LoraMlpTrainer",
    "synthetic": "accord.demo.synthetic_trainer:SyntheticTrainer",
}
"""The import path each demo trainer but multimodal goes by in a participant's `trainer`."""

DEMO_CLIP_NORM = {"multimodal": 40.0, "lora-mlp": 1.0, "synthetic": 1.0}
"""The coordinator's clip_norm for each trainer: just above its updates' L2 norm."""

DEMO_DP_DELTA = 1e-5
"""The delta at which the demo's sample-level epsilon is targeted and reported."""

DEMO_CLIENT_NOISE = 0.0
"""The demo's client-level noise multiplier (`[coordinator.client_dp]`): off by default.

With three participants the aggregate's noise, z * clip_norm per coordinate, cannot be
both meaningful and harmless: z = 0.01 moves the final head by about 50% relative L2 and
buys a client-level epsilon in the thousands; epsilon 8 would need z about 1.4, which
drowns three updates. `accord demo --client-noise Z` turns it on (secure profiles); the
demo's summary and `accord audit budget` then print its epsilon beside the record-level
one. Client-level DP pays off with hundreds of participants (docs/audit.md)."""

MARKER = ".accord-demo"
"""A work folder holding this file may be wiped by the next demo run."""


def participant_names(count: int) -> list[str]:
    """`energy`, `residential`, `urban`, then `p4`, `p5`, ... for larger federations."""
    return [DEMO_NAMES[i] if i < len(DEMO_NAMES) else f"p{i + 1}" for i in range(count)]


@dataclass(frozen=True)
class DemoPrivacy:
    """The demo participants' sample-level DP: `target_epsilon` over `rounds` rounds."""

    target_epsilon: float
    rounds: int


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
    least = max(2, participants // 2 + 1)
    if not least <= threshold <= participants:
        raise UsageError(
            f"--threshold {threshold}: must be from {least} to the {participants} participants "
            "(least number of participants whose inputs a round sums; the signed terms "
            "need more than half, docs/security.md)"
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
    workdir: Path,
    names: Sequence[str],
    profile: Profile,
    *,
    port: int,
    terms: dict[str, object] | None = None,
) -> ProvisionedFederation:
    """Provision the demo federation in `DIR/provision`; move each kit to its participant.

    The same request, approve and package steps as `accord provision`, with the
    coordinator at `127.0.0.1:<port>`, and `terms` (`demo_terms`) as the federation
    file's `[terms]` table: the CA signs them into every kit and the coordinator's folder.
    Each kit ends in `DIR/participants/<name>/kit`, so that a participant's folder holds
    everything its process reads.
    """
    from accord.federation.provision import (
        FederationFile,
        FederationSection,
        ParticipantSection,
        TermsSection,
        provision_federation,
    )

    federation = FederationFile(
        federation=FederationSection.model_validate(
            {"id": DEMO_FEDERATION, "coordinator": f"127.0.0.1:{port}", "profile": profile}
        ),
        participants=tuple(ParticipantSection(name=name) for name in names),
        terms=TermsSection.model_validate(terms) if terms is not None else None,
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


def demo_terms(
    workdir: Path,
    profile: Profile,
    *,
    rounds: int,
    threshold: int,
    clip_norm: float,
    client_noise: float,
    participant_table: dict[str, object],
) -> dict[str, object]:
    """The `[terms]` table the demo's CA signs: the coordinator's settings as
    `write_coordinator_config` writes them, and the model `participant_table` trains.

    Describing the model builds it once in this process (seconds; no data is read).
    """
    from accord.coordinator.config import CoordinatorConfig
    from accord.core import configfile
    from accord.participant.config import ParticipantConfig
    from accord.participant.terms import describe_model

    folder = workdir / "participants" / ".describe"
    folder.mkdir(parents=True, exist_ok=True)
    described = {
        **participant_table,
        "name": "describe",
        "federation_id": DEMO_FEDERATION,
        "identity_key": "identity.pem",
        "insecure_plaintext": True,
    }
    described.pop("kit", None)
    settings = configfile.validate(described, ParticipantConfig, "participant", base_dir=folder)
    model_hash, parameters = describe_model(settings)
    folder.rmdir()
    defaults = CoordinatorConfig.model_fields
    terms: dict[str, object] = {
        "threshold": threshold,
        "min_cohort": threshold,
        "modulus_bits": defaults["modulus_bits"].default,
        "clip_norm": clip_norm,
        "base_model_hash": model_hash,
        "adapter_parameters": parameters,
        "rounds": rounds,
    }
    if client_noise > 0 and profile is not Profile.NONE:
        terms["noise_multiplier"] = client_noise
        terms["client_delta"] = DEMO_DP_DELTA
    return terms


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
    from accord.coordinator.config import CoordinatorConfig
    from accord.core import configfile

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
    table.update(_transport_entries(workdir, names, provisioned))
    config = configfile.validate(table, CoordinatorConfig, "coordinator", base_dir=folder)
    path = folder / "coordinator.toml"
    path.write_text(configfile.dumps(config, "coordinator", relative_to=folder), encoding="utf-8")
    return path


def write_participant_config(workdir: Path, name: str, coordinator: str, **settings: Any) -> Path:
    """Write one participant's TOML file next to its kit (or, without one, its identity key).

    `settings` are `participant_table`'s keyword arguments.
    """
    from accord.core import configfile
    from accord.participant.config import ParticipantConfig

    folder = workdir / "participants" / name
    table = participant_table(name, coordinator, **settings)
    config = configfile.validate(table, ParticipantConfig, "participant", base_dir=folder)
    path = folder / "participant.toml"
    path.write_text(configfile.dumps(config, "participant", relative_to=folder), encoding="utf-8")
    return path


def participant_table(
    name: str,
    coordinator: str,
    *,
    seed: int,
    index: int,
    kit: Path | None = None,
    synthetic_parameters: int | None = None,
    trainer: str = DemoTrainer.MULTIMODAL.value,
    data: DemoData | None = None,
    privacy: DemoPrivacy | None = None,
    rounds: int | None = None,
) -> dict[str, object]:
    """One participant's `[participant]` table (`write_participant_config` writes it).

    `synthetic_parameters` (`--bench-parameters`) selects the benchmark-only synthetic
    trainer with an adapter of that size; otherwise `trainer` names it (by its import path
    in `DEMO_TRAINER_PATHS`, but multimodal). The multimodal trainer gets the demo profile
    (`DEMO_TRAINING`, one torch thread per process), its folder of `data` with the shared
    test set and feature cache, with `privacy` sample-level DP-SGD, and with `rounds` (the
    federation's) a personal model fine-tuned in the last round for as many local steps as
    the local-only baseline takes in all of them.
    """
    table: dict[str, object] = {
        "coordinator": coordinator,
        "state_dir": ".",
        "seed": seed * 1000 + index + 1,
        "model_seed": seed,
    }
    if synthetic_parameters is not None:
        table["trainer"] = DEMO_TRAINER_PATHS["synthetic"]
        table["synthetic_parameters"] = synthetic_parameters
    elif trainer != DemoTrainer.MULTIMODAL.value:
        table["trainer"] = DEMO_TRAINER_PATHS[trainer]
    else:
        table["trainer"] = trainer
        table.update(DEMO_TRAINING)
        # Several participants share the machine: one thread each, or they thrash.
        # The local-only baseline exists for the demo's comparison only (off elsewhere);
        # its DP steps are counted in each participant's ledger.
        training: dict[str, object] = {"torch_threads": 1, "report_local_only": True}
        if rounds is not None:
            training.update(personalize_round=rounds, personal_rounds=rounds)
        if data is not None:
            table["data_dir"] = str(data.folders[name])
            training["eval_data_dir"] = str(data.pooled_test)
            training["feature_cache_dir"] = str(data.feature_cache)
        table["training"] = training
        if privacy is not None:
            table["dp"] = _dp_table(privacy)
    table.update(_identity_entries(name, kit))
    return table


def _dp_table(privacy: DemoPrivacy) -> dict[str, object]:
    """The `[participant.dp]` table: sample-level DP-SGD to `privacy`'s target (RDP)."""
    return {
        "enabled": True,
        "target_epsilon": privacy.target_epsilon,
        "delta": DEMO_DP_DELTA,
        "rounds": privacy.rounds,
        "accountant": "rdp",
    }


def _identity_entries(name: str, kit: Path | None) -> dict[str, object]:
    """The startup kit's path, or without one the plaintext identity the demo made."""
    if kit is None:
        return {
            "name": name,
            "federation_id": DEMO_FEDERATION,
            "identity_key": "identity.pem",
            "insecure_plaintext": True,
        }
    return {"kit": str(kit)}


def _transport_entries(
    workdir: Path, names: Sequence[str], provisioned: ProvisionedFederation | None
) -> dict[str, object]:
    """mTLS from the provisioned files on the kits' port, or plaintext with made keys."""
    if provisioned is None:
        return {"identity_keys": _make_identity_keys(workdir, names), "insecure_plaintext": True}
    kit = provisioned.kits[names[0]]
    entries: dict[str, object] = {
        "listen_port": split_address(_kit_coordinator(kit))[1],
        "tls_dir": str(provisioned.coordinator_dir),
        "roster": str(provisioned.roster_path),
    }
    terms = provisioned.coordinator_dir / TERMS_FILE
    if terms.exists():
        entries["terms"] = str(terms)
    return entries


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
    from accord.participant.kit.startup_kit import KitManifest

    return KitManifest.read(kit).coordinator
