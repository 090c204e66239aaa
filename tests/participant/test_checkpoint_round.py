"""A federated LoRA round on a local Hugging Face checkpoint (`base_model = /path`).

Two participants fine-tune LoRA in the towers of a tiny random SigLIP checkpoint folder,
made offline in the test. Their updates go through the real secure pipeline of
`ckks+masks` (quantize, tag, pairwise and self masks, packed CKKS) and the round
machines; each reveals the aggregate, checks its integrity tags and applies the mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accord.crypto import integrity, quantize
from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.participant import exchange
from accord.participant.data import city_safety, incident_sets
from accord.participant.training import local as train
from accord.participant.training.multimodal import MultimodalTrainer
from tests.crypto.harness import FederationHarness
from tests.participant.test_models import make_siglip
from tests.support.multimodal import checkpoint_trainer

INTEGRITY_KEY = bytes(range(32))


def trainer(
    tmp_path: Path, checkpoint: Path, data: Path, name: str, seed: int
) -> MultimodalTrainer:
    return checkpoint_trainer(tmp_path / name, checkpoint, data, name=name, seed=seed)


def test_two_participants_run_a_secure_lora_round_on_a_local_checkpoint(tmp_path: Path) -> None:
    checkpoint = make_siglip(tmp_path / "siglip")
    bench = city_safety.city_safety_benchmark(2, train_per_enterprise=24, test_per_enterprise=6)
    folders = incident_sets.write_benchmark(bench, tmp_path / "data")
    trainers = [
        trainer(tmp_path, checkpoint, folders[enterprise.name], f"p{i:02d}", seed=i + 1)
        for i, enterprise in enumerate(bench.enterprises)
    ]
    first, second = trainers
    assert first.base_model_hash == second.base_model_hash  # one base model, by path
    lora_b = [n for n in train.trainable_names(first.model) if "lora_B" in n]
    assert lora_b, "LoRA in the towers"
    parameters = first.parameter_count

    harness = FederationHarness(
        2,
        profile=Profile.CKKS_MASKS,
        element_count=integrity.protected_length(parameters, Profile.CKKS_MASKS),
    )
    updates = {}
    for name, participant in zip(harness.ids, trainers, strict=True):
        update = participant.train_round(1)
        updates[name] = update
        harness.inputs[name] = exchange.encode_update(
            update,
            harness.config,
            quantize.CsprngUniforms(bytes(32)),
            integrity_key=INTEGRITY_KEY,
            participant=name,
        )
    result = harness.run()
    assert result.stage is Stage.AGGREGATE and result.aggregate is not None
    body = integrity.check(
        result.aggregate,
        INTEGRITY_KEY,
        federation_id=harness.config.federation_id,
        round=harness.config.round,
        survivors=result.survivors,
        modulus_bits=harness.config.quant.modulus_bits,
    )
    mean, total_weight = quantize.decode(body, harness.config.quant)
    assert total_weight == sum(u.sample_count for u in updates.values())
    spec = harness.config.quant
    clipped = {n: quantize.clip_l2(u.delta, spec.clip_norm) for n, u in updates.items()}
    plain = sum(clipped[n] * u.sample_count for n, u in updates.items()) / total_weight
    # The secure mean is the weighted FedAvg of the two clipped updates, up to one
    # quantization level of each (docs/ml.md, "Clip norm and quantization").
    assert np.max(np.abs(mean - plain)) <= 2 * spec.step * spec.cap / total_weight
    # Stochastic rounding is unbiased: the mean is near FedAvg as a whole, not just within
    # the (loose, at 24 samples each) per-element bound.
    assert np.linalg.norm(mean - plain) < 0.5 * np.linalg.norm(plain)
    for participant in trainers:
        participant.apply(mean)
    vectors = [train.get_vector(t.model, train.trainable_names(t.model)) for t in trainers]
    np.testing.assert_array_equal(vectors[0], vectors[1])  # one global adapter
    names = train.trainable_names(first.model)
    moved = train.get_vector(first.model, lora_b)
    assert np.any(moved != 0), "the towers' LoRA B matrices trained"
    assert len(names) > len(lora_b)
