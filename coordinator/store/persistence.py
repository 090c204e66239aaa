"""What the coordinator writes to its store, when, and how a restart reads it back.

The orchestrator keeps the federation in memory and calls `FederationRecords` at each
transition that must survive a `kill -9`:

    enrolment            the membership (model hash, adapter size, ceremony keys)
    key ceremony         the public CKKS context and the envelopes sealed to members
    round started        the round's config               (round row, in flight)
    stage opened         the stage name
    aggregate ready      the aggregate (the sum only) and the outcome, in one step
    round done           the outcome; the aggregate stays for `keep_aggregates` rounds
    round aborted        the reason; the stored aggregate (if any) is dropped

On restart `resume()` returns what to continue with. A round that was serving its
aggregate is resumed (serving the stored sum again is idempotent, so every survivor
ends with the same global adapter); a round in any earlier stage is aborted cleanly and
the federation goes on with a fresh round number, so nothing is applied twice.

A finished round's aggregate is kept for the next `keep_aggregates` rounds, so that a
member that missed a round (not selected, dropped, restarted) downloads it with the
round's config (`finished_aggregate`) and applies it: every member's global adapter
stays the same sum of the same aggregates.

Nothing written here is a secret: envelopes are sealed to the participants, the public
context holds no key, and the aggregate is ciphertext in the CKKS profiles (the
`masks` profile lets the coordinator learn the aggregate by design).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from accord.coordinator.records import KeyState
from accord.coordinator.store.database import Store
from accord.coordinator.store.rows import RoundRow, RoundStatus
from accord.crypto.client_dp import ClientNoise
from accord.crypto.messages import (
    ConfirmSurvivors,
    RoundConfig,
    Stage,
    SurvivorEvidence,
    SurvivorSet,
    UploadDone,
)
from accord.crypto.packing import PackingSpec
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.crypto.round import RoundOutcome
from accord.errors import Expired, IntegrityError, OutOfStage, RoundAborted
from accord.wire.ceremony import SealedKey
from accord.wire.status import RoundRecord

FORMAT_VERSION = 1
KEYS_META = "key_state"
MEMBERS_META = "membership"


@dataclass(frozen=True)
class Resumed:
    """Where a restarted coordinator picks up."""

    last_round: int
    rounds_completed: int
    history: tuple[RoundRecord, ...]
    aggregate: tuple[RoundConfig, RoundOutcome] | None


def round_config_to_json(config: RoundConfig) -> str:
    """The round's parameters, versioned, as the store keeps them."""
    packing = config.packing
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "federation_id": config.federation_id,
            "round": config.round,
            "profile": config.profile.value,
            "selected": list(config.selected),
            "threshold": config.threshold,
            "quant": {
                "modulus_bits": config.quant.modulus_bits,
                "max_participants": config.quant.max_participants,
                "clip_norm": config.quant.clip_norm,
                "value_bound": config.quant.value_bound,
                "weight_cap": config.quant.weight_cap,
            },
            "element_count": config.element_count,
            "packing": None
            if packing is None
            else {
                "modulus_bits": packing.modulus_bits,
                "max_participants": packing.max_participants,
                "fields_per_real": packing.fields_per_real,
                "field_bits": packing.field_bits,
                "scale_bits": packing.scale_bits,
                "poly_modulus_degree": packing.poly_modulus_degree,
            },
            "neighbour_degree": config.neighbour_degree,
            "graph_seed": config.graph_seed.hex(),
            "key_epoch": config.key_epoch,
            "client_noise": None
            if config.client_noise is None
            else {
                "noise_multiplier": config.client_noise.noise_multiplier,
                "honest_fraction": config.client_noise.honest_fraction,
                "delta": config.client_noise.delta,
            },
        },
        sort_keys=True,
    )


def round_config_from_json(text: str) -> RoundConfig:
    """Inverse of `round_config_to_json`.

    Raises:
        IntegrityError: the record is of an unknown format version.
    """
    data = json.loads(text)
    if data.get("version") != FORMAT_VERSION:
        raise IntegrityError(f"round record of format {data.get('version')!r}")
    packing = data["packing"]
    noise = data.get("client_noise")
    return RoundConfig(
        federation_id=data["federation_id"],
        round=data["round"],
        profile=Profile(data["profile"]),
        selected=tuple(data["selected"]),
        threshold=data["threshold"],
        quant=QuantSpec(**data["quant"]),
        element_count=data["element_count"],
        packing=None if packing is None else PackingSpec(**packing),
        neighbour_degree=data["neighbour_degree"],
        graph_seed=bytes.fromhex(data["graph_seed"]),
        key_epoch=data["key_epoch"],
        # Records of coordinators before client-level noise have no such field.
        client_noise=None if noise is None else ClientNoise(**noise),
    )


def evidence_to_json(evidence: SurvivorEvidence | None) -> object:
    """A signed survivor set as JSON values (None stays None: the plaintext profile)."""
    if evidence is None:
        return None
    survivor_set = evidence.survivor_set
    return {
        "survivors": list(survivor_set.survivors),
        "dropped": list(survivor_set.dropped),
        "commitments": [
            [c.sender, c.digest.hex(), c.chunk_count, c.sequence, c.signature.hex()]
            for c in survivor_set.commitments
        ],
        "signatures": [
            [s.sender, s.statement.hex(), s.sequence, s.signature.hex()]
            for s in evidence.signatures
        ],
    }


def evidence_from_json(data: object) -> SurvivorEvidence | None:
    """Inverse of `evidence_to_json`; records of older coordinators have none."""
    if not isinstance(data, dict):
        return None
    return SurvivorEvidence(
        survivor_set=SurvivorSet(
            survivors=tuple(data["survivors"]),
            dropped=tuple(data["dropped"]),
            commitments=tuple(
                UploadDone(
                    sender=sender,
                    digest=bytes.fromhex(digest),
                    chunk_count=chunk_count,
                    sequence=sequence,
                    signature=bytes.fromhex(signature),
                )
                for sender, digest, chunk_count, sequence, signature in data["commitments"]
            ),
        ),
        signatures=tuple(
            ConfirmSurvivors(
                sender=sender,
                statement=bytes.fromhex(statement),
                sequence=sequence,
                signature=bytes.fromhex(signature),
            )
            for sender, statement, sequence, signature in data["signatures"]
        ),
    )


def _record_to_json(record: RoundRecord, evidence: SurvivorEvidence | None = None) -> str:
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "evidence": evidence_to_json(evidence),
            "duration_s": record.duration_s,
            "stage_durations_s": record.stage_durations_s,
            "selected": list(record.selected),
            "survivors": list(record.survivors),
            "bytes_up": record.bytes_up,
            "bytes_down": record.bytes_down,
        },
        sort_keys=True,
    )


def _record_from_row(row: RoundRow) -> RoundRecord:
    outcome = json.loads(row.outcome_json) if row.outcome_json else {}
    finished = row.status is RoundStatus.FINISHED
    # Aborted rounds (and records of older coordinators) name no selection: the config does.
    selected = outcome.get("selected")
    if selected is None:
        selected = round_config_from_json(row.config_json).selected
    return RoundRecord(
        round=row.round,
        started_s=0.0,
        stage_durations_s=outcome.get("stage_durations_s", {}),
        duration_s=outcome.get("duration_s", 0.0),
        outcome=Stage.DONE if finished else Stage.ABORTED,
        selected=tuple(selected),
        survivors=tuple(outcome.get("survivors", ())),
        bytes_up=outcome.get("bytes_up", {}),
        bytes_down=outcome.get("bytes_down", {}),
        message=row.abort_reason or "",
    )


class FederationRecords:
    """The orchestrator's durable side; every method is one atomic store transaction."""

    def __init__(self, store: Store, *, keep_aggregates: int = 4) -> None:
        self._store = store
        self._keep_aggregates = keep_aggregates

    # ---- membership and keys ----

    def save_members(self, snapshot: dict[str, object]) -> None:
        self._store.set_meta(MEMBERS_META, json.dumps(snapshot, sort_keys=True).encode())

    def load_members(self) -> dict[str, object] | None:
        data = self._store.get_meta(MEMBERS_META)
        return None if data is None else dict(json.loads(data))

    def save_keys(self, keys: KeyState) -> None:
        body = {
            "version": FORMAT_VERSION,
            "epoch": keys.epoch,
            "maker": keys.maker,
            "public": keys.public.hex(),
            "sealed": {
                name: [sealed.envelope.hex(), sealed.signature.hex()]
                for name, sealed in keys.sealed.items()
            },
            "holders": sorted(keys.holders),
        }
        self._store.set_meta(KEYS_META, json.dumps(body, sort_keys=True).encode())

    def load_keys(self) -> KeyState:
        data = self._store.get_meta(KEYS_META)
        if data is None:
            return KeyState()
        body = json.loads(data)
        if body.get("version") != FORMAT_VERSION:
            raise IntegrityError(f"key record of format {body.get('version')!r}")
        return KeyState(
            epoch=body["epoch"],
            maker=body["maker"],
            public=bytes.fromhex(body["public"]),
            sealed={
                name: SealedKey(bytes.fromhex(envelope), bytes.fromhex(signature))
                for name, (envelope, signature) in body["sealed"].items()
            },
            holders=frozenset(body["holders"]),
        )

    # ---- rounds ----

    def round_started(self, config: RoundConfig) -> None:
        self._store.begin_round(
            RoundRow(
                round=config.round,
                profile=config.profile,
                config_json=round_config_to_json(config),
                started_at=time.time(),
                stage=Stage.ADVERTISE.value if config.profile.uses_masks else Stage.UPLOAD.value,
            )
        )

    def stage_opened(self, round: int, stage: Stage) -> None:
        self._store.set_round_stage(round, stage.value)

    def aggregate_ready(self, round: int, outcome: RoundOutcome, chunks: Sequence[bytes]) -> None:
        """Keep the aggregate and the outcome, so a restart can finish serving them."""
        self._store.put_aggregate(round, chunks)
        snapshot = json.dumps(
            {
                "version": FORMAT_VERSION,
                "survivors": list(outcome.survivors),
                "dropped": list(outcome.dropped),
                "evidence": evidence_to_json(outcome.evidence),
            }
        )
        self._store.save_round_snapshot(round, Stage.AGGREGATE.value, snapshot.encode())

    def round_done(self, record: RoundRecord, evidence: SurvivorEvidence | None = None) -> None:
        """Record the outcome (with the signed survivor set, which catch-up downloads carry);
        drop the aggregates older than the last `keep_aggregates`."""
        self._store.finish_round(record.round, _record_to_json(record, evidence), time.time())
        for round in self._store.aggregate_rounds():
            if round <= record.round - self._keep_aggregates:
                self._store.drop_aggregate(round)

    def finished_aggregate(
        self, round: int
    ) -> tuple[RoundConfig, Iterator[bytes], SurvivorEvidence | None]:
        """A finished round's config, its stored aggregate (streamed) and its survivor set.

        Raises:
            RoundAborted: the round was aborted; it has no aggregate.
            OutOfStage: the round was never begun, or is still in flight.
            Expired: the round finished, but its aggregate is no longer kept.
        """
        row = self._store.round_row(round)
        if row is None:
            raise OutOfStage(f"round {round} was never begun")
        if row.status is RoundStatus.ABORTED:
            raise RoundAborted(f"round {round} was aborted ({row.abort_reason}): no aggregate")
        if row.status is RoundStatus.IN_FLIGHT:
            raise OutOfStage(f"round {round} is in flight; its aggregate is not ready")
        if self._store.aggregate_info(round) is None:
            raise Expired(
                f"the aggregate of round {round} is no longer kept (the coordinator keeps the "
                f"last {self._keep_aggregates}; raise keep_aggregates to cover longer outages)"
            )
        outcome = json.loads(row.outcome_json) if row.outcome_json else {}
        return (
            round_config_from_json(row.config_json),
            self._store.aggregate_chunks(round),
            evidence_from_json(outcome.get("evidence")),
        )

    def round_aborted(self, round: int, reason: str) -> None:
        self._store.abort_round(round, reason)

    def aggregate_chunks(self, round: int) -> list[bytes]:
        return list(self._store.aggregate_chunks(round))

    # ---- restart ----

    def resume(self, *, on_abort: Callable[[RoundConfig, str], None] | None = None) -> Resumed:
        """Read back the rounds; abort one that cannot be resumed, keep one that can.

        Args:
            on_abort: called with the config and reason of a round about to be aborted,
                before the store records it (the federation ledger's entry: if the
                process dies in between, the next restart calls it again).
        """
        aggregate = None
        in_flight = self._store.in_flight_round()
        if in_flight is not None:
            snapshot = self._store.load_round_snapshot(in_flight.round)
            if snapshot is not None and snapshot.stage == Stage.AGGREGATE.value:
                body = json.loads(snapshot.snapshot)
                outcome = RoundOutcome(
                    survivors=tuple(body["survivors"]),
                    dropped=tuple(body["dropped"]),
                    correction=(),
                    evidence=evidence_from_json(body.get("evidence")),
                )
                aggregate = (round_config_from_json(in_flight.config_json), outcome)
            else:
                reason = (
                    f"the coordinator restarted during {in_flight.stage}; the round starts afresh"
                )
                if on_abort is not None:
                    on_abort(round_config_from_json(in_flight.config_json), reason)
                self._store.abort_round(in_flight.round, reason)
        rows = self._store.rounds()
        history = tuple(
            _record_from_row(row) for row in rows if row.status is not RoundStatus.IN_FLIGHT
        )
        return Resumed(
            last_round=max((row.round for row in rows), default=0),
            rounds_completed=sum(row.status is RoundStatus.FINISHED for row in rows),
            history=history,
            aggregate=aggregate,
        )
