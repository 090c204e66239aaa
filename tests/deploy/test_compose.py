"""deploy/compose: kits and TLS folders come in as secrets, the configurations are valid.

Checked statically (no compose plugin here, and no image can be pulled for PostgreSQL):
the file's structure, that no service builds an image or mounts a kit other than as a
secret, and that the example TOML files are configurations Accord accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib
import yaml

from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile
from accord.participant.config import ParticipantConfig

from .tools import DEPLOY

COMPOSE = DEPLOY / "compose"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE / "compose.yaml").read_text()))


def test_kits_and_tls_folders_are_secrets_never_in_the_image() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "coordinator", "participant"}
    for name in ("coordinator", "participant"):
        service = services[name]
        assert "build" not in service
        assert service["cap_drop"] == ["ALL"] and service["read_only"] is True
        for volume in service.get("volumes", []):
            assert "kit" not in volume and "secrets" not in volume, volume
    targets = {
        s["source"]: s["target"]
        for s in services["coordinator"]["secrets"] + services["participant"]["secrets"]
    }
    assert targets["kit"] == "/run/secrets/kit"
    assert targets["coordinator-tls"] == "/run/secrets/coordinator"
    assert compose["secrets"]["kit"] == {"file": "./secrets/kit"}
    assert services["coordinator"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["participant"]["environment"]["ACCORD_HEALTH_KIT"] == "/run/secrets/kit"


def test_the_example_configurations_are_valid(tmp_path: Path) -> None:
    coordinator = configfile.load(COMPOSE / "coordinator.toml", CoordinatorConfig, "coordinator")
    assert coordinator.store_url is not None and coordinator.store_url.startswith("postgresql://")
    assert str(coordinator.tls_dir) == "/run/secrets/coordinator"
    # Loading it would read the kit, which exists only in the container.
    table = tomllib.loads((COMPOSE / "participant.toml").read_text())["participant"]
    assert set(table) <= set(ParticipantConfig.model_fields)
    assert table["kit"] == "/run/secrets/kit"
    command = _compose()["services"]["coordinator"]["command"]
    assert command[-1] == "/run/secrets/coordinator.toml"
