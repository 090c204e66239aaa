"""What `accord demo` sets up for the multimodal trainer, and how its summary compares models.

Each participant gets its own enterprise of the city-safety benchmark (label skew kept
for any N), the demo profile of the trainer, sample-level DP and a clip norm that fits
its updates; the summary sets the federated adapter beside a local-only baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile
from accord.crypto.profile import Profile
from accord.demo import accuracy as demo_accuracy
from accord.demo import command as demo
from accord.demo import data as demo_data
from accord.demo import report as demo_report
from accord.demo import setup as demo_setup
from accord.demo.faults import plan
from accord.participant.config import ParticipantConfig

FOUR = demo_setup.participant_names(4)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, demo_data.DemoData]:
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, demo_data.write_demo_data(workdir, FOUR, seed=0)


def test_every_participant_gets_its_own_skewed_enterprise_and_all_share_one_test_set(
    data: tuple[Path, demo_data.DemoData],
) -> None:
    workdir, written = data
    assert set(written.folders) == set(FOUR)
    described = json.loads((workdir / "data" / demo_data.BENCHMARK_FILE).read_text())
    assert described["benchmark"] == "city-safety" and described["settings"]["synthetic"]
    mixes = []
    for name in FOUR:
        folder = written.folders[name]
        assert folder == workdir / "data" / name
        assert (folder / "manifest.jsonl").is_file() and (folder / "labels.json").is_file()
        entry = described["participants"][name]
        assert entry["train"] > 0 and entry["test"] > 0
        mixes.append(tuple(entry["train_labels"].values()))
    # Four enterprises, no two with the same label mix; p4 shares energy's domain.
    assert len(set(mixes)) == len(FOUR)
    assert described["participants"]["p4"]["enterprise"].startswith("energy")
    pooled = (written.pooled_test / "manifest.jsonl").read_text().splitlines()
    assert (
        len(pooled)
        == described["pooled_test"]
        == sum(described["participants"][n]["test"] for n in FOUR)
    )
    assert written.feature_cache == workdir / "features"


def test_a_multimodal_participant_trains_the_demo_profile_with_dp(
    data: tuple[Path, demo_data.DemoData],
) -> None:
    workdir, written = data
    (workdir / "participants" / "p4").mkdir(parents=True)
    path = demo_setup.write_participant_config(
        workdir,
        "p4",
        "127.0.0.1:1",
        seed=0,
        index=3,
        trainer="multimodal",
        data=written,
        privacy=demo_setup.DemoPrivacy(target_epsilon=8.0, rounds=5),
    )
    config = configfile.load(path, ParticipantConfig, "participant")
    assert config.trainer == "multimodal"
    assert config.data_dir == written.folders["p4"]
    assert (config.local_steps, config.batch_size, config.learning_rate) == (10, 128, 0.05)
    assert config.training.torch_threads == 1
    assert config.training.eval_data_dir == written.pooled_test
    assert config.training.feature_cache_dir == written.feature_cache
    assert config.dp.enabled and config.dp.target_epsilon == 8.0 and config.dp.rounds == 5
    assert config.dp.accountant == "rdp" and config.dp.delta == demo_setup.DEMO_DP_DELTA


def test_the_tiny_trainer_stays_available_without_dp(tmp_path: Path) -> None:
    (tmp_path / "participants" / "energy").mkdir(parents=True)
    path = demo_setup.write_participant_config(
        tmp_path, "energy", "127.0.0.1:1", seed=0, index=0, trainer="lora-mlp"
    )
    config = configfile.load(path, ParticipantConfig, "participant")
    assert config.trainer == "accord.demo.lora_mlp:LoraMlpTrainer" and not config.dp.enabled


def test_the_demo_names_its_trainers_by_an_import_path_the_participant_loads() -> None:
    from accord.participant.training.protocol import trainer_class

    loaded = {name: trainer_class(path) for name, path in demo_setup.DEMO_TRAINER_PATHS.items()}
    assert {name: c.__name__ for name, c in loaded.items()} == {
        "lora-mlp": "LoraMlpTrainer",
        "synthetic": "SyntheticTrainer",
    }


@pytest.mark.parametrize(("trainer", "clip_norm"), [("multimodal", 40.0), ("lora-mlp", 1.0)])
def test_the_coordinator_clips_at_the_norm_that_fits_the_trainer(
    tmp_path: Path, trainer: str, clip_norm: float
) -> None:
    names = demo_setup.participant_names(3)
    path = demo_setup.write_coordinator_config(
        tmp_path, names, Profile.NONE, 5, clip_norm=demo_setup.DEMO_CLIP_NORM[trainer]
    )
    assert configfile.load(path, CoordinatorConfig, "coordinator").clip_norm == clip_norm


def test_client_level_noise_is_off_by_default_and_on_in_secure_profiles_on_request(
    tmp_path: Path,
) -> None:
    names = demo_setup.participant_names(3)

    def client_dp(folder: str, profile: Profile, **settings):
        path = demo_setup.write_coordinator_config(tmp_path / folder, names, profile, 5, **settings)
        return configfile.load(path, CoordinatorConfig, "coordinator").client_dp

    assert demo_setup.DEMO_CLIENT_NOISE == 0.0
    assert client_dp("default", Profile.MASKS) is None  # three silos: nothing it could buy
    noise = client_dp("on", Profile.MASKS, client_noise=0.5)  # --client-noise 0.5
    assert noise is not None and noise.noise_multiplier == 0.5
    assert client_dp("plain", Profile.NONE) is None  # nothing to hide the shares in


def test_the_budget_covers_the_rounds_a_planned_restart_may_abort() -> None:
    names = demo_setup.participant_names(3)
    assert demo.fault_plan_restarts(plan(names, Profile.CKKS_MASKS, threshold=2, rounds=3)) == 0
    faults = plan(
        names,
        Profile.CKKS_MASKS,
        threshold=2,
        rounds=3,
        restart_coordinator="2",
        restart_participants=["energy:3"],
    )
    assert demo.fault_plan_restarts(faults) == 2


def metrics_line(own: float, local_own: float, pooled: float, local_pooled: float) -> dict:
    return {
        "round": 5,
        "dp_epsilon": 7.99,
        "global_accuracy": own,
        "global_local_only_accuracy": local_own,
        "global_pooled_accuracy": pooled,
        "global_local_only_pooled_accuracy": local_pooled,
    }


def test_the_summary_sets_federated_beside_local_only_and_says_how(capsys) -> None:
    participants = {
        "energy": metrics_line(0.9, 0.95, 0.88, 0.5),
        "residential": metrics_line(0.8, 0.85, 0.88, 0.6),
    }
    accuracy = demo_accuracy.accuracy_summary(participants)
    assert accuracy is not None
    assert accuracy["participants"]["energy"]["pooled_test"] == {
        "federated": 0.88,
        "local_only": 0.5,
        "personalized": None,  # not reported in this line
    }
    energy = accuracy["participants"]["energy"]
    assert (energy["federated_accuracy"], energy["local_only_accuracy"]) == (0.88, 0.5)
    assert accuracy["participants"]["residential"]["dp_epsilon"] == 7.99
    assert accuracy["mean"]["pooled_test"]["local_only"] == pytest.approx(0.55)
    assert accuracy["mean"]["own_test"]["federated"] == pytest.approx(0.85)
    assert "local_only" in accuracy["method"] and "alone" in accuracy["method"]
    # The composed epsilon of everything trained (updates and baseline) wins when reported.
    composed = {**metrics_line(0.9, 0.95, 0.88, 0.5), "dp_epsilon_composed": 11.5}
    composed["global_personalized_accuracy"] = 0.97
    again = demo_accuracy.accuracy_summary({"energy": composed})
    assert again is not None
    assert again["participants"]["energy"]["dp_epsilon"] == 11.5
    assert again["participants"]["energy"]["own_test"]["personalized"] == 0.97
    assert demo_accuracy.accuracy_summary({"energy": {"global_eval_loss": 0.5}}) is None

    summary = {
        "rounds": [],
        "participants": list(participants),
        "metrics": {"participants": participants, "adapters_identical": True},
        "accuracy": accuracy,
        "events": [],
        "processes": {},
        "rounds_completed": 5,
        "wall_s": 1.0,
        "workdir": "/tmp/x",
    }
    demo_report.print_summary(summary)
    printed = capsys.readouterr().out
    assert "federated vs local-only" in printed and "88.0%" in printed and "55.0%" in printed
    words = " ".join(printed.split())  # rich wraps lines at the terminal's width
    assert "beats every participant training alone (at best 60.0%" in words


def test_the_privacy_line_sets_client_level_beside_record_level() -> None:
    off = {
        "accountant": "rdp",
        "delta": 1e-5,
        "record_level_max": 15.03,
        "client_level": {"status": "off", "epsilon": None, "noise_multipliers": []},
    }
    line = demo_report._privacy_line(off)
    assert "record-level epsilon 15.03" in line and "client-level: off" in line
    on = {**off, "client_level": {"status": "on", "epsilon": 7.37, "noise_multipliers": [1.0]}}
    line = demo_report._privacy_line(on)
    assert "record-level epsilon 15.03" in line
    assert "client-level epsilon 7.37 (aggregate noise z = 1)" in line


def test_the_verdict_names_a_personal_model_behind_local_only() -> None:
    energy = {**metrics_line(0.9, 0.95, 0.88, 0.5), "global_personalized_accuracy": 0.97}
    urban = {**metrics_line(0.8, 0.85, 0.88, 0.9), "global_personalized_accuracy": 0.84}
    accuracy = demo_accuracy.accuracy_summary({"energy": energy, "urban": urban})
    assert accuracy is not None
    verdict = demo_accuracy.accuracy_verdict(accuracy)
    assert "does not beat every participant training alone (at best 90.0%" in verdict
    assert "matches or beats local-only for 1 of 2 participants (behind: urban)" in verdict


def test_the_demo_signs_terms_that_hold_its_coordinator_and_its_members(tmp_path: Path) -> None:
    from accord.coordinator.terms import check_coordinator_config, load_terms
    from accord.core.kitformat import TERMS_FILE
    from accord.participant.terms import check_own_settings, describe_model, load_kit_terms

    names = FOUR[:3]
    table = demo_setup.participant_table(
        names[0], "127.0.0.1:1", seed=0, index=0, trainer="lora-mlp"
    )
    terms = demo_setup.demo_terms(
        tmp_path,
        Profile.CKKS_MASKS,
        rounds=2,
        threshold=2,
        clip_norm=demo_setup.DEMO_CLIP_NORM["lora-mlp"],
        client_noise=0.0,
        participant_table=table,
    )
    provisioned = demo_setup.provision_demo(
        tmp_path, names, Profile.CKKS_MASKS, port=1, terms=terms
    )
    path = demo_setup.write_coordinator_config(
        tmp_path,
        names,
        Profile.CKKS_MASKS,
        2,
        provisioned=provisioned,
        threshold=2,
        clip_norm=demo_setup.DEMO_CLIP_NORM["lora-mlp"],
    )
    coordinator = configfile.load(path, CoordinatorConfig, "coordinator")
    assert coordinator.terms == provisioned.coordinator_dir / TERMS_FILE
    signed = load_terms(coordinator.terms, provisioned.coordinator_dir / "ca.pem")
    check_coordinator_config(signed, coordinator)  # raises on any departure
    assert (signed.threshold, signed.min_cohort, signed.rounds) == (2, 2, 2)
    for index, name in enumerate(names):
        kit = provisioned.kits[name]
        assert load_kit_terms(kit, (kit / "ca.pem").read_bytes()) == signed
        member = demo_setup.write_participant_config(
            tmp_path, name, "127.0.0.1:1", seed=0, index=index, kit=kit, trainer="lora-mlp"
        )
        settings = configfile.load(member, ParticipantConfig, "participant")
        model_hash, parameters = describe_model(settings)
        assert (model_hash, parameters) == (signed.base_model_hash, signed.adapter_parameters)
        check_own_settings(
            signed, name=name, base_model_hash=model_hash, adapter_parameters=parameters
        )


def test_a_demo_threshold_of_half_or_less_is_refused() -> None:
    from accord.errors import UsageError

    assert demo_setup.check_threshold(None, 4) == 3
    assert demo_setup.check_threshold(3, 4) == 3
    with pytest.raises(UsageError, match="from 3 to the 4 participants"):
        demo_setup.check_threshold(2, 4)


def test_the_summary_says_what_the_adapter_trains(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "participants" / "energy" / "adapters"
    tuned = {"head": 16_650, "tower_lora": 92_160, "tower_lora_targets": ["query", "_conv_head"]}
    for round_, trained in ((1, {"head": 10, "tower_lora": 0}), (2, tuned)):
        (folder / f"round-{round_:04d}").mkdir(parents=True)
        (folder / f"round-{round_:04d}" / "accord.json").write_text(
            json.dumps({"parameters": 17, "trained": trained})
        )
    assert demo_report._trained(tmp_path, ["energy"]) == tuned
    assert demo_report._trained(tmp_path, ["urban"]) is None
    assert demo_report._trained_line(tuned) == (
        "Trained: the fusion head, 16,650 parameters; LoRA in the towers (query, _conv_head), "
        "92,160 parameters."
    )
    frozen = demo_report._trained(tmp_path, ["energy"]) | {"tower_lora": 0}
    assert demo_report._trained_line(frozen) == (
        "Trained: the fusion head, 16,650 parameters; the towers frozen (no LoRA trained in "
        "them: tune_towers = false)."
    )
    # An adapter folder written before the targets were recorded still reads.
    (folder / "round-0002" / "accord.json").write_text(
        json.dumps({"trained": {"head": 1, "tower_lora": 2}})
    )
    older = demo_report._trained(tmp_path, ["energy"])
    assert older == {"head": 1, "tower_lora": 2, "tower_lora_targets": []}
    assert "LoRA in the towers (targets unknown), 2 parameters" in demo_report._trained_line(older)


def test_a_personal_model_behind_says_by_how_many_records_and_how_likely_by_chance() -> None:
    paired = {
        "global_personalized_gains": 3,
        "global_personalized_losses": 5,
        "global_test_records": 100,
    }
    urban = {**metrics_line(0.8, 0.85, 0.88, 0.9), "global_personalized_accuracy": 0.83}
    accuracy = demo_accuracy.accuracy_summary({"urban": {**urban, **paired}})
    assert accuracy is not None
    assert accuracy["participants"]["urban"]["own_test"]["paired"] == {
        "gains": 3,
        "losses": 5,
        "records": 100,
        "p": pytest.approx(2 * (1 + 8 + 28 + 56) / 256),  # P(at most 3 of 8 | fair coin)
    }
    verdict = demo_accuracy.accuracy_verdict(accuracy)
    assert "(behind: urban by 2 of 100 records (3 right only by the personal model, 5 only by " in (
        verdict
    )
    assert "sign test p = 0.73, within the noise of one DP draw)" in verdict
    lopsided = {**paired, "global_personalized_gains": 0, "global_personalized_losses": 9}
    accuracy = demo_accuracy.accuracy_summary({"urban": {**urban, **lopsided}})
    assert accuracy is not None
    verdict = demo_accuracy.accuracy_verdict(accuracy)
    assert "sign test p = 0.00)" in verdict and "within the noise" not in verdict
