"""Generate the Python modules of the gRPC contract, or check that they are fresh.

`make proto` runs this script. It compiles `proto/accord/v1/federation.proto` with
grpc_tools' bundled protoc into a temporary directory, rewrites the one absolute
import protoc emits in the `_pb2_grpc` module (`from accord.v1 import ...`) into a
relative one, and places the three modules in `proto/v1/`, where they import as
`accord.proto.v1.federation_pb2`. With `--check` it compares instead of writing and
exits 1 naming every stale file; `tests/test_proto_fresh.py` runs that check.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = ("accord/v1/federation.proto",)
OUTPUT_DIR = PROTO_ROOT / "v1"
ABSOLUTE_IMPORT = "from accord.v1 import "
RELATIVE_IMPORT = "from . import "


def generate() -> dict[str, str]:
    """Compile every contract file and return the generated modules.

    Returns:
        A mapping from file name (e.g. `federation_pb2.py`) to its text, with the
        `_pb2_grpc` import already made relative.

    Raises:
        RuntimeError: protoc failed (its own message went to stderr).
    """
    from grpc_tools import protoc  # imported here so `--help` works without grpc_tools

    include = Path(protoc.__file__).resolve().parent / "_proto"
    generated: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(PROTO_ROOT / name) for name in PROTO_FILES),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed; see its message above")
        for name in PROTO_FILES:
            stem = Path(name).stem
            out_dir = Path(tmp) / Path(name).parent
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
                text = (out_dir / f"{stem}{suffix}").read_text(encoding="utf-8")
                generated[f"{stem}{suffix}"] = text.replace(ABSOLUTE_IMPORT, RELATIVE_IMPORT)
    return generated


def stale_files(generated: dict[str, str]) -> list[str]:
    """Name each generated module whose committed copy differs from `generated`."""
    stale = []
    for name, text in sorted(generated.items()):
        path = OUTPUT_DIR / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path.relative_to(ROOT)))
    return stale


def main(argv: list[str] | None = None) -> int:
    """Write the generated modules, or with `--check` report stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed modules, write nothing"
    )
    options = parser.parse_args(argv)
    generated = generate()
    if options.check:
        stale = stale_files(generated)
        for path in stale:
            print(f"stale: {path} (run `make proto` and commit the result)", file=sys.stderr)
        return 1 if stale else 0
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in generated.items():
        (OUTPUT_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {(OUTPUT_DIR / name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
