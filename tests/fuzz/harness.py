"""Coverage-guided fuzzing (atheris, libFuzzer) of the decoders that read a peer's bytes.

    python tests/fuzz/harness.py chunk|envelope|ceremony [libFuzzer flags] [CORPUS_DIR ...]

e.g. `-runs=20000 -seed=1` for a bounded run (CI: `tests/fuzz/test_harnesses.py`), or
`-max_total_time=600 corpus/` to hunt. Without a corpus folder it starts from the valid
inputs of `targets.seeds`. A crash is any exception other than the typed errors the
target's decoder documents (`targets.py`); libFuzzer prints it and writes the input to
`crash-*`, which `python tests/fuzz/harness.py TARGET crash-...` replays.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["accord"]):
    from tests.fuzz import targets


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in targets.TARGETS:
        raise SystemExit(f"usage: {argv[0]} {'|'.join(targets.TARGETS)} [libFuzzer flags]")
    name, flags = argv[1], argv[2:]
    target = targets.TARGETS[name]
    if not any(not flag.startswith("-") for flag in flags):
        corpus = Path(tempfile.mkdtemp(prefix=f"accord-fuzz-{name}-"))
        for index, seed in enumerate(targets.seeds(name)):
            (corpus / f"seed-{index}").write_bytes(seed)
        flags = [*flags, str(corpus)]
    atheris.Setup([argv[0], *flags], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
