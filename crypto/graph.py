"""The SecAgg+ neighbour graph: who masks with whom in a round.

Theory of operation (Bell et al. 2020, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead", section 3 and Algorithm 2; docs/protocol.md, "Masks"):

- With ``degree >= n - 1`` everyone is everyone else's neighbour: the complete graph
  of Bonawitz et al. 2017.
- Otherwise the graph is a random ``degree``-regular Harary graph ``H(degree, n)``:
  the participants are placed on a ring in a pseudo-random order and each is joined
  to the ``degree / 2`` nearest on either side. ``degree < n - 1`` and even, so the
  ``degree`` neighbours are distinct and the graph is exactly ``degree``-regular.
- The order comes from a 32-byte public round seed chosen by the coordinator: each
  id gets the sort key ``SHA-256("accord/v1/graph" || seed || F(id))`` (``F`` frames
  the UTF-8 id with its u32 big-endian length) and the ring is the ids sorted by that
  key, ties broken by id. Sorting by random-oracle keys is a uniform permutation, and
  anyone holding the seed and the id list rebuilds the same graph, independent of the
  order the ids were listed in. Python's ``random`` is never used.

Invariants: ``v in result[u]`` iff ``u in result[v]``; nobody is their own neighbour;
every tuple is sorted; each has ``min(degree, n - 1)`` entries.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from accord.errors import InternalError

__all__ = ["GRAPH_DOMAIN", "ROUND_SEED_BYTES", "neighbours"]

ROUND_SEED_BYTES = 32
"""Length of the public round seed that fixes the ring order."""

GRAPH_DOMAIN = b"accord/v1/graph"
"""Domain-separation prefix of the ring-order sort keys."""


def neighbours(participants: Sequence[str], degree: int, seed: bytes) -> dict[str, tuple[str, ...]]:
    """Return each participant's neighbours in the round's masking graph.

    Args:
        participants: distinct participant ids (any order).
        degree: neighbours per participant; ``>= n - 1`` means the complete graph,
            otherwise it must be even and ``>= 2``.
        seed: the 32-byte public round seed.

    Returns:
        ``{id: sorted tuple of neighbour ids}`` for every participant.

    Raises:
        UsageError: repeated ids, a seed that is not 32 bytes, a negative degree, or an
            odd or zero degree where the graph is not complete.
    """
    ids = list(participants)
    if len(set(ids)) != len(ids):
        raise InternalError("participant ids must be distinct")
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != ROUND_SEED_BYTES:
        raise InternalError(f"the round seed must be {ROUND_SEED_BYTES} bytes")
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise InternalError(f"degree = {degree!r}: must be an integer >= 0")
    count = len(ids)
    if degree >= count - 1:
        ordered = sorted(ids)
        return {me: tuple(v for v in ordered if v != me) for me in ordered}
    if degree < 2 or degree % 2:
        raise InternalError(
            f"degree = {degree}: must be even and >= 2 for a sparse graph of {count} "
            "participants (or >= n - 1 for the complete graph)"
        )
    ring = sorted(ids, key=lambda participant: (_sort_key(bytes(seed), participant), participant))
    half = degree // 2
    graph: dict[str, tuple[str, ...]] = {}
    for position, me in enumerate(ring):
        around = [ring[(position + offset) % count] for offset in range(-half, half + 1) if offset]
        graph[me] = tuple(sorted(around))
    return dict(sorted(graph.items()))


def _sort_key(seed: bytes, participant: str) -> bytes:
    encoded = participant.encode("utf-8")
    return hashlib.sha256(GRAPH_DOMAIN + seed + struct.pack(">I", len(encoded)) + encoded).digest()
