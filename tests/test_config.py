"""A bad config file fails with the file, the field, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord import configfile
from accord.coordinator.config import CoordinatorConfig
from accord.crypto.profile import Profile
from accord.errors import ConfigError
from accord.participant.config import ParticipantConfig

KEY = "11" * 32
KEYS = f'identity_keys = {{energy = "{KEY}", residential = "{KEY}", urban = "{KEY}"}}\n'


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
        load_coordinator(tmp_path, "")
    with pytest.raises(ConfigError, match=r"profile = none .* insecure_plaintext = true"):
        load_coordinator(tmp_path, 'profile = "none"\n' + KEYS)


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
        "(this participant's id, as listed by the coordinator)"
    )


def test_participant_paths_resolve_against_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "participant.toml", '[participant]\nname = "energy"\n')
    config = configfile.load(path, ParticipantConfig, "participant")
    assert config.identity_key == tmp_path / "identity.pem"
    assert config.coordinator == "127.0.0.1:50051"


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
