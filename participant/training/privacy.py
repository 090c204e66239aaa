"""Sample-level differential privacy for local training (DP-SGD with opacus).

Theory of operation (Abadi et al. 2016, "Deep Learning with Differential Privacy"):
every logical batch is a Poisson sample of the training set (each sample in with
probability q = batch_size / n, independently); each sample's gradient is clipped to
L2 norm C (`max_grad_norm`); the clipped gradients are summed, Gaussian noise of
standard deviation sigma * C (`noise_multiplier` sigma) is added, and the result is
divided by the expected batch size q * n. The history of (sigma, q, steps) is accounted
by RDP (Mironov 2017; dp-accounting's, the default) or PRV (Gopi et al. 2021; opacus's),
computed by `accord/core/accounting.py`, the audit's own code.

Built from opacus's parts, not `PrivacyEngine.make_private`, for one reason: the
randomness. `make_private` draws the noise with `torch.normal` and the Poisson sample
with `torch.rand`, neither of which is a cryptographically secure generator; opacus's
`secure_mode` would fix that with torchcsprng, which is not installable here. So:

- `GradSampleModule` in hooks mode computes per-sample gradients (as `make_private`
  with `grad_sample_mode="hooks"` does);
- `CsprngDPOptimizer`, a `DPOptimizer` whose `add_noise` draws from `CsprngGaussian`;
- `poisson_batches` draws each logical batch with the same CSPRNG;
- the accountant is attached to the optimizer's step hook as `make_private` does.

`CsprngGaussian` (`csprng.py`, with its known gap: floating-point noise) draws both.

Traps handled here, each with a test:
- BatchNorm mixes samples in a batch and its running statistics would move with the
  private data; `freeze_batchnorm` puts only the BatchNorm layers back in eval mode
  after every `model.train()` (LoRA and dropout layers stay in training mode).
- An empty Poisson batch is a legitimate sample: the step still adds noise and counts
  in the accountant. It is never skipped.
- The PRV accountant fails on an empty history; that privacy loss is epsilon 0.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.optimizers import DPOptimizer
from torch import nn

from accord.core import accounting
from accord.errors import BudgetExhausted, ConfigError
from accord.participant.training.csprng import CsprngGaussian

ACCOUNTANTS = ("prv", "rdp")

HISTORY_VERSION = 1


@dataclass(frozen=True)
class DpSettings:
    """How local training is made differentially private.

    Attributes:
        max_grad_norm: C, the per-sample L2 clipping bound (> 0).
        noise_multiplier: sigma; None derives it from `target_epsilon`.
        target_epsilon: the budget that `planned_steps` steps may spend in total.
        delta: the delta at which epsilon is reported (and targeted).
        accountant: "rdp" (default) or "prv".
        planned_steps: the steps the target epsilon must cover (all rounds together).
    """

    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5
    accountant: str = "rdp"
    planned_steps: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(
                f"[participant.dp] max_grad_norm = {self.max_grad_norm}: must be > 0 "
                "(the per-sample clipping bound)"
            )
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ConfigError(
                "[participant.dp]: set exactly one of noise_multiplier and target_epsilon"
            )
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ConfigError(
                f"[participant.dp] noise_multiplier = {self.noise_multiplier}: must be > 0"
            )
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ConfigError(
                f"[participant.dp] target_epsilon = {self.target_epsilon}: must be > 0"
            )
        if not 0 < self.delta < 1:
            raise ConfigError(f"[participant.dp] delta = {self.delta}: must be in (0, 1)")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"[participant.dp] accountant = {self.accountant!r}: must be 'prv' or 'rdp'"
            )
        if self.planned_steps < 1:
            raise ConfigError(
                f"[participant.dp] planned_steps = {self.planned_steps}: must be >= 1"
            )


@dataclass(frozen=True)
class PrivacySpent:
    """The sample-level privacy spent so far, as the ledger records it.

    Attributes:
        accountant: "prv" or "rdp".
        noise_multiplier: sigma of the latest round.
        sample_rate: q of the latest round.
        steps: noisy steps taken in all rounds together.
        epsilon: total epsilon at `delta` over the whole history.
        delta: the delta of `epsilon`.
        max_grad_norm: the per-sample clipping bound C.
    """

    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    delta: float
    max_grad_norm: float

    def as_metrics(self) -> dict[str, float]:
        """Numbers for `LocalUpdate.metrics` (prefixed `dp_`)."""
        return {
            "dp_epsilon": self.epsilon,
            "dp_delta": self.delta,
            "dp_noise_multiplier": self.noise_multiplier,
            "dp_sample_rate": self.sample_rate,
            "dp_steps": float(self.steps),
            "dp_max_grad_norm": self.max_grad_norm,
        }


History = list[tuple[float, float, int]]
"""An accountant's history: (noise_multiplier, sample_rate, steps) runs, oldest first."""


@dataclass(frozen=True)
class SideTraining:
    """Training on the private data besides the released update (kept or reported locally).

    The local-only baseline and the personalized model train on the same records as the
    update; whatever they report (accuracy) or keep (weights) spends privacy too, so each
    round's side training is recorded in the ledger with the round (participant/privacy_ledger.py)
    and composes into the participant's epsilon.

    Attributes:
        purpose: what was trained ("local_only", "personalized").
        steps: noisy steps taken this round.
        spent: its own accountant's total after this round; None when it ran without DP.
    """

    purpose: str
    steps: int
    spent: PrivacySpent | None


class CsprngDPOptimizer(DPOptimizer):
    """opacus's `DPOptimizer` with its Gaussian noise drawn from a `CsprngGaussian`."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, noise_source: CsprngGaussian, **kwargs: Any
    ) -> None:
        super().__init__(optimizer, **kwargs)
        self.noise_source = noise_source

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            summed = p.summed_grad
            noise = self.noise_source.normal(summed.numel(), std)
            p.grad = (summed + torch.from_numpy(noise).to(summed.dtype).view_as(summed)).view_as(p)


def poisson_batches(
    dataset_size: int, sample_rate: float, source: CsprngGaussian
) -> Iterator[torch.Tensor]:
    """Endless Poisson-sampled batches of indices (possibly empty), drawn from the CSPRNG."""
    while True:
        chosen = np.flatnonzero(source.bernoulli(dataset_size, sample_rate))
        yield torch.from_numpy(chosen.astype(np.int64))


# ---- making a model private ----


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm layer (only those) in eval mode; return how many there are."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            count += 1
    return count


@dataclass
class PrivateTraining:
    """A module and optimizer made private, with the accountant that follows them."""

    module: GradSampleModule
    optimizer: CsprngDPOptimizer
    accountant: PRVAccountant | RDPAccountant
    settings: DpSettings
    sample_rate: float
    noise_multiplier: float

    def spent(self) -> PrivacySpent:
        """The privacy spent by the whole history, this round's steps included."""
        history = self.history()
        return PrivacySpent(
            accountant=self.settings.accountant,
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=sum(int(steps) for _, _, steps in history),
            epsilon=epsilon(self.settings.accountant, history, self.settings.delta),
            delta=self.settings.delta,
            max_grad_norm=self.settings.max_grad_norm,
        )

    def history(self) -> History:
        return [(float(s), float(q), int(n)) for s, q, n in self.accountant.history]

    def close(self) -> None:
        """Remove opacus's hooks and per-sample state; the module trains normally again."""
        self.module.remove_hooks()
        for p in self.module._module.parameters():
            for name in ("grad_sample", "summed_grad", "_forward_counter", "_current_grad_sample"):
                if hasattr(p, name):
                    delattr(p, name)


def make_private(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    dataset_size: int,
    batch_size: int,
    settings: DpSettings,
    history: History,
    noise_source: CsprngGaussian,
) -> PrivateTraining:
    """Wrap a module (hooks mode) and its optimizer for DP-SGD; account from `history`.

    Args:
        module: the module whose trainable parameters are trained; BatchNorm frozen.
        optimizer: over exactly those parameters.
        dataset_size: n, the number of training samples.
        batch_size: the expected logical batch size (q = batch_size / n).
        settings: clipping, noise and accountant.
        history: the accountant's history from earlier rounds (restarts keep it).
        noise_source: the CSPRNG for noise.

    Raises:
        BudgetExhausted: a target epsilon is set and its planned steps are all spent.
    """
    sample_rate = min(1.0, batch_size / dataset_size)
    accountant: PRVAccountant | RDPAccountant = (
        PRVAccountant() if settings.accountant == "prv" else RDPAccountant()
    )
    accountant.history = [tuple(entry) for entry in history]
    noise_multiplier = noise_for(settings, sample_rate)
    if settings.target_epsilon is not None:
        spent_steps = sum(int(n) for _, _, n in history)
        if spent_steps >= settings.planned_steps:
            raise BudgetExhausted(
                f"privacy budget spent: {spent_steps} noisy steps of the {settings.planned_steps} "
                f"that target_epsilon = {settings.target_epsilon} covers; raise "
                "[participant.dp] rounds or start a new budget"
            )
    wrapped = GradSampleModule(module, batch_first=True, loss_reduction="mean", strict=True)
    private_optimizer = CsprngDPOptimizer(
        optimizer,
        noise_source=noise_source,
        noise_multiplier=noise_multiplier,
        max_grad_norm=settings.max_grad_norm,
        expected_batch_size=max(1, round(sample_rate * dataset_size)),
        loss_reduction="mean",
    )
    private_optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    return PrivateTraining(
        wrapped, private_optimizer, accountant, settings, sample_rate, noise_multiplier
    )


def noise_for(settings: DpSettings, sample_rate: float) -> float:
    """sigma: the configured one, or the smallest that keeps `planned_steps` within budget."""
    if settings.noise_multiplier is not None:
        return float(settings.noise_multiplier)
    assert settings.target_epsilon is not None
    return _noise_for_target(
        settings.target_epsilon,
        settings.delta,
        sample_rate,
        settings.planned_steps,
        settings.accountant,
    )


@functools.lru_cache(maxsize=32)
def _noise_for_target(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    # A bisection over sigma, each probe a full accountant run: seconds with PRV, so it
    # is done once per setting, not once per round. The accountant is the audit's
    # (accord/core/accounting.py), so the audit reads back what was calibrated.
    return accounting.noise_multiplier(target_epsilon, delta, sample_rate, steps, accountant)


def epsilon(accountant: str, history: Sequence[tuple[float, float, int]], delta: float) -> float:
    """Epsilon at `delta` of a history; 0.0 for an empty one (no step, no privacy loss).

    The audit's computation (accord/core/accounting.py): dp-accounting's RDP, or opacus's
    PRV where its numerics hold (else the RDP bound, never an understatement).
    """
    return accounting.epsilon(history, delta, accountant)


def save_history(path: Path, accountant: str, history: History) -> None:
    """Write the accountant's history atomically (JSON, with a format version)."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(
        json.dumps({"version": HISTORY_VERSION, "accountant": accountant, "history": history}),
        encoding="utf-8",
    )
    staging.replace(path)


def load_history(path: Path, accountant: str) -> History:
    """The history `save_history` wrote, or [] when there is none yet.

    Raises:
        ConfigError: the file was written for another accountant or format version.
    """
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != HISTORY_VERSION or data.get("accountant") != accountant:
        raise ConfigError(
            f"{path}: written by accountant {data.get('accountant')!r} (format "
            f"{data.get('version')}), configured {accountant!r}; a privacy budget cannot switch "
            "accountants midway"
        )
    return [(float(s), float(q), int(n)) for s, q, n in data["history"]]


def spent_from_history(settings: DpSettings, history: History) -> PrivacySpent:
    """`PrivacySpent` of a stored history (for reports between rounds)."""
    last = history[-1] if history else (0.0, 0.0, 0)
    return PrivacySpent(
        accountant=settings.accountant,
        noise_multiplier=float(last[0]),
        sample_rate=float(last[1]),
        steps=sum(int(n) for _, _, n in history),
        epsilon=epsilon(settings.accountant, history, settings.delta),
        delta=settings.delta,
        max_grad_norm=settings.max_grad_norm,
    )


@contextmanager
def per_sample_gradients() -> Iterator[None]:
    """Silence the one warning opacus's hooks always raise (see the comment inside)."""
    with warnings.catch_warnings():
        # opacus registers full backward hooks on the first trainable layer, whose input
        # never requires grad; torch then warns on every backward pass. The hook still
        # receives the output gradient opacus needs, so the warning says nothing here.
        warnings.filterwarnings(
            "ignore",
            message="Full backward hook is firing when gradients are computed with respect "
            "to module outputs since no inputs require gradients",
            category=UserWarning,
        )
        yield


def as_dict(spent: PrivacySpent) -> dict[str, Any]:
    """`PrivacySpent` as a JSON-ready dict (for the ledger)."""
    return asdict(spent)
