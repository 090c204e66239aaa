"""What the deploy tests need from the machine, or a loud skip that names it and the fix.

A missing tool skips the test with the reason and the install command (shown by
``pytest -ra``). With ``ACCORD_REQUIRE_DEPLOY_TOOLS=1`` (``.ci/run`` sets it after
installing them) a missing tool fails the test instead, so CI never mistakes a broken
install for a pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

ENV_REQUIRE = "ACCORD_REQUIRE_DEPLOY_TOOLS"
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
GOCODE = Path("/usr/share/gocode")


def unavailable(reason: str, fix: str) -> NoReturn:
    """Skip (or, under ``ACCORD_REQUIRE_DEPLOY_TOOLS=1``, fail) naming what and how to fix."""
    message = f"{reason}; fix: {fix}"
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{ENV_REQUIRE}=1 but {message}", pytrace=False)
    pytest.skip(message)


def require_program(name: str, fix: str) -> str:
    """The path of `name` on PATH, or a loud skip."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"`{name}` is not installed", fix)
    return found


GO_FIX = "apt-get install -y --no-install-recommends golang-go golang-google-grpc-dev"


def build_go_health(out: Path) -> Path:
    """Build deploy/healthcheck (the Go grpc.health.v1 client) against Debian's Go libraries."""
    go = require_program("go", GO_FIX)
    if not (GOCODE / "src/google.golang.org/grpc/health/grpc_health_v1").is_dir():
        unavailable(f"Go's gRPC library is not under {GOCODE}", GO_FIX)
    binary = out / "accord-health"
    env = {**os.environ, "GOPATH": str(GOCODE), "GO111MODULE": "off", "GOFLAGS": ""}
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=DEPLOY / "healthcheck",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    return binary


HELM_FIX = (
    "apt-get install -y --no-install-recommends golang-go golang-github-masterminds-sprig-dev "
    "golang-gopkg-yaml.v3-dev"
)


def build_helmrender(out: Path) -> Path:
    """Build tests/deploy/helmrender (a `helm template` stand-in) from Debian's Go libraries."""
    go = require_program("go", HELM_FIX)
    for library in ("github.com/Masterminds/sprig", "gopkg.in/yaml.v3"):
        if not (GOCODE / "src" / library).is_dir():
            unavailable(f"the Go library {library} is not under {GOCODE}", HELM_FIX)
    binary = out / "helmrender"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=Path(__file__).parent / "helmrender",
        env={**os.environ, "GOPATH": str(GOCODE), "GO111MODULE": "off", "GOFLAGS": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    return binary
