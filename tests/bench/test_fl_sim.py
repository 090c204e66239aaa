"""The benchmark's personalized model is the product's: it starts from the federated
global head, trains as many steps as the local-only model, spends a second DP budget of
its own, and predicts with the product's fixed share of the global model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from accord.participant.training import local as train
from accord.participant.training import models, privacy
from accord.participant.training.settings import TrainingConfig
from tests.bench import load_bench

LABELS = ("fire", "flood", "outage")
OFFSET = 5.0  # how far the global head is moved from a fresh head's weights
EPSILON = 4.0


fl_sim = load_bench("fl_sim")


@pytest.fixture(scope="module")
def sim() -> tuple[Any, Any]:
    base = models.load_base_model(models.TINY_MODEL, LABELS, seed=0)
    generator = torch.Generator().manual_seed(0)

    def features(n: int) -> Any:
        text = torch.randn(n, base.model.text_tower.dim, generator=generator)
        image = torch.randn(n, base.model.image_tower.dim, generator=generator)
        labels = torch.randint(0, len(LABELS), (n,), generator=generator)
        return fl_sim.Features(text, image, labels)

    hyper = fl_sim.Hyper(0.01, 3, 1.0)
    plan = fl_sim.Plan(2, 16, 16, (hyper,), (hyper,))
    return fl_sim.Simulation(base, [features(48), features(32)], [features(8)] * 2, plan), hyper


def far_global_head(sim: Any) -> tuple[torch.nn.Module, list[str]]:
    """A head whose every trained weight is `OFFSET` away from a fresh head's."""
    head = fl_sim.head_for(sim.base)
    names = train.trainable_names(head)
    train.set_vector(head, names, train.get_vector(head, names) + np.float32(OFFSET))
    return head, names


def test_the_personal_heads_start_from_the_global_head(sim: tuple[Any, Any]) -> None:
    simulation, hyper = sim
    global_head, names = far_global_head(simulation)
    start = train.get_vector(global_head, names)
    fresh = train.get_vector(fl_sim.head_for(simulation.base), names)
    heads, _ = simulation.personalized(global_head, [hyper, hyper], None)
    for head in heads:
        personal = train.get_vector(head, names)
        moved = np.abs(personal - start)
        # trained (moved), but by a few AdamW steps of lr 0.01, not back to a fresh head
        assert moved.max() > 0 and moved.max() < 0.5
        assert np.abs(personal - fresh).min() > OFFSET - 0.5


def test_the_personal_heads_spend_a_second_budget_of_their_own(sim: tuple[Any, Any]) -> None:
    simulation, hyper = sim
    global_head = simulation.federated(hyper, EPSILON)
    updates = simulation.federated_histories[(hyper, EPSILON)]
    _, histories = simulation.personalized(global_head, [hyper, hyper], EPSILON)
    composed = simulation.composed_epsilon(hyper, EPSILON, histories)
    for own, side, both in zip(updates, histories, composed, strict=True):
        steps = sum(int(n) for _, _, n in side)
        # as many steps as each federated (and local-only) training: rounds x local steps
        assert steps == sum(int(n) for _, _, n in own) == hyper.steps * simulation.plan.rounds
        alone = privacy.epsilon("prv", side, fl_sim.DELTA)
        assert EPSILON * 0.9 < alone <= EPSILON * 1.01  # its own accountant, from zero
        assert both > max(alone, privacy.epsilon("prv", own, fl_sim.DELTA)) + 0.5


def test_the_personal_prediction_uses_the_products_global_weight() -> None:
    assert TrainingConfig().personal_global_weight == fl_sim.PERSONAL_GLOBAL_WEIGHT


def test_the_demos_personal_start_is_the_global_head_before_the_last_round(
    sim: tuple[Any, Any],
) -> None:
    simulation, hyper = sim
    global_head = simulation.federated(hyper, None)
    names = train.trainable_names(global_head)
    final = train.get_vector(global_head, names)
    fresh = train.get_vector(fl_sim.head_for(simulation.base), names)
    start = simulation.before_last_round[(hyper, None)]
    # two rounds: one FedAvg step from a fresh head, one short of the final head
    assert not np.allclose(start, fresh) and not np.allclose(start, final)
    heads, _ = simulation.personalized(global_head, [hyper, hyper], None, start)
    for head in heads:
        moved = np.abs(train.get_vector(head, names) - start)
        assert 0 < moved.max() < 0.5
