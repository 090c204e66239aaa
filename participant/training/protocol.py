"""Local training behind a small protocol, and how the participant finds its trainer.

The daemon only needs a `Trainer`: the adapter as one float32 vector in a stable
parameter order, a round of local training that returns the change to that vector,
and a way to apply the federation's mean change and to save the adapter in PEFT's
format; `make_trainer` builds the one `config.trainer` names. The default is
`multimodal.MultimodalTrainer` (`trainer = "multimodal"`). Any other value is the
import path `package.module:Class` of a class built as `Class(config)` that implements
`Trainer` (`trainer_class` loads it): the demo's and benchmarks' trainers live on the
top floor (`accord.demo.lora_mlp:LoraMlpTrainer`,
`accord.demo.synthetic_trainer:SyntheticTrainer`), so this package never imports them.
A trainer class that runs DP-SGD and reports its accounting says so with a true class
attribute `reports_dp_accounting`; `[participant.dp] enabled = true` refuses any other.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # config.py validates `trainer` with `trainer_class` below
    from accord.participant.config import ParticipantConfig

MULTIMODAL = "multimodal"
"""The `trainer` value of the participant's own trainer, `MultimodalTrainer`."""

IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
"""`package.module:Class`, the form of any other `trainer` value."""


@dataclass(frozen=True)
class LocalUpdate:
    """The result of one round of local training.

    Attributes:
        delta: trained adapter minus the global adapter, float32, shape (parameters,).
        sample_count: training samples seen; the participant's FedAvg weight.
        metrics: loss of the global adapter before training and of the local one after.
    """

    delta: npt.NDArray[np.float32]
    sample_count: int
    metrics: dict[str, float]


class Trainer(Protocol):
    """What the participant daemon needs from local training."""

    @property
    def parameter_count(self) -> int:
        """Number of trainable adapter parameters."""
        ...

    @property
    def base_model_hash(self) -> str:
        """SHA-256 (hex) over the base model's architecture and weights."""
        ...

    def train_round(self, round: int) -> LocalUpdate:
        """Train from the global adapter; return the change, leaving the global one as it was."""
        ...

    def apply(self, mean_delta: npt.NDArray[np.float32]) -> None:
        """Add the federation's mean change to the global adapter."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Metrics of the global adapter on this participant's held-out data."""
        ...

    def save(self, directory: Path) -> None:
        """Write the global adapter in PEFT format (`adapter_config.json`, safetensors)."""
        ...

    def load(self, directory: Path) -> None:
        """Read a global adapter written by `save`."""
        ...


def make_trainer(config: ParticipantConfig, *, with_data: bool = True) -> Trainer:
    """The trainer `config.trainer` names: multimodal (default) or a class by import path.

    The multimodal trainer loads its base model and caches the towers' features here,
    before the daemon enrols (seconds per participant; see docs/ml.md). `with_data=False`
    builds its model only, reading no data (enough to describe it; a trainer named by
    import path is built as `Class(config)` either way).
    """
    if config.trainer == MULTIMODAL:
        from accord.participant.training.multimodal import MultimodalTrainer

        return MultimodalTrainer(config, with_data=with_data)
    trainer: Trainer = trainer_class(config.trainer)(config)
    return trainer


def trainer_class(path: str) -> type:
    """Import the class `path` (`package.module:Class`) names.

    Raises:
        ValueError: `path` is not of that form, or names nothing importable or no class
            (pydantic reports it against the `trainer` field).
    """
    if not IMPORT_PATH.match(path):
        raise ValueError(
            f"{path!r}: expected {MULTIMODAL!r} or the import path package.module:Class "
            "of a trainer class"
        )
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{path!r}: cannot import {module_name} ({error})") from None
    found = getattr(module, class_name, None)
    if not isinstance(found, type):
        raise ValueError(f"{path!r}: {module_name} has no class {class_name}")
    return found


def reports_dp_accounting(trainer: str) -> bool:
    """Whether the trainer `trainer` names runs DP-SGD and reports its accounting."""
    if trainer == MULTIMODAL:
        return True
    return bool(getattr(trainer_class(trainer), "reports_dp_accounting", False))
