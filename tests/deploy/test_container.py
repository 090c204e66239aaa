"""The container image, built for real, runs a secure round: a coordinator and two
participants as containers on the host network, with PostgreSQL as the store.

Slow (`make test-all`): it builds the offline base image if missing
(deploy/image/base-image.sh, debootstrap), the build context (deploy/image/
build-context.sh: wheels with torch's CPU wheel, the Go health client) and the image,
then provisions a federation for 127.0.0.1, mounts the coordinator's TLS folder and each
kit read-only (never in the image) and runs one ckks+masks round. Skipped, saying why,
where docker or debootstrap is missing; fails under ACCORD_REQUIRE_DEPLOY_TOOLS=1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

from . import federation as fed
from .tools import DEPLOY, require_program, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.postgres]

BASE_IMAGE = "local/bookworm-python:3.11"
IMAGE = "accord:deploy-test"
UID = 10001
DOCKER_FIX = (
    "apt-get install -y docker.io debootstrap, then as root: "
    "dockerd --bridge=none --iptables=false &"
)


def _docker(*arguments: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(arguments)}: {done.stderr}{done.stdout}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_program("docker", DOCKER_FIX)
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        unavailable(f"the docker daemon does not answer ({info.stderr.strip()[:200]})", DOCKER_FIX)
    if not _docker("images", "-q", BASE_IMAGE):
        require_program("debootstrap", DOCKER_FIX)
        subprocess.run([str(DEPLOY / "image/base-image.sh")], check=True, timeout=900)
    context = tmp_path_factory.mktemp("context")
    subprocess.run(
        [str(DEPLOY / "image/build-context.sh"), str(context), IMAGE],
        check=True,
        timeout=1800,
        env={**os.environ, "PYTHON": shutil.which("python") or "python3"},
    )
    return IMAGE


def test_the_image_runs_as_a_non_root_user_without_build_tools(image: str) -> None:
    assert _docker("run", "--rm", "--entrypoint", "id", image, "-u") == str(UID)
    found = _docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "for t in gcc cc g++ make pip pip3 go git; do command -v $t; done; true",
    )
    assert found == ""
    torch = _docker(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        image,
        "-c",
        "import torch; print(torch.__version__, torch.version.cuda)",
    )
    assert torch.endswith("+cpu None"), torch
    config = _docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", image)
    assert "accord-healthcheck" in config


@pytest.fixture
def containers() -> Iterator[list[str]]:
    started: list[str] = []
    yield started
    for name in started:
        _docker("rm", "-f", name, check=False)


def _wait(condition, timeout_s: float, what: str, log: str | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    tail = _docker("logs", "--tail", "40", log, check=False) if log else ""
    raise AssertionError(f"{what} within {timeout_s:g} s\n{tail}")


def test_a_coordinator_and_two_participant_containers_complete_a_secure_round(
    image: str, containers: list[str], tmp_path: Path, postgres_schema_url: str
) -> None:
    port = free_port()
    names = ("energy", "urban")
    provisioned = fed.provision(tmp_path / "fed", f"127.0.0.1:{port}", names)
    run_id = secrets.token_hex(3)
    coordinator_state = tmp_path / "coordinator-state"
    coordinator_state.mkdir()
    config = fed.coordinator_toml(
        tmp_path / "coordinator.toml",
        listen_host="127.0.0.1",
        port=port,
        state_dir="/var/lib/accord",
        tls_dir="/etc/accord/coordinator",
        roster="/etc/accord/coordinator/roster.json",
        rounds=1,
        threshold=2,
        store_url=postgres_schema_url,
    )
    shutil.chown(tmp_path, UID, UID)
    for path in [
        provisioned.coordinator_dir,
        coordinator_state,
        *provisioned.coordinator_dir.iterdir(),
    ]:
        os.chown(path, UID, UID)
    coordinator = f"accord-coordinator-{run_id}"
    containers.append(coordinator)
    _docker(
        "run", "-d", "--name", coordinator, "--network", "host",
        "--health-interval", "2s", "--health-start-period", "60s",
        "-e", f"ACCORD_HEALTH_ADDR=127.0.0.1:{port}",
        "-v", f"{provisioned.coordinator_dir}:/etc/accord/coordinator:ro",
        "-v", f"{config}:/etc/accord/coordinator.toml:ro",
        "-v", f"{coordinator_state}:/var/lib/accord",
        image, "coordinator", "serve", "--config", "/etc/accord/coordinator.toml",
    )  # fmt: skip

    def healthy() -> bool:
        status = _docker("inspect", "--format", "{{.State.Health.Status}}", coordinator)
        assert status != "unhealthy", _docker(
            "inspect", "--format", "{{json .State.Health}}", coordinator
        )
        return status == "healthy"

    _wait(healthy, 120, "the coordinator's HEALTHCHECK did not pass", coordinator)

    states: dict[str, Path] = {}
    for seed, name in enumerate(names, start=1):
        kit = provisioned.kits[name]
        for path in [kit, *kit.iterdir()]:
            os.chown(path, UID, UID)
        state = tmp_path / f"{name}-state"
        state.mkdir()
        os.chown(state, UID, UID)
        states[name] = state
        config = fed.participant_toml(
            tmp_path / f"{name}.toml",
            kit="/run/secrets/kit",
            state_dir="/var/lib/accord",
            seed=seed,
        )
        container = f"accord-{name}-{run_id}"
        containers.append(container)
        _docker(
            "run", "-d", "--name", container, "--network", "host",
            "-e", "ACCORD_HEALTH_KIT=/run/secrets/kit",
            "-v", f"{kit}:/run/secrets/kit:ro",
            "-v", f"{config}:/etc/accord/participant.toml:ro",
            "-v", f"{state}:/var/lib/accord",
            image, "participant", "run", "--config", "/etc/accord/participant.toml",
        )  # fmt: skip
    for name in names:
        container = f"accord-{name}-{run_id}"
        code = _docker("wait", container, timeout=600)
        assert code == "0", _docker("logs", "--tail", "60", container, check=False)
        assert fed.round_applied(states[name]) == 1
    assert (states["energy"] / "adapters").is_dir()
    log = (coordinator_state / "coordinator.log").read_text(encoding="utf-8")
    assert '"event": "round_finished"' in log and '"event": "federation_finished"' in log
