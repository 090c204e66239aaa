"""The coordinator's side of the key ceremony: pick a maker, relay sealed keys, keep the public.

Theory of operation (DESIGN.md section 3, step 3; the participants' side, and the
cryptography, are in `accord.crypto.ceremony`). The CKKS profiles need every selected
participant to hold the federation's CKKS secret key, and the coordinator must never
hold it. So when a round would select a member that holds no key (the first round, a
newcomer from `Orchestrator.admit`, a member the last ceremony missed), the orchestrator
starts a ceremony among the online members, its recipients, instead of the round:

1. Each member sent a ceremony key at enrolment, signed by its identity key, and
   `check_ceremony_key` refused it otherwise.
2. The recipient that enrolled first is the maker. Its task carries every recipient's
   signed ceremony key and the next key epoch; the other recipients wait.
3. The maker checks those signatures itself, makes the key, seals it to each recipient
   (itself included) and signs every envelope together with the public context. A
   coordinator that swapped in a ceremony key of its own would learn nothing, and one
   that handed out a key of its own making would fail the recipients' check.
4. `accept` checks the epoch, that there is exactly one envelope per recipient and
   that the public context loads, then keeps them as the new `KeyState`: the public
   context (parameters only) and envelopes the coordinator cannot open.
5. Each recipient fetches its envelope (`envelope_for`), and `ceremony.open_secret`
   checks the maker's signature before it opens it.

A maker silent for a stage deadline is passed over (`abandon`); the lifecycle machine then
starts a new ceremony among the others still online, if there are enough of them.

This class holds the key state and the running ceremony's maker and recipients; the
orchestrator owns the lock and persistence and supplies the time; `accord.crypto.lifecycle`
decides when a ceremony starts and among whom.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from accord.coordinator.membership import Membership
from accord.coordinator.records import KeyState
from accord.core import logs
from accord.crypto import ceremony, identity
from accord.crypto.ceremony import CeremonyKey
from accord.crypto.ckks import PublicContext
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.profile import Profile
from accord.errors import Malformed
from accord.wire.ceremony import SealedKey
from accord.wire.tasks import Assignment


class KeyCeremony:
    """The federation's CKKS key as the coordinator knows it, and the ceremony renewing it.

    Not thread-safe (the orchestrator holds the lock).

    Args:
        federation_id: bound into every ceremony key's signature.
        members: the live membership (enrolment order, ceremony keys, who is online).
        log: structured logger (see `accord.core.logs`).
    """

    def __init__(
        self,
        *,
        federation_id: str,
        members: Membership,
        log: logging.Logger,
        with_ckks: bool = True,
    ) -> None:
        self._federation_id = federation_id
        self._with_ckks = with_ckks
        self._members = members
        self._log = log
        self._keys = KeyState()
        self._maker = ""
        self._recipients: tuple[str, ...] = ()
        self._started_s = 0.0

    @property
    def keys(self) -> KeyState:
        """The current key's public parts (epoch 0, no holders, before the first ceremony)."""
        return self._keys

    @property
    def maker(self) -> str:
        """The participant making the key in the current (or last) ceremony."""
        return self._maker

    @property
    def recipients(self) -> tuple[str, ...]:
        """Who receives the key of the current (or last) ceremony, sorted."""
        return self._recipients

    def restore(self, keys: KeyState) -> None:
        """Take the key state from the store (after a restart)."""
        self._keys = keys

    def check_ceremony_key(
        self,
        participant: str,
        ceremony_key: CeremonyKey | None,
        *,
        identity_public: bytes,
        profile: Profile,
    ) -> None:
        """Check an enrolling participant's ceremony key; nothing changes.

        Raises:
            Malformed: a CKKS profile and no ceremony key to seal the CKKS key to.
            BadSignature: the ceremony key is not signed by `identity_public`.
        """
        if ceremony_key is not None:
            statement = ceremony.ceremony_key_statement(
                federation_id=self._federation_id,
                participant=participant,
                ceremony_public=ceremony_key.ceremony_public,
            )
            identity.verify(
                identity_public,
                statement,
                ceremony_key.signature,
                what=f"the ceremony key of {participant}",
            )
        elif profile.uses_ckks:
            raise Malformed(
                f"enrolment of {participant}: profile {profile.value} needs a signed ceremony key"
            )

    def all_hold_key(self, selected: Iterable[str]) -> bool:
        """Whether every one of `selected` received the current key."""
        return set(selected) <= self._keys.holders

    def start(self, recipients: tuple[str, ...], *, now: float) -> None:
        """Open a ceremony among `recipients`; the first of them to have enrolled makes the key."""
        self._recipients = tuple(sorted(recipients))
        self._maker = self._members.first_enrolled(self._recipients)
        self._started_s = now
        logs.event(
            self._log,
            "key_ceremony_started",
            participant=self._maker,
            key_epoch=self._keys.epoch + 1,
            recipients=list(self._recipients),
        )

    def task(self, name: str, *, round_number: int) -> Assignment:
        """What `name` should do while the ceremony runs: make the key, or wait."""
        if name != self._maker:
            return Assignment(
                Lifecycle.CEREMONY,
                round_number,
                None,
                message="waiting for the key ceremony",
            )
        return Assignment(
            Lifecycle.CEREMONY,
            round_number,
            None,
            message="make the federation's CKKS key",
            ceremony_keys=self._members.ceremony_keys(self._recipients),
            key_epoch=self._keys.epoch + 1,
        )

    def overdue(self, now: float, *, deadline_s: float) -> bool:
        """Whether the maker had `deadline_s` seconds and sent no key."""
        return now - self._started_s >= deadline_s

    def abandon(self) -> None:
        """Pass over the silent maker (the lifecycle machine decides who tries next)."""
        logs.event(
            self._log,
            "key_ceremony_deadline",
            participant=self._maker,
            level=logging.WARNING,
        )

    def accept(self, *, key_epoch: int, public: bytes, sealed: Mapping[str, SealedKey]) -> KeyState:
        """Check the maker's new key, then make it the current one and return it.

        The caller has checked that the sender is this ceremony's maker; it stores the
        returned state, then calls `log_done`.

        Raises:
            Malformed: wrong epoch, wrong recipients, or a public context that does not
                load; nothing changes.
        """
        if key_epoch != self._keys.epoch + 1:
            raise Malformed(f"key ceremony: epoch {key_epoch}, expected {self._keys.epoch + 1}")
        if set(sealed) != set(self._recipients):
            raise Malformed("key ceremony: exactly one envelope for every recipient")
        if public or self._with_ckks:  # masks: no CKKS key, so no public context
            PublicContext.from_bytes(public)
        self._keys = KeyState(
            epoch=key_epoch,
            maker=self._maker,
            public=public,
            sealed=dict(sealed),
            holders=frozenset(self._recipients),
        )
        return self._keys

    def log_done(self) -> None:
        """Log the end of the ceremony whose key `accept` took (sizes only)."""
        logs.event(
            self._log,
            "key_ceremony_done",
            participant=self._maker,
            key_epoch=self._keys.epoch,
            recipients=list(self._recipients),
            bytes=len(self._keys.public),
        )

    def envelope_for(self, name: str) -> tuple[KeyState, SealedKey | None]:
        """The current key's public parts and the envelope sealed to `name`, if any."""
        return self._keys, self._keys.sealed.get(name)
