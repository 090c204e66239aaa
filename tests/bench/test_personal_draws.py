"""bench/personal_draws.py: its table counts what it says, and its plan is the demo's."""

from __future__ import annotations

from tests.bench import load_bench

fl_sim = load_bench("fl_sim")
personal_draws = load_bench("personal_draws")


def test_the_table_counts_draws_at_or_above_local_only() -> None:
    # Two draws, two enterprises: (local-only, personal) own-test accuracy.
    results = [[(0.90, 0.92), (0.80, 0.80)], [(0.94, 0.93), (0.81, 0.83)]]
    rows = personal_draws.table(7, ["a", "b"], results)
    assert rows[0] == "| 7 | a | 92.0 | 92.5 | +0.5 | 2.1 | 1 of 2 |"
    assert rows[1] == "| 7 | b | 80.5 | 81.5 | +1.0 | 1.4 | 2 of 2 |"  # a tie counts
    assert rows[2] == "| 7 | every enterprise | | | | | 1 of 2 |"


def test_the_plan_is_the_demo_profile() -> None:
    plan, hyper = personal_draws.PLAN, personal_draws.DEMO
    assert (hyper.learning_rate, hyper.steps, hyper.clip) == (0.05, 10, 1.0)
    assert (plan.rounds, plan.dp_batch_size, plan.accountant) == (5, 128, "rdp")
    settings = fl_sim.settings(hyper, plan, personal_draws.EPSILON, 400)
    assert settings.dp is not None and settings.dp.accountant == "rdp"
    assert settings.dp.planned_steps == 50 and settings.batch_size == 128


def test_a_draw_without_dp_scores_the_asked_test_records() -> None:
    from accord.participant.data import incident_sets
    from accord.participant.training import models

    base = models.load_base_model(models.TINY_MODEL, incident_sets.INCIDENT_LABELS)
    [draw] = personal_draws.draws_of(base, 5, 1, None, test_records=7, epsilon=None)
    assert len(draw) == 3
    for pair in draw:
        for accuracy in pair:
            # Scored on exactly 7 own test records: a multiple of 1/7.
            assert abs(accuracy * 7 - round(accuracy * 7)) < 1e-6, draw
