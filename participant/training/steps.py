"""The steps of one round of local training, for `local.train_local`.

run_steps(module, private, optimizer, data, settings, ...) -> losses
    settings.steps_for(n) optimizer steps: shuffled fixed-size batches, or with DP
    Poisson batches from the CSPRNG through opacus's wrapper; each logical batch in
    `grad_accumulation` micro-batches; FedProx's pull after each step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from accord.errors import RoundAborted
from accord.participant.training import privacy

if TYPE_CHECKING:
    from accord.participant.training.local import Forward, LocalSettings


def run_steps(
    module: nn.Module,
    private: privacy.PrivateTraining | None,
    optimizer: torch.optim.Optimizer,
    data: Sequence[torch.Tensor],
    settings: LocalSettings,
    forward: Forward,
    generator: torch.Generator,
    start: Sequence[torch.Tensor],
) -> list[float]:
    """The round's steps on `module` (or its private wrapper); the micro-batches' losses."""
    samples = int(data[-1].shape[0])
    if private is None:
        trained, batches = module, _shuffled_batches(samples, settings.batch_size, generator)
    else:
        trained, optimizer = private.module, private.optimizer
        batches = privacy.poisson_batches(samples, private.sample_rate, optimizer.noise_source)
    step = _Step(trained, optimizer, data, settings, forward)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    parameters = [p for _, p in named]
    rates = [settings.rate_of(n) * settings.fedprox_mu for n, _ in named]
    losses: list[float] = []
    trained.train()
    privacy.freeze_batchnorm(trained)
    with privacy.per_sample_gradients():
        for _ in range(settings.steps_for(samples)):
            losses += step(next(batches), private is not None)
            if settings.fedprox_mu > 0:
                _proximal_step(parameters, start, rates)
    return losses


@dataclass(frozen=True)
class _Step:
    """One optimizer step on a logical batch, in `grad_accumulation` micro-batches."""

    trained: nn.Module
    optimizer: torch.optim.Optimizer
    data: Sequence[torch.Tensor]
    settings: LocalSettings
    forward: Forward

    def __call__(self, batch: torch.Tensor, private: bool) -> list[float]:
        """Take the step; return the losses of the non-empty micro-batches."""
        labels, optimizer, losses = self.data[-1], self.optimizer, []
        micro_batches = _split(batch, self.settings.grad_accumulation)
        for index, micro in enumerate(micro_batches):
            inputs = [t[micro] for t in self.data[:-1]]
            loss = nn.functional.cross_entropy(self.forward(self.trained, inputs), labels[micro])
            if micro.numel() > 0:
                if not torch.isfinite(loss):
                    raise RoundAborted(f"local training diverged (loss {float(loss)})")
                losses.append(float(loss.detach()))
            if not private:
                (loss * micro.numel() / max(1, batch.numel())).backward()
                continue
            # Per-sample gradients of every micro-batch are clipped and summed; only the
            # last one adds noise and steps (opacus's virtual steps). An empty Poisson
            # batch still reaches the noisy step.
            loss.backward()
            last = index == len(micro_batches) - 1
            optimizer.signal_skip_step(do_skip=not last)  # type: ignore[attr-defined]
            if not last:
                optimizer.step()
                optimizer.zero_grad()
        optimizer.step()
        optimizer.zero_grad()
        return losses


def _shuffled_batches(
    samples: int, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Epochs of shuffled fixed-size batches (the last one of an epoch may be smaller)."""
    while True:
        order = torch.randperm(samples, generator=generator)
        for begin in range(0, samples, batch_size):
            yield order[begin : begin + batch_size]


def _split(batch: torch.Tensor, parts: int) -> list[torch.Tensor]:
    """`batch` in at most `parts` micro-batches; an empty batch stays one empty micro-batch."""
    if batch.numel() == 0:
        return [batch]
    return [piece for piece in torch.tensor_split(batch, parts) if piece.numel() > 0]


def _proximal_step(
    parameters: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor], rates: Sequence[float]
) -> None:
    """w <- w - lr * mu * (w - w_global): FedProx's proximal gradient, decoupled (`rates`:
    each parameter's lr * mu)."""
    with torch.no_grad():
        for parameter, anchor, rate in zip(parameters, anchors, rates, strict=True):
            parameter.sub_(rate * (parameter - anchor))
