"""A bad config file fails with the file, the field, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile
from accord.crypto.profile import Profile
from accord.errors import ConfigError
from accord.participant.config import ParticipantConfig

KEY = "11" * 32
PLAIN = "insecure_plaintext = true\n"
KEYS = PLAIN + f'identity_keys = {{energy = "{KEY}", residential = "{KEY}", urban = "{KEY}"}}\n'


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load_coordinator(tmp_path: Path, body: str) -> CoordinatorConfig:
    path = write(tmp_path, "coordinator.toml", "[coordinator]\n" + body)
    return configfile.load(path, CoordinatorConfig, "coordinator")


def test_defaults_work_on_one_machine(tmp_path: Path) -> None:
    config = load_coordinator(tmp_path, KEYS)
    assert config.listen_host == "127.0.0.1"
    assert config.profile is Profile.CKKS_MASKS
    assert config.state_dir == tmp_path / "coordinator"
    assert config.resolved_store_url.endswith("coordinator/coordinator.sqlite")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "threshold = 0\n",
            "coordinator.toml [coordinator] threshold = 0: must be >= 2 "
            "(least number of participants whose inputs are summed)",
        ),
        (
            "stage_deadline_s = -1\n",
            "coordinator.toml [coordinator] stage_deadline_s = -1: must be > 0 "
            "(seconds a round stage waits for late participants)",
        ),
        (
            'profile = "secret"\n',
            'coordinator.toml [coordinator] profile = "secret": must be one of',
        ),
        ("modulus_bits = 13\n", "modulus_bits = 13: must be one of 8, 12, 16, 24 or 32"),
        ("treshold = 3\n", "[coordinator] treshold: unknown setting (did you mean 'threshold'?)"),
        ('listen_port = "x"\n', 'listen_port = "x": input should be a valid integer'),
        ('participants = ["Energy", "b"]\n', "participant id 'Energy' must be lower case"),
    ],
)
def test_coordinator_errors_name_field_value_and_fix(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_coordinator(tmp_path, body + KEYS)
    assert message in str(caught.value)


def test_model_rules_name_the_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"threshold = 4 exceeds the 3 participants"):
        load_coordinator(tmp_path, "threshold = 4\n" + KEYS)
    with pytest.raises(ConfigError, match=r"identity_keys: no key for energy, residential, urban"):
        load_coordinator(tmp_path, PLAIN)
    with pytest.raises(ConfigError, match=r"profile = none .* insecure_plaintext = true"):
        load_coordinator(tmp_path, 'profile = "none"\n')


def test_mtls_is_the_default_and_needs_the_provisioned_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_coordinator(tmp_path, "")
    assert str(caught.value).startswith(
        "coordinator.toml [coordinator]: tls_dir: required unless insecure_plaintext = true "
        "(run `accord provision federation.toml --out DIR`"
    )
    with pytest.raises(ConfigError, match=r"roster: required unless insecure_plaintext"):
        load_coordinator(tmp_path, 'tls_dir = "fed/coordinator"\n')
    tls = 'tls_dir = "fed/coordinator"\nroster = "fed/coordinator/roster.json"\n'
    with pytest.raises(ConfigError, match=r"identity_keys: only for insecure_plaintext = true"):
        load_coordinator(tmp_path, tls + f'identity_keys = {{energy = "{KEY}"}}\n')
    # The roster names the participants, so the threshold is checked when it is read.
    config = load_coordinator(tmp_path, tls + "threshold = 5\n")
    assert config.tls_dir == tmp_path / "fed" / "coordinator"
    assert config.roster == tmp_path / "fed" / "coordinator" / "roster.json"
    assert not config.insecure_plaintext and config.identities() == {}
    with pytest.raises(ConfigError, match=r"threshold = 5 exceeds the 2 participants"):
        load_coordinator(tmp_path, tls + 'threshold = 5\nparticipants = ["a", "b"]\n')


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        configfile.load(tmp_path / "missing.toml", CoordinatorConfig, "coordinator")
    bad = write(tmp_path, "bad.toml", "[coordinator\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        configfile.load(bad, CoordinatorConfig, "coordinator")
    other = write(tmp_path, "other.toml", "[participant]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown table \[participant\]"):
        configfile.load(other, CoordinatorConfig, "coordinator")


def test_participant_requires_a_name_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "participant.toml", "[participant]\nseed = 3\n")
    with pytest.raises(ConfigError) as caught:
        configfile.load(path, ParticipantConfig, "participant")
    assert str(caught.value) == (
        "participant.toml [participant] name: required, but missing "
        "(this participant's id, as listed by the coordinator (with a kit, the kit's "
        "participant id))"
    )


def test_participant_paths_resolve_against_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "participant.toml", '[participant]\nname = "energy"\n')
    config = configfile.load(path, ParticipantConfig, "participant")
    assert config.identity_key == tmp_path / "identity.pem"
    assert config.coordinator == "127.0.0.1:50051"


def test_participant_workers_default_to_auto_and_refuse_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "p.toml", '[participant]\nname = "energy"\n')
    assert configfile.load(path, ParticipantConfig, "participant").workers == "auto"
    two = write(tmp_path, "two.toml", '[participant]\nname = "energy"\nworkers = 2\n')
    assert configfile.load(two, ParticipantConfig, "participant").workers == 2
    zero = write(tmp_path, "zero.toml", '[participant]\nname = "energy"\nworkers = 0\n')
    with pytest.raises(ConfigError, match=r"zero\.toml \[participant\] workers.*0"):
        configfile.load(zero, ParticipantConfig, "participant")


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "p.toml", '[participant]\nname = "energy"\n')
    config = configfile.load(
        path, ParticipantConfig, "participant", overrides={"insecure_plaintext": True}
    )
    assert config.insecure_plaintext


def test_dumps_then_load_gives_the_same_config(tmp_path: Path) -> None:
    original = load_coordinator(tmp_path, 'profile = "masks"\nrounds = 5\n' + KEYS)
    text = configfile.dumps(original, "coordinator", relative_to=tmp_path)
    assert 'state_dir = "coordinator"' in text
    again = configfile.load(write(tmp_path, "again.toml", text), CoordinatorConfig, "coordinator")
    assert again == original


def test_configs_are_frozen(tmp_path: Path) -> None:
    config = load_coordinator(tmp_path, KEYS)
    with pytest.raises(ValueError, match="frozen"):
        config.rounds = 3  # type: ignore[misc]


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A provisioned federation `city-safety` with kits for energy and urban."""
    from accord.federation.provision import (
        FederationFile,
        FederationSection,
        ParticipantSection,
        provision_federation,
    )

    folder = tmp_path_factory.mktemp("fed") / "fed"
    federation = FederationFile(
        federation=FederationSection(id="city-safety", coordinator="127.0.0.1:50999"),
        participants=(ParticipantSection(name="energy"), ParticipantSection(name="urban")),
    )
    return provision_federation(federation, folder).root / "kits"


def test_participant_takes_who_and_where_from_its_kit(tmp_path: Path, kits: Path) -> None:
    path = write(tmp_path, "participant.toml", f'[participant]\nkit = "{kits / "energy"}"\n')
    config = configfile.load(path, ParticipantConfig, "participant")
    assert (config.name, config.federation_id) == ("energy", "city-safety")
    assert config.coordinator == "127.0.0.1:50999"
    assert config.identity_key == kits / "energy" / "identity.key"
    assert not config.insecure_plaintext
    # The address may be overridden (the demo's port), and the filled-in values agree.
    moved = configfile.load(
        path, ParticipantConfig, "participant", overrides={"coordinator": "localhost:7"}
    )
    assert moved.coordinator == "localhost:7"
    table = {name: getattr(config, name) for name in ("kit", "name", "identity_key")}
    assert configfile.validate(table, ParticipantConfig, "participant").name == "energy"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('name = "urban"\n', "name = 'urban', but the kit in .* says 'energy' \\(remove name"),
        ('federation_id = "other"\n', "federation_id = 'other', but the kit"),
        ('identity_key = "mine.pem"\n', "identity_key = 'mine.pem', but the kit's identity key"),
    ],
)
def test_participant_settings_cannot_contradict_the_kit(
    tmp_path: Path, kits: Path, extra: str, message: str
) -> None:
    path = write(tmp_path, "participant.toml", f'[participant]\nkit = "{kits / "energy"}"\n{extra}')
    with pytest.raises(ConfigError, match=message):
        configfile.load(path, ParticipantConfig, "participant")


def test_participant_with_a_missing_kit_says_how_to_make_one(tmp_path: Path) -> None:
    path = write(tmp_path, "participant.toml", '[participant]\nkit = "nowhere"\n')
    with pytest.raises(ConfigError) as caught:
        configfile.load(path, ParticipantConfig, "participant")
    text = str(caught.value)
    assert text.startswith("participant.toml [participant]: kit = ")
    assert "no kit file" in text and "accord kit package" in text


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"training": {"lora_dropout": 2}},
            "[participant.training] lora_dropout = 2: must be < 1 (dropout on the LoRA input)",
        ),
        (
            {"training": {"lora_drop": 0.1}},
            "[participant.training] lora_drop: unknown setting (did you mean 'lora_dropout'?)",
        ),
        (
            {"dp": {"enabled": True}},
            "[participant.dp]: with enabled = true, set exactly one of noise_multiplier and "
            "target_epsilon",
        ),
        ({"data_quality": {"exclude_flagged": "x"}}, "[participant.data_quality] exclude_flagged"),
        ({"lora_rank": 0}, "[participant] lora_rank = 0: must be >= 1"),
        ({"training": 3}, "[participant] training = 3: input should be a valid dictionary"),
    ],
)
def test_errors_name_the_sub_table_they_are_in(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configfile.validate(
            {"name": "x", "insecure_plaintext": True, **table}, ParticipantConfig, "participant"
        )
    assert message in str(caught.value)
