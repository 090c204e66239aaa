"""Accord's secure-aggregation core: pure functions and state machines, no I/O.

The safe floor, for the services:

    CoordinatorRound, ParticipantRound   one round of SecAgg+ (round.py, participant_round.py)
    RoundConfig, Stage, messages         the typed values both sides exchange (messages.py)
    protect, reveal                      a participant's update to wire chunks and back
    UpdateSum                            the coordinator's running sum, O(model) memory
    seal, open                           AEAD envelopes to an X25519 key (envelope.py)
    pack, unpack                         quantized integers in CKKS reals (packing.py)

The sharp floor, named as such: `masks`, `prg`, `shamir`, `agreement`, `identity`,
`ckks` (and `ckks_seal`), `quantize`, `wire` (and `wire_layout`, `wire_payload`),
`graph`, `unmasking`. docs/protocol.md is the contract they implement. Ledgers:
`ledger_chain` (entries, heads, writing), `ledger_encoding`, `ledger_verify`,
`ledger_report`, `ledger_trust`.
"""

from accord.crypto.aggregate import UpdateSum
from accord.crypto.envelope import open, seal
from accord.crypto.messages import RoundConfig, Stage
from accord.crypto.packing import pack, unpack
from accord.crypto.participant_round import ParticipantRound
from accord.crypto.pipeline import protect, reveal
from accord.crypto.profile import Profile
from accord.crypto.round import CoordinatorRound

__all__ = [
    "CoordinatorRound",
    "ParticipantRound",
    "Profile",
    "RoundConfig",
    "Stage",
    "UpdateSum",
    "open",
    "pack",
    "protect",
    "reveal",
    "seal",
    "unpack",
]
