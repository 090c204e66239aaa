"""`accord participant check-data DATA_DIR`: find the samples that would hurt training.

Checks, each flag naming the sample (id and manifest line), the check and a score:

    structural (no model needed)
      manifest          a line the manifest validation rejects: missing or unreadable
                        image, empty text, unknown label, bad JSON, ... (datasets.py)
      exact_duplicate   same image bytes and same text as an earlier sample
      near_duplicate    joint embedding within `near_duplicate_cosine` of an earlier
                        sample's (the model's tower features when a model is given,
                        otherwise a cheap built-in embedding: an 8x8 grey thumbnail and
                        hashed character trigrams of the text)
    with the current global model (pass `model`)
      label_contradiction  the model gives the sample's own label probability below
                        `contradiction_probability` and another label at least
                        `confident_probability` (a likely mislabelled sample)
      modality_mismatch the report alone and the frame alone each point confidently
                        (>= `confident_probability`) at different labels: a pair whose
                        text and image disagree

`check_data` returns a `Report`; `Report.write_jsonl` writes the flagged samples (one
JSON object per flag), the file `[participant.data_quality] exclude_flagged = true`
reads to drop them from training. `check_data_command` is the typer command the CLI
mounts as `accord participant check-data`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import typer

from accord.participant.data import folder as datasets

FLAGGED_FILE = "flagged.jsonl"
TRIGRAM_DIM = 512
THUMBNAIL = 8


class QualityModel(Protocol):
    """What the model-based checks need (`MultimodalTrainer` provides it)."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def embed(self, records: Sequence[datasets.Record]) -> npt.NDArray[np.float32]:
        """Unit-length joint embeddings, (len(records), dim)."""
        ...

    def label_probabilities(
        self, records: Sequence[datasets.Record]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Label probabilities from both modalities, the text alone, the image alone."""
        ...


@dataclass(frozen=True)
class Flag:
    """One finding about one sample."""

    id: str
    line: int
    check: str
    detail: str
    score: float = 1.0


@dataclass
class Report:
    """What `check_data` found in one data folder."""

    data_dir: Path
    samples: int
    flags: list[Flag] = field(default_factory=list)
    model_checked: bool = False

    def flagged_ids(self, checks: Sequence[str] | None = None) -> set[str]:
        """Ids flagged by any of `checks` (all checks when None)."""
        return {f.id for f in self.flags if checks is None or f.check in checks}

    def counts(self) -> dict[str, int]:
        """Flags per check."""
        return dict(Counter(f.check for f in self.flags))

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"{self.data_dir}: {self.samples} samples, {len(self.flagged_ids())} flagged"
            + ("" if self.model_checked else " (structural checks only; no model given)")
        ]
        for check, count in sorted(self.counts().items()):
            lines.append(f"  {check:<20} {count}")
        for flag in self.flags[:10]:
            lines.append(f"  line {flag.line} ({flag.id}): {flag.check}: {flag.detail}")
        if len(self.flags) > 10:
            lines.append(f"  ... {len(self.flags) - 10} more in the JSONL file")
        return "\n".join(lines)

    def write_jsonl(self, path: Path) -> Path:
        """Write one JSON object per flag (atomically); return the path."""
        staging = path.with_name(path.name + ".tmp")
        staging.write_text(
            "".join(json.dumps(asdict(flag)) + "\n" for flag in self.flags), encoding="utf-8"
        )
        staging.replace(path)
        return path


def check_data(
    data_dir: Path,
    model: QualityModel | None = None,
    *,
    labels: Sequence[str] | None = None,
    near_duplicate_cosine: float = 0.995,
    contradiction_probability: float = 0.3,
    confident_probability: float = 0.4,
) -> Report:
    """Run every check on a data folder (see the module docstring).

    Args:
        data_dir: a folder in the manifest layout.
        model: the current global model for the model-based checks; None skips them.
        labels: the label names; None reads labels.json (or the model's labels).
        near_duplicate_cosine: cosine similarity from which two samples are near duplicates.
        contradiction_probability: own-label probability below which a label is contradicted.
        confident_probability: what counts as a confident prediction.

    Raises:
        ConfigError: the folder has no manifest.
    """
    data_dir = Path(data_dir)
    if labels is None:
        labels = datasets.read_labels(data_dir) or (model.labels if model is not None else None)
    records, problems = datasets.read_manifest(data_dir, labels, check_images=True)
    report = Report(data_dir, samples=len(records) + len(problems), model_checked=model is not None)
    for problem in problems:
        report.flags.append(Flag(f"line-{problem.line}", problem.line, "manifest", str(problem)))
    if not records:
        return report
    report.flags.extend(_exact_duplicates(records))
    embeddings = model.embed(records) if model is not None else _cheap_embeddings(records)
    report.flags.extend(_near_duplicates(records, embeddings, near_duplicate_cosine))
    if model is not None:
        fused, text_only, image_only = model.label_probabilities(records)
        report.flags.extend(
            _model_flags(
                records,
                model.labels,
                fused,
                text_only,
                image_only,
                contradiction_probability,
                confident_probability,
            )
        )
    return report


def precision_recall(flagged: set[str], truth: set[str]) -> tuple[float, float]:
    """Precision and recall of a set of flagged ids against the truly bad ids."""
    hits = len(flagged & truth)
    precision = hits / len(flagged) if flagged else 1.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall


def _exact_duplicates(records: Sequence[datasets.Record]) -> list[Flag]:
    seen: dict[str, datasets.Record] = {}
    flags = []
    for record in records:
        digest = hashlib.sha256(record.image.read_bytes())
        digest.update(record.text.encode())
        key = digest.hexdigest()
        if key in seen:
            first = seen[key]
            flags.append(
                Flag(record.id, record.line, "exact_duplicate", f"same as line {first.line}")
            )
        else:
            seen[key] = record
    return flags


def _near_duplicates(
    records: Sequence[datasets.Record], embeddings: npt.NDArray[np.float32], threshold: float
) -> list[Flag]:
    """Flag each sample whose embedding is within `threshold` of an earlier one's."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    flags = []
    chunk = 1024
    for begin in range(0, len(records), chunk):
        block = unit[begin : begin + chunk] @ unit[: begin + chunk].T
        for row in range(block.shape[0]):
            index = begin + row
            earlier = block[row, :index]
            if earlier.size and earlier.max() >= threshold:
                match = int(earlier.argmax())
                flags.append(
                    Flag(
                        records[index].id,
                        records[index].line,
                        "near_duplicate",
                        f"cosine {earlier.max():.4f} to line {records[match].line}",
                        float(earlier.max()),
                    )
                )
    return flags


def _model_flags(
    records: Sequence[datasets.Record],
    labels: Sequence[str],
    fused: npt.NDArray[np.float32],
    text_only: npt.NDArray[np.float32],
    image_only: npt.NDArray[np.float32],
    contradiction: float,
    confident: float,
) -> list[Flag]:
    index = {name: i for i, name in enumerate(labels)}
    flags = []
    for row, record in enumerate(records):
        own = index.get(record.label)
        if own is None:
            continue
        best = int(fused[row].argmax())
        if fused[row, own] < contradiction and best != own and fused[row, best] >= confident:
            flags.append(
                Flag(
                    record.id,
                    record.line,
                    "label_contradiction",
                    f"labelled {record.label!r}, model says {labels[best]!r} "
                    f"({fused[row, best]:.2f}; own label {fused[row, own]:.2f})",
                    float(1.0 - fused[row, own]),
                )
            )
        text_best, image_best = int(text_only[row].argmax()), int(image_only[row].argmax())
        if (
            text_best != image_best
            and text_only[row, text_best] >= confident
            and image_only[row, image_best] >= confident
        ):
            flags.append(
                Flag(
                    record.id,
                    record.line,
                    "modality_mismatch",
                    f"report says {labels[text_best]!r}, frame says {labels[image_best]!r}",
                    float(min(text_only[row, text_best], image_only[row, image_best])),
                )
            )
    return flags


def _cheap_embeddings(records: Sequence[datasets.Record]) -> npt.NDArray[np.float32]:
    """An 8x8 grey thumbnail and hashed text trigrams, each unit length, concatenated."""
    rows = []
    for record in records:
        image = datasets.open_image(record.image).convert("L").resize((THUMBNAIL, THUMBNAIL))
        pixels = np.asarray(image, dtype=np.float32).reshape(-1)
        pixels = pixels - pixels.mean()
        text = np.zeros(TRIGRAM_DIM, dtype=np.float32)
        lowered = f"  {record.text.lower()} "
        for start in range(len(lowered) - 2):
            gram = lowered[start : start + 3].encode()
            bucket = int.from_bytes(hashlib.blake2b(gram, digest_size=4).digest(), "big")
            text[bucket % TRIGRAM_DIM] += 1
        parts = [v / max(float(np.linalg.norm(v)), 1e-12) for v in (pixels, text)]
        rows.append(np.concatenate(parts) / np.sqrt(2.0))
    return np.stack(rows).astype(np.float32)


def check_data_command(
    data_dir: Path = typer.Argument(..., help="Folder with manifest.jsonl (see docs/ml.md)."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Participant TOML file: its base model and latest global adapter run the "
        "model-based checks. Without it only the structural checks run.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the flagged samples (default DATA_DIR/flagged.jsonl)."
    ),
) -> None:
    """Check a data folder: broken lines, duplicates, contradicted labels, mismatched pairs.

    Prints a report and writes the flagged samples as JSON lines; set
    `exclude_flagged = true` in the participant file's `data_quality` table to leave them
    out of training.
    """
    model = None
    if config is not None:
        model = _model_from_config(config, data_dir)
    report = check_data(data_dir, model)
    path = report.write_jsonl(out or Path(data_dir) / FLAGGED_FILE)
    typer.echo(report.summary())
    typer.echo(f"flagged samples written to {path}")


def _model_from_config(config_path: Path, data_dir: Path) -> QualityModel:
    """The participant's trainer with its latest global adapter (if it has one yet)."""
    from accord.core import configfile
    from accord.participant.config import ParticipantConfig
    from accord.participant.training.multimodal import MultimodalTrainer

    settings = configfile.load(
        config_path,
        ParticipantConfig,
        "participant",
        overrides={"data_dir": str(Path(data_dir).resolve())},
    )
    # The model only: the folder's own problems must not stop the check that reports them,
    # and its samples are embedded once, by `check_data`.
    trainer = MultimodalTrainer(settings, with_data=False)
    state = settings.state_dir / "state.json"
    if state.exists():
        trainer.load(settings.state_dir / json.loads(state.read_text(encoding="utf-8"))["adapter"])
    return trainer
