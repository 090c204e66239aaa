"""An in-memory federation that drives the real round machines and the real pipeline.

`FederationHarness` routes messages between one `CoordinatorRound` and n
`ParticipantRound`s, runs every upload through `pipeline.protect`, the coordinator's
`UpdateSum` and `pipeline.reveal`, and can drop any participant before any stage. The
end-to-end tests repeat the same scenarios over gRPC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from accord.crypto import identity, pipeline
from accord.crypto.aggregate import UpdateSum
from accord.crypto.masks import correction
from accord.crypto.messages import CoordinatorMessage, ParticipantMessage, RoundConfig, Stage
from accord.crypto.packing import choose_packing
from accord.crypto.participant_round import ParticipantRound
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.crypto.round import CoordinatorRound
from accord.crypto.wire_layout import chunk_plan
from tests.support.ckks import shared_secret_context


def seeded_bytes(label: str) -> Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom, so a run replays byte for byte."""
    counter = 0

    def draw(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
            counter += 1
        return out[:n]

    return draw


@dataclass
class RoundResult:
    stage: Stage
    survivors: tuple[str, ...] = ()
    aggregate: np.ndarray | None = None
    abort_reason: str = ""
    expected: np.ndarray | None = None
    upload_bytes: dict[str, int] = field(default_factory=dict)


class FederationHarness:
    """n participants and a coordinator for one round, all in this process."""

    def __init__(
        self,
        n: int,
        *,
        profile: Profile = Profile.CKKS_MASKS,
        threshold: int | None = None,
        element_count: int = 1000,
        modulus_bits: int = 16,
        neighbour_degree: int = 0,
        seed: int = 0,
    ) -> None:
        self.ids = tuple(f"p{i:02d}" for i in range(n))
        keys = {p: identity.generate_identity(seeded_bytes(f"{seed}/id/{p}")) for p in self.ids}
        self.identity_keys = keys
        self.identities = {p: k.public for p, k in keys.items()}
        quant = QuantSpec(modulus_bits=modulus_bits, max_participants=n)
        self.packing = choose_packing(modulus_bits, n) if profile.uses_ckks else None
        self.secret = shared_secret_context() if profile.uses_ckks else None
        self.config = RoundConfig(
            federation_id="fed-test",
            round=1,
            profile=profile,
            selected=self.ids,
            threshold=threshold if threshold is not None else max(2, n // 2 + 1),
            quant=quant,
            element_count=element_count,
            packing=self.packing,
            neighbour_degree=neighbour_degree or n,
            graph_seed=seeded_bytes(f"{seed}/graph")(32) if profile.uses_masks else b"",
        )
        self.coordinator = CoordinatorRound(self.config, self.identities)
        self.participants = {
            p: ParticipantRound(
                self.config,
                p,
                keys[p].private,
                self.identities,
                random_bytes=seeded_bytes(f"{seed}/{p}"),
            )
            for p in self.ids
        }
        rng = np.random.default_rng(seed)
        if profile is Profile.NONE:
            self.inputs = {
                p: rng.standard_normal(element_count).astype(np.float32) for p in self.ids
            }
        else:
            self.inputs = {
                p: rng.integers(0, 2**modulus_bits, element_count, dtype=np.uint64).astype(
                    np.uint32
                )
                for p in self.ids
            }
        self.dropped: set[str] = set()
        self.upload_bytes: dict[str, int] = {}
        self.total: UpdateSum | None = None

    # ---- routing ----

    def _to_coordinator(self, messages: list[ParticipantMessage]) -> list[CoordinatorMessage]:
        replies: list[CoordinatorMessage] = []
        for message in messages:
            replies += self.coordinator.receive(message)
        return replies

    def _to_participants(self, messages: list[CoordinatorMessage]) -> list[ParticipantMessage]:
        replies: list[ParticipantMessage] = []
        for message in messages:
            if message.recipient in self.dropped:
                continue
            replies += self.participants[message.recipient].receive(message)
        return replies

    def _exchange(
        self, messages: list[ParticipantMessage], stage: Stage
    ) -> list[CoordinatorMessage]:
        replies = self._to_coordinator(messages)
        if self.coordinator.stage is stage:
            replies += self.coordinator.close_stage()
        return replies

    def run(self, drop_before: Mapping[Stage, set[str]] | None = None) -> RoundResult:
        """Run the round; participants in drop_before[S] vanish before sending their S message."""
        drop_before = drop_before or {}

        def leave(stage: Stage) -> None:
            self.dropped |= drop_before.get(stage, set())

        to_send = self.through_uploads(leave)
        if isinstance(to_send, RoundResult):
            return to_send
        if self.coordinator.stage is Stage.CONSISTENCY:
            leave(Stage.CONSISTENCY)
            confirmations = self._to_participants(to_send)
            to_send = self._exchange(confirmations, Stage.CONSISTENCY)
        if self.config.profile.uses_masks and self.coordinator.stage is Stage.UNMASK:
            leave(Stage.UNMASK)
            answers = self._to_participants(to_send)
            to_send = self._exchange(answers, Stage.UNMASK)
        self._to_participants(to_send)
        if self.coordinator.stage is not Stage.AGGREGATE:
            return RoundResult(self.coordinator.stage, abort_reason=self.coordinator.abort_reason)

        outcome = self.coordinator.outcome
        assert self.total is not None
        if outcome.correction:
            for start, count in chunk_plan(
                self.config.element_count, self.config.profile, self.packing
            ):
                self.total.add_correction(
                    start,
                    correction(start, count, outcome.correction, self.config.quant.modulus_bits),
                )
        aggregate = pipeline.reveal(
            self.total.chunks(),
            profile=self.config.profile,
            element_count=self.config.element_count,
            modulus_bits=self.config.quant.modulus_bits,
            packing=self.packing,
            secret=self.secret,
        )
        return RoundResult(
            Stage.AGGREGATE,
            survivors=outcome.survivors,
            aggregate=aggregate,
            expected=self.expected_sum(outcome.survivors),
            upload_bytes=dict(self.upload_bytes),
        )

    def through_uploads(
        self, leave: Callable[[Stage], None] = lambda stage: None
    ) -> list[CoordinatorMessage] | RoundResult:
        """Run the stages up to and including the uploads; return the coordinator's replies.

        The uploads are summed into `self.total` and their sizes kept in
        `self.upload_bytes`; an abort before the uploads returns its `RoundResult`.
        """
        upload_bytes = self.upload_bytes
        to_send: list[CoordinatorMessage] = []
        if self.config.profile.uses_masks:
            leave(Stage.ADVERTISE)
            starts = [
                m for p in self.ids if p not in self.dropped for m in self.participants[p].start()
            ]
            to_send = self._exchange(starts, Stage.ADVERTISE)
            leave(Stage.SHARE)
            shares = self._to_participants(to_send)
            to_send = self._exchange(shares, Stage.SHARE)
            self._to_participants(to_send)
        if self.coordinator.stage is Stage.ABORTED:
            return RoundResult(Stage.ABORTED, abort_reason=self.coordinator.abort_reason)

        leave(Stage.UPLOAD)
        total = self.total = self._new_sum()
        receipts: list[ParticipantMessage] = []
        for p in self.ids:
            machine = self.participants[p]
            if p in self.dropped or machine.stage is not Stage.UPLOAD:
                continue
            chunks = list(
                pipeline.protect(
                    self.inputs[p],
                    profile=self.config.profile,
                    federation_id=self.config.federation_id,
                    round=self.config.round,
                    mask_terms=machine.mask_terms(),
                    modulus_bits=self.config.quant.modulus_bits,
                    packing=self.packing,
                    secret=self.secret,
                )
            )
            self.coordinator.may_upload(p)
            for chunk in chunks:
                total.check(chunk)
            for chunk in chunks:
                total.add(chunk)
            upload_bytes[p] = sum(len(c) for c in chunks)
            digest = hashlib.sha256(b"".join(chunks)).digest()
            receipts.append(machine.upload_done(digest, len(chunks)))
        return self._exchange(receipts, Stage.UPLOAD)

    def expected_sum(self, survivors: tuple[str, ...]) -> np.ndarray:
        """The plain sum of the survivors' inputs (mod 2^b for the integer profiles)."""
        if self.config.profile is Profile.NONE:
            return np.sum([self.inputs[p] for p in survivors], axis=0, dtype=np.float32)
        total = np.sum([self.inputs[p].astype(np.uint64) for p in survivors], axis=0)
        return (total % (1 << self.config.quant.modulus_bits)).astype(np.uint32)

    def _new_sum(self) -> UpdateSum:
        return UpdateSum(
            profile=self.config.profile,
            element_count=self.config.element_count,
            modulus_bits=self.config.quant.modulus_bits,
            packing=self.packing,
            public=self.secret.public() if self.secret is not None else None,
            federation_id=self.config.federation_id,
            round=self.config.round,
        )
