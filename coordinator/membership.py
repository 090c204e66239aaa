"""Who enrolled, who is alive, and what each participant moved: the live membership.

(`roster.py` is the provisioning roster: which certificate may speak for whom.)

Enrolment checks what every participant must share: the base model's content hash and
the adapter's parameter count. With CA-signed federation terms (`crypto/terms.py`) the
terms fix them and a member that departs is refused with `TermsDeparted` naming that
member; no member's enrolment changes them. Without terms (insecure plaintext tests and
demos) the first participant to enrol sets them and a later one that differs is refused
with a `ConfigError`. Either way an adapter larger than `MAX_ADAPTER_PARAMETERS` is
refused before anything is stored or allocated. A participant is online while its last
request is younger than three heartbeat intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from accord.coordinator.config import CoordinatorConfig
from accord.crypto import integrity
from accord.crypto import terms as signed_terms
from accord.crypto.ceremony import CeremonyKey
from accord.crypto.terms import FederationTerms
from accord.errors import ConfigError, Malformed

OFFLINE_AFTER_HEARTBEATS = 3
"""A participant silent for this many heartbeat intervals is shown offline."""


@dataclass
class Member:
    """One participant as the coordinator sees it."""

    name: str
    enrolled: bool = False
    last_seen_s: float | None = None
    state: str = "not enrolled"
    bytes_up: int = 0
    bytes_down: int = 0
    enrolled_order: int = 0
    ceremony_key: CeremonyKey | None = None


class Membership:
    """The federation's members; not thread-safe (the orchestrator holds the lock).

    Args:
        config: lists the participants and the heartbeat interval.
        clock: monotonic seconds.
        terms: the CA-signed federation terms; they fix the base model and adapter size.
    """

    def __init__(
        self,
        config: CoordinatorConfig,
        *,
        clock: Callable[[], float],
        terms: FederationTerms | None = None,
    ) -> None:
        self._clock = clock
        self._profile = config.profile
        self._terms = terms
        self._offline_after_s = OFFLINE_AFTER_HEARTBEATS * config.heartbeat_interval_s
        self._members = {name: Member(name) for name in config.participants}
        self._base_model_hash: str | None = None
        self._adapter_parameters: int | None = None
        self._enrolments = 0

    def add(self, names: list[str]) -> None:
        """Make room for participants approved while the coordinator runs (not enrolled yet)."""
        for name in names:
            self._members.setdefault(name, Member(name))

    def check_enrollment(self, name: str, *, base_model_hash: str, adapter_parameters: int) -> None:
        """Raise unless `name` may enrol with this model; nothing changes.

        Raises:
            Malformed: no model hash or adapter size given.
            TermsDeparted: its base model or adapter size departs from the signed terms.
            ConfigError: (no terms) its base model or adapter size differs from the
                federation's, or the adapter is larger than any federation allows.
        """
        if not base_model_hash or adapter_parameters < 1:
            raise Malformed(f"enrolment of {name}: base model hash and adapter size are required")
        if self._terms is not None:
            signed_terms.check_member_settings(
                self._terms,
                member=name,
                base_model_hash=base_model_hash,
                adapter_parameters=adapter_parameters,
            )
            return
        if adapter_parameters > signed_terms.MAX_ADAPTER_PARAMETERS:
            raise ConfigError(
                f"{name}: adapter of {adapter_parameters} parameters exceeds the largest a "
                f"federation allows ({signed_terms.MAX_ADAPTER_PARAMETERS})"
            )
        if self._base_model_hash is not None and base_model_hash != self._base_model_hash:
            raise ConfigError(
                f"{name}: base model hash {base_model_hash[:16]} differs from the federation's "
                f"{self._base_model_hash[:16]} (every participant needs the same base model and "
                "model_seed)"
            )
        if self._adapter_parameters is not None and adapter_parameters != self._adapter_parameters:
            raise ConfigError(
                f"{name}: adapter of {adapter_parameters} parameters differs from the federation's "
                f"{self._adapter_parameters} (every participant needs the same lora_rank)"
            )

    def enroll(
        self,
        name: str,
        *,
        base_model_hash: str,
        adapter_parameters: int,
        ceremony_key: CeremonyKey | None = None,
    ) -> None:
        """Admit `name` after `check_enrollment`; a repeated enrolment (restart) is fine.

        `ceremony_key` is the participant's signed X25519 key for receiving the CKKS key.
        """
        self.check_enrollment(
            name, base_model_hash=base_model_hash, adapter_parameters=adapter_parameters
        )
        if self._terms is None:
            self._base_model_hash = base_model_hash
            self._adapter_parameters = adapter_parameters
        member = self._members[name]
        if not member.enrolled:
            self._enrolments += 1
            member.enrolled_order = self._enrolments
        if ceremony_key is not None:
            member.ceremony_key = ceremony_key
        member.enrolled = True
        member.state = "enrolled"
        member.last_seen_s = self._clock()

    def snapshot(self) -> dict[str, object]:
        """What a restart needs: the model the federation fixed and who enrolled with what.

        Liveness and byte counts are not kept: members are online again once they call.
        """
        return {
            "base_model_hash": self._base_model_hash,
            "adapter_parameters": self._adapter_parameters,
            "members": {
                m.name: {
                    "order": m.enrolled_order,
                    "ceremony_public": m.ceremony_key.ceremony_public.hex()
                    if m.ceremony_key
                    else None,
                    "ceremony_signature": m.ceremony_key.signature.hex()
                    if m.ceremony_key
                    else None,
                }
                for m in self._members.values()
                if m.enrolled
            },
        }

    def restore(self, snapshot: dict[str, object]) -> None:
        """Load a `snapshot()` taken before a restart; members no longer configured are dropped."""
        self._base_model_hash = snapshot.get("base_model_hash")  # type: ignore[assignment]
        self._adapter_parameters = snapshot.get("adapter_parameters")  # type: ignore[assignment]
        members = snapshot.get("members", {})
        assert isinstance(members, dict)
        for name, saved in members.items():
            member = self._members.get(name)
            if member is None:
                continue
            member.enrolled = True
            member.state = "enrolled before a restart"
            member.enrolled_order = saved["order"]
            if saved["ceremony_public"]:
                member.ceremony_key = CeremonyKey(
                    participant=name,
                    ceremony_public=bytes.fromhex(saved["ceremony_public"]),
                    signature=bytes.fromhex(saved["ceremony_signature"]),
                )
        self._enrolments = max((m.enrolled_order for m in self._members.values()), default=0)

    def seen(self, name: str, *, state: str | None = None) -> None:
        """Note a request from `name` (and the state it reports, if any)."""
        member = self._members[name]
        if not member.enrolled:
            return
        member.last_seen_s = self._clock()
        if state:
            member.state = state

    def is_enrolled(self, name: str) -> bool:
        """True once `name` enrolled."""
        return self._members[name].enrolled

    def online(self) -> list[str]:
        """Enrolled participants heard from recently, sorted."""
        now = self._clock()
        return sorted(
            m.name
            for m in self._members.values()
            if m.last_seen_s is not None and now - m.last_seen_s <= self._offline_after_s
        )

    def ceremony_keys(self, names: tuple[str, ...]) -> tuple[CeremonyKey, ...]:
        """The signed ceremony keys of `names` (those that sent one at enrolment)."""
        keys = (self._members[name].ceremony_key for name in names)
        return tuple(key for key in keys if key is not None)

    def first_enrolled(self, names: tuple[str, ...]) -> str:
        """Of `names`, the participant that enrolled first (the default ceremony maker)."""
        return min(names, key=lambda name: self._members[name].enrolled_order)

    def element_count(self) -> int:
        """Length of the protected vector: parameters, weight slot, integrity tags."""
        if self._terms is not None:
            return signed_terms.expected_element_count(self._terms)
        if self._adapter_parameters is None:
            raise Malformed("no participant has enrolled yet; the adapter size is unknown")
        return integrity.protected_length(self._adapter_parameters, self._profile)

    def add_bytes(self, name: str, *, up: int = 0, down: int = 0) -> None:
        """Count update bytes received from, and aggregate bytes sent to, `name`."""
        member = self._members[name]
        member.bytes_up += up
        member.bytes_down += down

    def rows(self) -> tuple[tuple[str, bool, str, int, int], ...]:
        """(name, online, state, bytes_up, bytes_down) for every participant, sorted."""
        online = set(self.online())
        return tuple(
            (m.name, m.name in online, m.state, m.bytes_up, m.bytes_down)
            for m in sorted(self._members.values(), key=lambda m: m.name)
        )
