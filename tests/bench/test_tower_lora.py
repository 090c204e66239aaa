"""Smoke test of `bench/tower_lora.py` on a few digits: both settings train under DP at the
stated epsilon, LoRA in the image or the text tower really moves, and the verdict follows
the figures."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.bench import load_bench

bench = load_bench("tower_lora")


def test_both_settings_train_at_the_epsilon_and_the_verdict_follows_the_figures() -> None:
    base, fit, val, _, sizes = bench.load_data(32, 60)
    assert sizes["fit"] + sizes["validation"] + sizes["test"] == 60
    plan = bench.Plan(rounds=2, steps=2, batch_size=16)
    head, frozen = bench.frozen_run(base, fit, plan, 0.05, 1.0)
    module, towers = bench.tower_run(
        bench.fresh_base(base), fit, plan, (0.05, 1.0), ("_conv_head", 8, 0.01)
    )
    # LP-FT: one round of the head alone, then head and LoRA; the same epsilon in all.
    probed, lpft = bench.tower_run(
        bench.fresh_base(base), fit, plan, (0.05, 1.0), ("_conv_head", 8, 0.01), probe_rounds=1
    )
    assert lpft["epsilon"] == pytest.approx(towers["epsilon"], abs=1e-6)
    lora_b = [p for n, p in probed.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.count_nonzero(p) > 0 for p in lora_b)
    for info in (frozen, towers):
        assert info["epsilon"] == pytest.approx(bench.EPSILON, abs=0.05)
    lora = [p for n, p in module.named_parameters() if "lora_B" in n]
    assert lora and all(torch.count_nonzero(p) > 0 for p in lora)
    assert 0 <= bench.score(head, val, None) <= 1 and 0 <= bench.score(module, val, "image") <= 1

    args = argparse.Namespace(
        image_size=32, repeats=2, source="digits", probe_rounds=0, decoy_share=0.0
    )
    rows = {
        "frozen": ("lr 0.05", (0.7, head, frozen), [0.60, 0.62]),
        "towers": ("lr 0.05; LoRA", (0.8, module, towers), [0.64, 0.66]),
    }
    lines = bench.report_lines(args, plan, sizes, rows, "grid")
    row = f"| towers | lr 0.05; LoRA | 0.800 | 0.650 (0.640-0.660) | {towers['epsilon']:.2f} |"
    assert row in "\n".join(lines)
    assert lines[-1].startswith("**LoRA in the towers won**: mean test accuracy 0.650 vs 0.610")
    rows["towers"] = ("lr 0.05; LoRA", (0.8, module, towers), [0.58, 0.60])
    lines = bench.report_lines(args, plan, sizes, rows, "grid")
    assert lines[-1].startswith("**LoRA in the towers did not win**: mean test accuracy 0.590")


def test_lora_in_the_text_tower_trains_on_reports_with_decoys_at_the_epsilon() -> None:
    base, fit, val, _, _ = bench.load_data(32, 60, decoy_share=1.0)
    plan = bench.Plan(rounds=2, steps=2, batch_size=16)
    (targets,) = bench.TEXT_TARGETS
    module, info = bench.tower_run(
        bench.fresh_base(base), fit, plan, (0.05, 1.0), (targets, 8, 0.01), kind="text"
    )
    assert info["epsilon"] == pytest.approx(bench.EPSILON, abs=0.05)
    lora = {n: p for n, p in module.named_parameters() if "lora_B" in n}
    assert lora and all(".attention.self." in n for n in lora)
    assert all(torch.count_nonzero(p) > 0 for p in lora.values())
    # Before training (B = 0) the tuned model and the head on cached features agree.
    lora_settings = bench.train.LoraSettings(
        rank=4, alpha=8, target_modules=bench.TEXT_TARGETS[targets]
    )
    fresh = bench.TowerTuned(
        bench.train.wrap_with_lora(bench.fresh_base(base), lora_settings, 0), "text"
    )
    head = bench.fl_sim.head_for(base)
    fresh.head.load_state_dict(head.state_dict())
    tuned = bench.train.predict(fresh, val.tuned_inputs("text"))
    assert torch.allclose(tuned, bench.train.predict(head, [val.text, val.image]), atol=1e-4)
    assert 0 <= bench.score(module, val, "text") <= 1
