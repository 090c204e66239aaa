"""The committed `_pb2` modules are exactly what `make proto` generates today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_modules_match_a_fresh_generation() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generated_modules_import_as_accord_proto() -> None:
    from accord.proto.v1 import federation_pb2, federation_pb2_grpc

    assert federation_pb2.DESCRIPTOR.package == "accord.v1"
    assert hasattr(federation_pb2_grpc, "CoordinatorStub")
