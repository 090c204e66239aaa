"""The ground floor's shared helpers: one fingerprint normalisation, one private-file check."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.core.kitformat import check_id
from accord.core.pki import normalize_fingerprint
from accord.core.private_files import read_private, refuse_if_readable, too_open
from accord.errors import ConfigError, UsageError

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    "pasted",
    [DIGEST, DIGEST.upper(), f"sha256:{DIGEST}", f"SHA256 {DIGEST}", ":".join(["AB"] * 32)],
)
def test_every_way_people_paste_a_fingerprint_is_one_canonical_form(pasted: str) -> None:
    assert normalize_fingerprint(pasted) == DIGEST


def test_a_wrong_fingerprint_names_the_input() -> None:
    with pytest.raises(UsageError, match="--ca-fingerprint 'ab'"):
        normalize_fingerprint("ab", what="--ca-fingerprint")


def test_a_private_file_others_may_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "tls.key"
    key.write_bytes(b"secret")
    key.chmod(0o600)
    assert too_open(key) is None
    refuse_if_readable(key, "the TLS key")  # passes
    key.chmod(0o640)
    assert too_open(key) == 0o640
    with pytest.raises(ConfigError, match=r"mode 640\); run `chmod 600 .*tls.key`"):
        refuse_if_readable(key, "the TLS key")


def test_reading_a_private_key_returns_it_refuses_it_too_open_and_says_what_to_do_when_missing(
    tmp_path: Path,
) -> None:
    key = tmp_path / "ca.key"
    missing = "the CA key is missing"
    with pytest.raises(ConfigError, match=f"{key}: {missing}"):
        read_private(key, "the CA key", missing=missing)
    key.write_bytes(b"secret")
    key.chmod(0o600)
    assert read_private(key, "the CA key", missing=missing) == b"secret"
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"the CA key is readable by group or others"):
        read_private(key, "the CA key", missing=missing)


@pytest.mark.parametrize("bad", ["", "Energy", "-energy", "a" * 64, "en ergy"])
def test_an_id_off_the_pattern_is_refused_naming_where_it_came_from(bad: str) -> None:
    check_id("energy", "--name")  # passes
    with pytest.raises(ConfigError, match=f"--name {bad!r}: must match"):
        check_id(bad, "--name")
