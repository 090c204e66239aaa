"""The roster an Enroll response lists: each member's id and keys, and its certificate.

The coordinator writes it from its roster entries (`coordinator/roster.py`); this module
cannot import them, so it takes any value with their four fields (`Member`). The
participant checks each entry against its pinned CA (`participant/kit/certificates.py`)
and reads the identity keys back with `roster_from_proto`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from accord.proto.v1 import federation_pb2 as pb


class Member(Protocol):
    """What the Enroll response tells of one active roster entry."""

    @property
    def participant_id(self) -> str: ...

    @property
    def identity_public_key(self) -> bytes: ...

    @property
    def ceremony_public_key(self) -> bytes: ...

    @property
    def certificate_der(self) -> bytes: ...


def roster_to_proto(
    identities: Mapping[str, bytes], entries: Sequence[Member] | None
) -> list[pb.RosterEntry]:
    """The members an Enroll response lists, sorted by id.

    With mTLS (`entries`, the active roster entries) each carries its ceremony key and
    the client certificate in which the CA certified both keys; a roster entry whose
    identity key is not the one the orchestrator verifies with is left out. Without
    (insecure plaintext), only the identity keys: participants then trust the coordinator.
    """
    if entries is None:
        return [
            pb.RosterEntry(participant_id=name, identity_public_key=key)
            for name, key in sorted(identities.items())
        ]
    return [
        pb.RosterEntry(
            participant_id=entry.participant_id,
            identity_public_key=entry.identity_public_key,
            ceremony_public_key=entry.ceremony_public_key,
            certificate=entry.certificate_der,
        )
        for entry in sorted(entries, key=lambda e: e.participant_id)
        if identities.get(entry.participant_id) == entry.identity_public_key
    ]


def roster_from_proto(entries: Iterable[pb.RosterEntry]) -> dict[str, bytes]:
    """The identity keys an Enroll response lists, by id, unchecked (no kit, no CA)."""
    return {e.participant_id: e.identity_public_key for e in entries}
