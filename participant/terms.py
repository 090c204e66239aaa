"""The participant's side of the signed federation terms (`crypto/terms.py`).

The kit carries `terms.signed`, made by `accord provision` with the federation's CA key.
The daemon verifies it against the kit's pinned CA at start, checks its own model
against it (a departure is a `ConfigError`: exit 2), and checks every `RoundConfig` it
receives (task, aggregate download, catch-up) before acting on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from accord.core.kitformat import TERMS_FILE
from accord.crypto import terms as signed_terms
from accord.crypto.messages import RoundConfig
from accord.crypto.terms import FederationTerms
from accord.errors import ConfigError, ProtocolError, TermsDeparted

if TYPE_CHECKING:  # torch loads with the trainer, only when a model is described
    from accord.participant.config import ParticipantConfig


def load_kit_terms(kit_dir: Path, ca_pem: bytes) -> FederationTerms | None:
    """The kit's signed terms, verified against its pinned CA; None when the kit has none.

    Raises:
        ConfigError: the file does not verify (naming it and the fix).
    """
    path = Path(kit_dir) / TERMS_FILE
    if not path.exists():
        return None
    try:
        return signed_terms.verify_terms(path.read_bytes(), ca_pem)
    except (OSError, ProtocolError) as error:
        raise ConfigError(
            f"{path}: {error} (ask the operator for the federation's signed terms)"
        ) from None


def describe_model(config: ParticipantConfig) -> tuple[str, int]:
    """(base_model_hash, adapter_parameters) of the model `config` trains: the two terms the
    operator signs that only a member's model can say. Builds the model, reads no data."""
    from accord.participant.training.protocol import make_trainer

    trainer = make_trainer(config, with_data=False)
    return trainer.base_model_hash, trainer.parameter_count


def check_own_settings(
    terms: FederationTerms, *, name: str, base_model_hash: str, adapter_parameters: int
) -> None:
    """Raise a `ConfigError` (exit 2) when this participant's own model departs."""
    try:
        signed_terms.check_member_settings(
            terms,
            member=name,
            base_model_hash=base_model_hash,
            adapter_parameters=adapter_parameters,
        )
    except TermsDeparted as error:
        raise ConfigError(
            f"[participant] {error}: set base_model and lora_rank as the federation's terms say"
        ) from None


@runtime_checkable
class ChecksClipNorm(Protocol):
    """A trainer that can tell whether its own settings fit the federation's clip."""

    def check_clip_norm(self, clip_norm: float) -> None:
        """Raise a `ConfigError` when its updates would exceed `clip_norm`."""
        ...


def check_clip_norm(trainer: object, clip_norm: float) -> None:
    """Refuse (`ConfigError`, exit 2) a trainer whose settings would make every update exceed
    the federation's `clip_norm` (the multimodal trainer's tower LoRA: `tower_learning_rate`);
    a trainer that cannot tell is not checked."""
    if isinstance(trainer, ChecksClipNorm):
        trainer.check_clip_norm(clip_norm)


def check_round(terms: FederationTerms | None, config: RoundConfig) -> None:
    """Refuse a round from the coordinator that departs from the terms (`TermsDeparted`)."""
    if terms is not None:
        signed_terms.check_round_config(terms, config, source="the coordinator")
