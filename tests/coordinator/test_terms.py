"""The coordinator holds enrolments, its own config and its rounds to the CA-signed terms."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from accord.coordinator.orchestrator import Orchestrator
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.profile import Profile
from accord.crypto.terms import FederationTerms
from accord.errors import ConfigError, TermsDeparted
from accord.wire.headers import Header

from .plaintext_federation import (
    ADAPTER_PARAMETERS,
    MODEL_HASH,
    NAMES,
    json_logger,
    make_config,
    make_keys,
)


def _terms(**changes: object) -> FederationTerms:
    fields: dict[str, object] = dict(
        federation_id="accord-demo",
        profile=Profile.NONE,
        threshold=2,
        min_cohort=2,
        modulus_bits=16,
        clip_norm=40.0,
        base_model_hash=MODEL_HASH,
        adapter_parameters=ADAPTER_PARAMETERS,
        rounds=2,
    )
    fields.update(changes)
    return FederationTerms(**fields)  # type: ignore[arg-type]


def _header(name: str) -> Header:
    return Header(federation_id="accord-demo", round=0, stage=None, participant=name)


@pytest.fixture
def log(tmp_path: Path) -> logging.Logger:
    return json_logger(tmp_path)


def test_a_hostile_first_enrolee_is_refused_and_fixes_nothing(tmp_path, log) -> None:
    keys = make_keys()
    orchestrator = Orchestrator(make_config(tmp_path, keys), log=log, terms=_terms())
    with pytest.raises(TermsDeparted, match=r"^energy: base model hash 'cdcd"):
        orchestrator.enroll(
            _header("energy"), base_model_hash="cd" * 32, adapter_parameters=ADAPTER_PARAMETERS
        )
    with pytest.raises(TermsDeparted, match=r"^energy: adapter of 1099511627776 parameters"):
        orchestrator.enroll(_header("energy"), base_model_hash=MODEL_HASH, adapter_parameters=2**40)
    # The honest members enrol with the signed values; the round starts with the terms' size.
    for name in NAMES[1:]:
        orchestrator.enroll(
            _header(name), base_model_hash=MODEL_HASH, adapter_parameters=ADAPTER_PARAMETERS
        )
    status = orchestrator.status()
    assert status.lifecycle is Lifecycle.ENROLL
    assert [row[0] for row in status.members if row[2] == "enrolled"] == list(NAMES[1:])


def test_without_terms_a_huge_adapter_is_refused_before_anything_changes(tmp_path, log) -> None:
    keys = make_keys()
    orchestrator = Orchestrator(make_config(tmp_path, keys), log=log)
    for name in NAMES[:2]:
        with pytest.raises(ConfigError, match="exceeds the largest"):
            orchestrator.enroll(_header(name), base_model_hash=MODEL_HASH, adapter_parameters=2**40)
    assert orchestrator.status().lifecycle is Lifecycle.ENROLL
    assert orchestrator.status().round == 0


def test_a_coordinator_config_that_departs_from_the_terms_does_not_start(tmp_path, log) -> None:
    keys = make_keys()
    with pytest.raises(
        TermsDeparted, match=r"modulus_bits = 8 departs from the signed terms \(16\)"
    ):
        Orchestrator(make_config(tmp_path, keys, modulus_bits=8), log=log, terms=_terms())
    with pytest.raises(
        TermsDeparted, match=r"threshold = 2 departs from the signed terms \(>= 3\)"
    ):
        Orchestrator(make_config(tmp_path, keys), log=log, terms=_terms(threshold=3, min_cohort=3))


def test_rounds_are_built_from_the_terms(tmp_path, log) -> None:
    names = (*NAMES, "wind")
    keys = make_keys(names)
    orchestrator = Orchestrator(make_config(tmp_path, keys), log=log, terms=_terms())
    for name in names:
        orchestrator.enroll(
            _header(name), base_model_hash=MODEL_HASH, adapter_parameters=ADAPTER_PARAMETERS
        )
    task = orchestrator.next_task(_header("energy"), wait_s=0)
    assert task.config is not None
    # Four selected: the t > n/2 rule lifts the configured threshold 2 to 3.
    assert task.config.threshold == 3
    assert task.config.element_count == ADAPTER_PARAMETERS + 1
