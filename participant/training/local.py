"""Local training, top to bottom: load base, wrap with LoRA, make private, loop, export delta.

    base    = models.load_base_model(...)              frozen towers + fresh fusion head
    model   = wrap_with_lora(base, lora, seed)         FFA-LoRA by default, head in modules_to_save
    update  = train_local(module, data, settings, ...) one round (AdamW, DP and FedProx
                                                       if asked): the delta

The adapter that the federation averages is a flat float32 vector: every parameter
with `requires_grad`, in `named_parameters` order (`trainable_names`).

Exact aggregation (FFA-LoRA, Sun et al. 2024). A LoRA layer adds B @ A to a frozen
weight. Averaging A and B separately is not averaging the products
(mean(B) @ mean(A) != mean(B @ A)), so plain LoRA under FedAvg is inexact. FFA-LoRA
freezes A, initialised identically everywhere from the federation's seed, and trains
and exchanges only B; then mean(B) @ A == mean(B @ A) exactly. `AdapterMode.LORA`
trains both (the classic setting, with that caveat). The fusion head is trained in
full (peft `modules_to_save`): it is linear in its own parameters' deltas, so its
average is exact too. DoRA normalises B @ A per column, which is not linear in B,
so it is refused.

FedProx (Li et al. 2020) adds mu/2 * ||w - w_global||^2 to the local loss. Its
gradient mu * (w - w_global) does not depend on the data, so it is applied after the
optimizer's step, like AdamW's decoupled weight decay; that way it is the same with
and without DP and costs no privacy.

After every round `train_local` checks that every trained tensor actually changed:
a known failure mode (peft + opacus) is LoRA weights that silently never update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from accord.errors import RoundAborted
from accord.participant.config import ParticipantConfig
from accord.participant.training import csprng, privacy
from accord.participant.training.models import HEAD_NAME, BaseModel
from accord.participant.training.privacy import History, PrivacySpent
from accord.participant.training.settings import TrainingConfig
from accord.participant.training.steps import run_steps


class AdapterMode(str, Enum):
    """Which LoRA matrices are trained and exchanged."""

    FFA = "ffa"
    """A frozen (same seed everywhere), B trained: exact aggregation (default)."""
    LORA = "lora"
    """A and B trained: inexact aggregation (mean of products != product of means)."""


_FLAT = ParticipantConfig.model_fields
_TRAINING = TrainingConfig.model_fields
_DEFAULT_MODE = AdapterMode(_TRAINING["adapter"].default)


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's shape: a plain record of `[participant]` and `[participant.training]`.

    Validated once, by `ParticipantConfig` (`participant/config.py`, `settings.py`), whose
    defaults these are; `from_config` builds one from a validated config. DoRA cannot be
    expressed here: `TrainingConfig` refuses `use_dora = true` (see module docstring).

    Attributes:
        rank: r (`lora_rank`).
        alpha: LoRA's alpha (an integer, as peft types it; scale alpha / r); None means
            2 * rank.
        dropout: dropout on the LoRA input.
        target_modules: peft `target_modules` (regex string or name suffixes); None means
            the base model's defaults.
        mode: FFA-LoRA (default) or standard LoRA (`adapter`).
    """

    rank: int = _FLAT["lora_rank"].default
    alpha: int | None = _TRAINING["lora_alpha"].default
    dropout: float = _TRAINING["lora_dropout"].default
    target_modules: str | tuple[str, ...] | None = _TRAINING["lora_target_modules"].default
    mode: AdapterMode = _DEFAULT_MODE

    @classmethod
    def from_config(cls, config: ParticipantConfig) -> LoraSettings:
        """The adapter's shape a validated participant config asks for."""
        training = config.training
        return cls(
            rank=config.lora_rank,
            alpha=training.lora_alpha,
            dropout=training.lora_dropout,
            target_modules=(
                tuple(training.lora_target_modules) if training.lora_target_modules else None
            ),
            mode=AdapterMode(training.adapter),
        )


@dataclass(frozen=True)
class LocalSettings:
    """One round of local training: a plain record of `[participant]` and its sub-tables.

    Validated once, by `ParticipantConfig`, whose defaults these are; `from_config` builds
    one from a validated config.

    Attributes:
        steps: optimizer steps per round (`local_steps`; ignored when `epochs` is set).
        epochs: passes over the local data per round (`local_epochs`);
            steps = ceil(epochs * n / batch_size).
        batch_size: samples per step (the expected Poisson batch size under DP).
        grad_accumulation: micro-batches per step (memory only; the step is the same).
        learning_rate: AdamW's learning rate (the fusion head's, and every parameter's
            but the towers' LoRA matrices when `tower_learning_rate` is set).
        tower_learning_rate: AdamW's learning rate of the LoRA matrices (names with
            `lora_`: in the towers), their own parameter group; None means `learning_rate`.
        weight_decay: AdamW's decoupled weight decay.
        fedprox_mu: FedProx's proximal weight mu (0 turns it off).
        dp: sample-level DP, or None.
    """

    steps: int = _FLAT["local_steps"].default
    epochs: float | None = _TRAINING["local_epochs"].default
    batch_size: int = _FLAT["batch_size"].default
    grad_accumulation: int = _TRAINING["grad_accumulation"].default
    learning_rate: float = _FLAT["learning_rate"].default
    tower_learning_rate: float | None = _TRAINING["tower_learning_rate"].default
    weight_decay: float = _TRAINING["weight_decay"].default
    fedprox_mu: float = _TRAINING["fedprox_mu"].default
    dp: privacy.DpSettings | None = None

    @classmethod
    def from_config(
        cls, config: ParticipantConfig, dp: privacy.DpSettings | None = None
    ) -> LocalSettings:
        """The local loop a validated participant config asks for, with `dp` if given."""
        training = config.training
        return cls(
            steps=config.local_steps,
            epochs=training.local_epochs,
            batch_size=config.batch_size,
            grad_accumulation=training.grad_accumulation,
            learning_rate=config.learning_rate,
            tower_learning_rate=training.tower_learning_rate,
            weight_decay=training.weight_decay,
            fedprox_mu=training.fedprox_mu,
            dp=dp,
        )

    def steps_for(self, samples: int) -> int:
        """Steps in one round over `samples` training samples."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * samples / self.batch_size))

    def rate_of(self, name: str) -> float:
        """The learning rate of the parameter `name`: `tower_learning_rate` for a LoRA
        matrix (when set), else `learning_rate`."""
        if self.tower_learning_rate is not None and "lora_" in name:
            return self.tower_learning_rate
        return self.learning_rate


def round_settings(
    config: ParticipantConfig, train_size: int
) -> tuple[privacy.DpSettings | None, LocalSettings]:
    """A round's DP settings (None without DP; the noise planned over `dp.rounds` rounds
    of this data size) and local training settings."""
    settings = LocalSettings.from_config(config)
    if not config.dp.enabled:
        return None, settings
    dp = privacy.DpSettings(
        max_grad_norm=config.dp.max_grad_norm,
        noise_multiplier=config.dp.noise_multiplier,
        target_epsilon=config.dp.target_epsilon,
        delta=config.dp.delta,
        accountant=config.dp.accountant,
        planned_steps=settings.steps_for(train_size) * config.dp.rounds,
    )
    return dp, replace(settings, dp=dp)


@dataclass
class RoundResult:
    """What one round of local training produced.

    Attributes:
        delta: trained minus starting vector, float32, (parameters,).
        steps: optimizer steps taken.
        train_loss: mean loss of the non-empty batches.
        privacy: the privacy spent so far (None without DP).
        history: the accountant's history after this round ([] without DP).
    """

    delta: npt.NDArray[np.float32]
    steps: int
    train_loss: float
    privacy: PrivacySpent | None = None
    history: History = field(default_factory=list)


# ---- wrap with LoRA ----


def wrap_with_lora(base: BaseModel, lora: LoraSettings, seed: int) -> PeftModel:
    """The base model with LoRA adapters and a trainable head, identical for every seed-mate.

    LoRA's A matrices are drawn from `seed` (peft's Kaiming init on torch's generator),
    so every participant of a federation starts from the same adapter; B starts at zero.
    In FFA mode A is then frozen.
    """
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha if lora.alpha is not None else 2 * lora.rank,
        lora_dropout=lora.dropout,
        target_modules=(
            list(lora.target_modules)
            if isinstance(lora.target_modules, tuple)
            else (lora.target_modules or _as_peft_targets(base.lora_targets))
        ),
        modules_to_save=[HEAD_NAME],
        use_dora=False,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = get_peft_model(base.model, config)
    finally:
        torch.random.set_rng_state(state)
    if lora.mode is AdapterMode.FFA:
        for name, parameter in model.named_parameters():
            if "lora_A" in name:
                parameter.requires_grad_(False)
    return model


def freeze_tower_adapters(model: nn.Module) -> None:
    """Freeze every LoRA matrix, leaving only the head trainable (cached-feature training)."""
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.requires_grad_(False)


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the exchanged parameters, in the stable `named_parameters` order."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def get_vector(model: nn.Module, names: Sequence[str]) -> npt.NDArray[np.float32]:
    """The named parameters as one float32 vector."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        flat = torch.cat([named[n].detach().reshape(-1).float() for n in names])
    return flat.numpy().astype(np.float32, copy=True)


def set_vector(model: nn.Module, names: Sequence[str], vector: npt.NDArray[np.float32]) -> None:
    """Load a vector made by `get_vector` back into the named parameters."""
    named = dict(model.named_parameters())
    total = sum(named[n].numel() for n in names)
    if vector.shape != (total,):
        raise ValueError(f"vector of shape {vector.shape}, adapter has {total} parameters")
    offset = 0
    with torch.no_grad():
        for name in names:
            parameter = named[name]
            count = parameter.numel()
            piece = torch.from_numpy(np.ascontiguousarray(vector[offset : offset + count]))
            parameter.copy_(piece.reshape(parameter.shape).to(parameter.dtype))
            offset += count


# ---- one round ----


Forward = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]
"""(module, inputs) -> logits; inputs are a batch's tensors without the labels."""


def call_module(module: nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The default `Forward`: `module(*inputs)`."""
    return module(*inputs)


def train_local(
    module: nn.Module,
    data: Sequence[torch.Tensor],
    settings: LocalSettings,
    *,
    generator: torch.Generator,
    forward: Forward = call_module,
    history: privacy.History | None = None,
    noise_source: csprng.CsprngGaussian | None = None,
    report_privacy: bool = True,
) -> RoundResult:
    """Train `module`'s trainable parameters for one round; return the change.

    The module is left holding the trained parameters; the caller decides whether to
    keep them (the daemon restores the global adapter and sends the delta).

    Args:
        module: the model to train; its `requires_grad` parameters are the adapter.
        data: tensors with the sample dimension first; the last one is the labels (int64).
        settings: steps, batch, optimizer, FedProx and DP.
        generator: seeds batch sampling without DP (with DP the CSPRNG samples).
        forward: how to get logits from a batch's inputs.
        history: the DP accountant's history from earlier rounds.
        noise_source: the CSPRNG for DP (a fresh `os.urandom` key when None).
        report_privacy: compute epsilon for `RoundResult.privacy` (seconds with PRV).

    Raises:
        RoundAborted: a trained tensor did not change (adapter weights never updated),
            the loss is not finite, or the privacy budget is spent.
    """
    samples, parameters = _trainable(module, data)
    names, start = trainable_names(module), [p.detach().clone() for p in parameters]
    optimizer = torch.optim.AdamW(
        _parameter_groups(names, parameters, settings),
        settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    private = None
    if settings.dp is not None:
        private = privacy.make_private(
            module,
            optimizer,
            dataset_size=samples,
            batch_size=settings.batch_size,
            settings=settings.dp,
            history=list(history or []),
            noise_source=noise_source or csprng.CsprngGaussian(),
        )
    try:
        losses = run_steps(module, private, optimizer, data, settings, forward, generator, start)
    finally:
        module.eval()
        spent, new_history = _close(private, report_privacy)
    return RoundResult(
        delta=_delta(names, parameters, start),
        steps=settings.steps_for(samples),
        train_loss=float(np.mean(losses)) if losses else float("nan"),
        privacy=spent,
        history=new_history,
    )


def _trainable(module: nn.Module, data: Sequence[torch.Tensor]) -> tuple[int, list[nn.Parameter]]:
    """The sample count and the trainable parameters; refused when either is none."""
    samples = int(data[-1].shape[0])
    if samples == 0:
        raise RoundAborted("no training samples: the local data set is empty")
    parameters = [p for p in module.parameters() if p.requires_grad]
    if not parameters:
        raise RoundAborted("the model has no trainable parameters")
    return samples, parameters


def _parameter_groups(
    names: Sequence[str], parameters: Sequence[nn.Parameter], settings: LocalSettings
) -> list[dict[str, Any]]:
    """AdamW's parameter groups: one per learning rate (`LocalSettings.rate_of`)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, parameter in zip(names, parameters, strict=True):
        groups.setdefault(settings.rate_of(name), []).append(parameter)
    return [{"params": group, "lr": rate} for rate, group in groups.items()]


def _close(
    private: privacy.PrivateTraining | None, report_privacy: bool
) -> tuple[PrivacySpent | None, History]:
    """Detach opacus from the module; the privacy spent (if asked) and the new history."""
    if private is None:
        return None, []
    spent = private.spent() if report_privacy else None
    history = private.history()
    private.close()
    return spent, history


def _delta(
    names: Sequence[str], parameters: Sequence[torch.Tensor], start: Sequence[torch.Tensor]
) -> npt.NDArray[np.float32]:
    """Trained minus starting parameters, flat float32; refused when a tensor never moved."""
    unchanged = [n for n, p, s in zip(names, parameters, start, strict=True) if torch.equal(p, s)]
    if unchanged:
        raise RoundAborted(
            f"local training did not change {len(unchanged)} adapter tensor(s), e.g. "
            f"{unchanged[0]!r}: the optimizer never updated them (check that they receive "
            "gradients, and with DP that opacus computes per-sample gradients for them)"
        )
    delta = torch.cat(
        [(p.detach() - s).reshape(-1) for p, s in zip(parameters, start, strict=True)]
    )
    return delta.float().numpy().astype(np.float32, copy=True)


def predict(
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    forward: Forward = call_module,
    batch_size: int = 256,
) -> torch.Tensor:
    """Logits of `module` for every sample, in eval mode without gradients."""
    module.eval()
    outputs = []
    count = int(inputs[0].shape[0])
    with torch.no_grad():
        for begin in range(0, count, batch_size):
            outputs.append(forward(module, [t[begin : begin + batch_size] for t in inputs]))
    return torch.cat(outputs) if outputs else torch.zeros(0)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean cross-entropy of logits against int64 labels."""
    if labels.numel() == 0:
        return {"accuracy": float("nan"), "loss": float("nan")}
    loss = float(nn.functional.cross_entropy(logits, labels))
    correct = float((logits.argmax(dim=-1) == labels).float().mean())
    return {"accuracy": correct, "loss": loss}


def _as_peft_targets(targets: str | tuple[str, ...]) -> Any:
    return targets if isinstance(targets, str) else list(targets)
