"""The participant's privacy ledger: `state_dir/ledger.jsonl`, written before an update leaves.

DESIGN.md guarantee 4: budgets are written to the ledger before the update leaves the
machine. The daemon calls, in this order:

    before_round(config, key, round)           may refuse a round that `max_epsilon`
                                               forbids (projected from the ledger)
    trainer_refused(config, key, round, why)   the trainer refused the round for its own
                                               budget (BudgetExhausted): a refusal too
    before_upload(config, key, round, update)  after training, before the first chunk
                                               is protected and sent: records the round
                                               (or, over budget, the refusal)
    upload_sent(config, key, round, digest, chunks, bytes)
                                               after the last chunk is protected, before
                                               the signed receipt that ends the upload
                                               stream leaves: what was sent
    after_apply(config, key, round, metrics)   the local validation gain of the new global
                                               adapter, for `accord audit contributions`
    keep_federation_head(state_dir, head, key, pinned=...)
                                               on every task: the coordinator ledger's
                                               latest signed head this participant was
                                               shown; with a kit, refused unless signed by
                                               the key the kit pins

Entries (kinds; floats as exact decimal strings, see `accord.crypto.ledger_chain`):

    open      ledger_id "<federation>/participant/<name>", public_key, role, names
    round     round, profile, selected, samples, local_steps, update_clip_norm,
              sample_dp {mechanism "dp-sgd" | "none", accountant, noise_multiplier,
                         sample_rate, steps (this round), steps_total, max_grad_norm,
                         delta, epsilon (the trainer's accountant, after this round)},
              client_dp {mechanism "none"} or the share of client-level noise this
                        participant added to its quantized update: {mechanism "skellam",
                        noise_multiplier, honest_fraction, delta, participants,
                        honest_participants, sigma_levels, share_mu, share_std_levels,
                        level (one quantized level in update units)},
              side_dp [{purpose ("local_only", ...), then the fields of sample_dp}]:
                        training on the same private records besides the update (a
                        baseline or personal model whose weights or accuracy are kept or
                        reported); absent or [] when none; composes into epsilon,
              data_quality {filter, flagged, excluded}
    upload    round, upload {sha256 (over the chunks, in order, as the receipt), chunks,
              bytes}. Ledgers written before uploads were streamed as they were protected
              carry `upload` inside the `round` entry; `accord audit` reads both.
    refusal   round, reason, by ("max_epsilon": the daemon's limit; "trainer": the
              trainer's own budget, e.g. target_epsilon's planned steps all spent),
              max_epsilon, epsilon (projected or reached), accountant, delta,
              steps_total (steps trained but never released, when known)
    applied   round, validation {metric, before, after, gain}

The released (noise multiplier, sample rate, steps) runs are the `round` entries'
`sample_dp`; `accord audit budget` recomputes epsilon from them and never sums
per-round epsilons. An update whose training ran but which was refused never left the
machine, so its steps are not in any run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.core import ledger_store
from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_book import LedgerBook
from accord.crypto.ledger_encoding import decimal
from accord.participant.config import ParticipantConfig
from accord.participant.ledger_entries import (
    DP_SGD,
    NO_MECHANISM,
    client_dp_share,
    data_quality_counts,
    dp_body,
    validation_gain,
)

if TYPE_CHECKING:  # torch and peft stay unimported for `accord audit verify`
    from accord.crypto.messages import RoundConfig
    from accord.participant.training.protocol import LocalUpdate

LEDGER_FILE = "ledger.jsonl"
"""In `state_dir`: this participant's privacy ledger."""

ROUND, UPLOAD, REFUSAL, APPLIED = "round", "upload", "refusal", "applied"

Run = tuple[float, float, int]
"""(noise_multiplier, sample_rate, steps): one released run of DP-SGD steps."""


def ledger_id(federation_id: str, participant: str) -> str:
    """The id of a participant's ledger."""
    return f"{federation_id}/participant/{participant}"


class ParticipantLedger:
    """One participant's ledger, opened and verified (see the module docstring)."""

    def __init__(self, path: Path, book: LedgerBook, config: ParticipantConfig) -> None:
        self.path = path
        self.book = book
        self._config = config

    @classmethod
    def open(cls, config: ParticipantConfig, identity_private: bytes) -> ParticipantLedger:
        """Open (or start) `state_dir/ledger.jsonl`.

        Raises:
            IntegrityError: the existing ledger does not verify with this identity key.
        """
        path = config.state_dir / LEDGER_FILE
        lines, torn = ledger_store.read_for_append(path)
        book, new = LedgerBook.open(
            lines,
            ledger_id(config.federation_id, config.name),
            identity_private,
            open_body={
                "role": "participant",
                "federation_id": config.federation_id,
                "participant": config.name,
            },
            torn_tail=torn,
            where=str(path),
        )
        ledger_store.append_lines(path, new)
        return cls(path, book, config)

    # ---- reading ----

    def runs(self) -> list[Run]:
        """The DP-SGD runs recorded, oldest first: released updates and side trainings.

        Rounds without DP contribute none.
        """
        found: list[Run] = []
        for entry in self.book.entries:
            if entry.kind != ROUND:
                continue
            side = entry.body.get("side_dp") or []
            for dp in [entry.body.get("sample_dp"), *side]:
                if isinstance(dp, dict) and dp.get("mechanism") == DP_SGD and int(dp["steps"]) > 0:
                    found.append(
                        (float(dp["noise_multiplier"]), float(dp["sample_rate"]), int(dp["steps"]))
                    )
        return found

    def steps_total(self) -> int:
        """The trainer's step count at the last round or refusal that recorded one."""
        for entry in reversed(self.book.entries):
            if entry.kind == ROUND:
                dp = entry.body.get("sample_dp", {})
                if dp.get("mechanism") == DP_SGD:
                    return int(dp["steps_total"])
            elif entry.kind == REFUSAL and entry.body.get("steps_total") is not None:
                return int(entry.body["steps_total"])
        return 0

    # ---- budget ----

    def refusal_before_round(self, round: int) -> str | None:
        """Why `round` must be refused before it starts, or None.

        With `[participant.dp] max_epsilon` set, the round is projected to repeat the last
        released run; if that would bring epsilon above the limit, it is refused (and the
        refusal recorded). Without a released run yet there is nothing to project from:
        `refusal_after_training` then decides before anything leaves.
        """
        dp = self._config.dp
        if dp.max_epsilon is None:
            return None
        if not dp.enabled:
            return self._refuse(
                round,
                "[participant.dp] max_epsilon is set but DP is off (enabled = false): an update "
                "without DP-SGD has no finite epsilon",
                epsilon=None,
            )
        runs = self.runs()
        if not runs:
            return None
        projected = _epsilon(dp.accountant, [*runs, runs[-1]], dp.delta)
        if projected <= dp.max_epsilon:
            return None
        return self._refuse(
            round,
            f"round {round} would bring epsilon to {projected:.3f} (at delta {dp.delta:g}, "
            f"{dp.accountant}), above [participant.dp] max_epsilon = {dp.max_epsilon:g}; this "
            "participant stops contributing (raise max_epsilon to continue)",
            epsilon=projected,
        )

    def refusal_after_training(self, round: int, update: LocalUpdate) -> str | None:
        """Why this trained update must not leave, or None (then `record_round`)."""
        dp = self._config.dp
        spent = getattr(update, "privacy", None)
        if dp.enabled and spent is None:
            return self._refuse(
                round,
                "[participant.dp] enabled = true, but the trainer reported no DP-SGD accounting "
                "for this update; it is not sent",
                epsilon=None,
            )
        if dp.max_epsilon is None or spent is None:
            return None
        reached = spent.epsilon
        side = [s for s in getattr(update, "side_training", ()) if s.spent is not None]
        if side:
            # Everything trained on these records composes: the ledger's runs so far, this
            # round's update and its side trainings.
            new = [(spent.noise_multiplier, spent.sample_rate, spent.steps - self.steps_total())]
            new += [(s.spent.noise_multiplier, s.spent.sample_rate, s.steps) for s in side]
            runs = self.runs() + [run for run in new if run[2] > 0]
            reached = max(reached, _epsilon(spent.accountant, runs, spent.delta))
        if reached <= dp.max_epsilon:
            return None
        return self._refuse(
            round,
            f"round {round} brought epsilon to {reached:.3f} (at delta {spent.delta:g}, "
            f"{spent.accountant}), above [participant.dp] max_epsilon = {dp.max_epsilon:g}; the "
            "update is not sent and this participant stops contributing",
            epsilon=reached,
            steps_total=spent.steps,
        )

    def refusal_by_trainer(self, round: int, reason: str) -> str:
        """Record that the trainer refused `round` for its privacy budget; return the reason.

        Nothing was trained or released, so epsilon is that of the released runs.
        """
        dp = self._config.dp
        runs = self.runs()
        epsilon = _epsilon(dp.accountant, runs, dp.delta) if dp.enabled and runs else None
        return self._refuse(
            round,
            f"the trainer refused round {round}: {reason}; this participant stops contributing",
            epsilon=epsilon,
            steps_total=self.steps_total() if dp.enabled else None,
            by="trainer",
        )

    def _refuse(
        self,
        round: int,
        reason: str,
        *,
        epsilon: float | None,
        steps_total: int | None = None,
        by: str = "max_epsilon",
    ) -> str:
        dp = self._config.dp
        self._append(
            REFUSAL,
            {
                "round": round,
                "reason": reason,
                "by": by,
                "max_epsilon": None if dp.max_epsilon is None else decimal(dp.max_epsilon),
                "epsilon": None if epsilon is None else decimal(epsilon),
                "accountant": dp.accountant,
                "delta": decimal(dp.delta),
                "steps_total": steps_total,
            },
        )
        return reason

    # ---- writing ----

    def _append(self, kind: str, body: Mapping[str, Any]) -> chain.Entry:
        """Append an entry and its checkpoint; return the entry once both are on disk."""
        book, lines = self.book.append(kind, body)
        ledger_store.append_lines(self.path, lines)
        self.book = book  # only once written: a failed write leaves the ledger as it was
        return book.entries[-2]

    def record_round(self, config: RoundConfig, update: LocalUpdate) -> chain.Entry:
        """Record a round's release: call before the first chunk is sent."""
        spent = getattr(update, "privacy", None)
        sample_dp: dict[str, Any] = {"mechanism": NO_MECHANISM}
        if spent is not None:
            before = self.steps_total()
            steps = spent.steps - before
            # A trainer history that restarted below the ledger's count (a state folder
            # reset) is taken whole: over-counting is the safe side.
            sample_dp = dp_body(spent, steps if steps >= 0 else spent.steps)
        side_dp = [
            {"purpose": side.purpose, "mechanism": NO_MECHANISM, "steps": int(side.steps)}
            if side.spent is None
            else {"purpose": side.purpose, **dp_body(side.spent, int(side.steps))}
            for side in getattr(update, "side_training", ())
        ]
        metrics = update.metrics
        return self._append(
            ROUND,
            {
                "round": config.round,
                "profile": config.profile.value,
                "selected": len(config.selected),
                "samples": int(update.sample_count),
                "local_steps": int(metrics.get("local_steps", self._config.local_steps)),
                "update_clip_norm": decimal(config.quant.clip_norm),
                "sample_dp": sample_dp,
                "client_dp": client_dp_share(config),
                **({"side_dp": side_dp} if side_dp else {}),
                "data_quality": data_quality_counts(self._config),
            },
        )

    def record_upload(self, round: int, digest: bytes, chunks: int, size: int) -> chain.Entry:
        """Record what a round's upload sent: call before its signed receipt leaves."""
        upload = {"sha256": digest.hex(), "chunks": chunks, "bytes": size}
        return self._append(UPLOAD, {"round": round, "upload": upload})

    def record_applied(self, round: int, metrics: Mapping[str, Any]) -> chain.Entry | None:
        """Record the local validation gain of the new global adapter (None: nothing measured).

        `metrics` is the daemon's round line: the update's `accuracy_before` or
        `eval_loss_before` (the previous global adapter on this participant's test split)
        and `global_accuracy` or `global_eval_loss` (the new one, same split).
        """
        validation = validation_gain(metrics)
        if validation is None:
            return None
        return self._append(APPLIED, {"round": round, "validation": validation})


# ---- the daemon's calls ----


def before_round(config: ParticipantConfig, identity_private: bytes, round: int) -> str | None:
    """The refusal message if `max_epsilon` forbids `round` (recorded), else None."""
    if config.dp.max_epsilon is None:
        return None
    return ParticipantLedger.open(config, identity_private).refusal_before_round(round)


def before_upload(
    config: ParticipantConfig,
    identity_private: bytes,
    round_config: RoundConfig,
    update: LocalUpdate,
) -> str | None:
    """Record the round before its first chunk is protected and sent; or the refusal.

    Raises:
        IntegrityError: the ledger does not verify (nothing is sent then either).
        OSError: the ledger cannot be written (nothing is sent).
    """
    ledger = ParticipantLedger.open(config, identity_private)
    refused = ledger.refusal_after_training(round_config.round, update)
    if refused is None:
        ledger.record_round(round_config, update)
    return refused


def upload_sent(
    config: ParticipantConfig,
    identity_private: bytes,
    round: int,
    digest: bytes,
    chunks: int,
    size: int,
) -> None:
    """Record the upload of `round` (SHA-256 over its chunks): before its receipt leaves.

    The coordinator accepts an upload only with the receipt its last chunk carries, so
    every upload the federation ledger records is in this ledger first.

    Raises:
        IntegrityError: the ledger does not verify (the receipt is not sent).
        OSError: the ledger cannot be written (the receipt is not sent).
    """
    ParticipantLedger.open(config, identity_private).record_upload(round, digest, chunks, size)


def trainer_refused(
    config: ParticipantConfig, identity_private: bytes, round: int, reason: str
) -> str:
    """Record the trainer's own budget refusal of `round` (like `max_epsilon`'s); return why."""
    return ParticipantLedger.open(config, identity_private).refusal_by_trainer(round, reason)


def after_apply(
    config: ParticipantConfig, identity_private: bytes, round: int, metrics: Mapping[str, Any]
) -> None:
    """Record the validation gain of the round's new global adapter."""
    ParticipantLedger.open(config, identity_private).record_applied(round, metrics)


def _epsilon(accountant: str, runs: Sequence[Run], delta: float) -> float:
    from accord.participant.training import privacy

    return privacy.epsilon(accountant, list(runs), delta)
