"""A provisioned mTLS federation and its TOML files, for the deploy tests.

The files name paths as the process that reads them will see them (a container's mount
points, or this machine's folders for processes in network namespaces).
"""

from __future__ import annotations

import json
from pathlib import Path

from accord.federation.provision import (
    FederationFile,
    FederationSection,
    ParticipantSection,
    ProvisionedFederation,
    provision_federation,
)

FEDERATION = "deploy-test"


def provision(
    folder: Path, coordinator: str, names: tuple[str, ...], hosts: tuple[str, ...] = ()
) -> ProvisionedFederation:
    """`accord provision` for `coordinator` (host:port), profile ckks+masks."""
    return provision_federation(
        FederationFile(
            federation=FederationSection.model_validate(
                {
                    "id": FEDERATION,
                    "coordinator": coordinator,
                    "profile": "ckks+masks",
                    "hosts": list(hosts),
                }
            ),
            participants=tuple(ParticipantSection(name=name) for name in names),
        ),
        folder,
    )


def coordinator_toml(
    path: Path,
    *,
    listen_host: str,
    port: int,
    state_dir: str,
    tls_dir: str,
    roster: str,
    rounds: int,
    threshold: int,
    stage_deadline_s: float = 30.0,
    store_url: str | None = None,
) -> Path:
    lines = [
        "[coordinator]",
        f'federation_id = "{FEDERATION}"',
        f"listen_host = {json.dumps(listen_host)}",
        f"listen_port = {port}",
        f"state_dir = {json.dumps(state_dir)}",
        'profile = "ckks+masks"',
        f"tls_dir = {json.dumps(tls_dir)}",
        f"roster = {json.dumps(roster)}",
        f"threshold = {threshold}",
        f"rounds = {rounds}",
        f"stage_deadline_s = {stage_deadline_s}",
        "enroll_deadline_s = 120.0",
        "heartbeat_interval_s = 1.0",
        "aggregation_workers = 0",
    ]
    if store_url is not None:
        lines.append(f"store_url = {json.dumps(store_url)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def participant_toml(path: Path, *, kit: str, state_dir: str, seed: int) -> Path:
    lines = [
        "[participant]",
        f"kit = {json.dumps(kit)}",
        f"state_dir = {json.dumps(state_dir)}",
        f"seed = {seed}",
        'trainer = "accord.demo.lora_mlp:LoraMlpTrainer"',
        "poll_s = 2.0",
        "connect_timeout_s = 60.0",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def round_applied(state_dir: Path) -> int:
    """The last round whose global adapter the participant saved (0: none yet)."""
    try:
        state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(state.get("round_applied", 0))
