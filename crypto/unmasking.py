"""Who holds whose secret shares in a round, and how the coordinator unmasks the sum.

Theory of operation. Bonawitz et al. 2017, section 4 (figure 4), with SecAgg+'s sparse
neighbour graph (Bell et al. 2020, section 3). Each member u splits two secrets into
Shamir shares, one for itself and one for each neighbour: its self-mask seed b_u
(``SELF_MASK_SEED_BYTES``) and its masking private key s_u^SK (``MASKING_KEY_BYTES``);
the share with x-coordinate i goes to the i-th of ``share_holders(u)``. At the unmask
stage each responder returns, for every survivor u whose shares it holds, its share of
b_u, and for every dropped v, its share of s_v^SK; never both for one member, so no
single member's update is ever unmasked. The coordinator rebuilds b_u for the survivors
and s_v^SK for the dropped, re-derives the pairwise seeds between each dropped member and
its surviving neighbours, and returns the terms whose masks, added to the survivors' sum,
cancel every remaining mask (``masks.correction_terms``). A rebuilt masking key must
match the public key its owner advertised, so forged shares cannot shift the sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from accord.crypto import agreement, graph, masks, shamir
from accord.crypto.messages import AdvertiseKeys, RoundConfig, UnmaskShares
from accord.errors import IntegrityError, Malformed

__all__ = [
    "MASKING_KEY_BYTES",
    "SELF_MASK_SEED_BYTES",
    "check_unmask_shares",
    "mask_correction",
    "round_neighbours",
    "share_holders",
]

MASKING_KEY_BYTES = 32
SELF_MASK_SEED_BYTES = 16


def round_neighbours(config: RoundConfig) -> dict[str, tuple[str, ...]]:
    """Each selected participant's neighbours (everyone else for small federations)."""
    if not config.profile.uses_masks:
        return {p: () for p in config.selected}
    return graph.neighbours(config.selected, config.neighbour_degree, config.graph_seed)


def share_holders(owner: str, neighbours: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Who holds a share of `owner`'s secrets; share x-coordinate = 1-based position here."""
    return tuple(sorted({owner, *neighbours[owner]}))


def check_unmask_shares(
    message: UnmaskShares,
    survivors: Sequence[str],
    dropped: Sequence[str],
    neighbours: Mapping[str, Sequence[str]],
) -> None:
    """Raise unless ``message`` holds one share of each secret its sender must return.

    Raises:
        Malformed: a wrong set of owners, or a share with another x-coordinate than the
            sender's position among the owner's share holders.
    """
    want_self = {u for u in survivors if message.sender in share_holders(u, neighbours)}
    want_keys = {v for v in dropped if message.sender in share_holders(v, neighbours)}
    for label, rows, wanted in (
        ("self-mask", message.self_mask_shares, want_self),
        ("masking-key", message.masking_key_shares, want_keys),
    ):
        owners = [owner for owner, _ in rows]
        if len(set(owners)) != len(owners) or set(owners) != wanted:
            raise Malformed(f"{label} shares from {message.sender}: wrong set of owners")
        for owner, data in rows:
            share = shamir.Share.from_bytes(data)
            holders = share_holders(owner, neighbours)
            if share.x != holders.index(message.sender) + 1:
                raise Malformed(f"{label} share of {owner} from {message.sender}: wrong index")


def mask_correction(
    config: RoundConfig,
    neighbours: Mapping[str, Sequence[str]],
    advertised: Mapping[str, AdvertiseKeys],
    unmasked: Mapping[str, UnmaskShares],
    survivors: Sequence[str],
    dropped: Sequence[str],
) -> tuple[masks.MaskTerm, ...]:
    """The mask terms that, added to the survivors' sum, remove every remaining mask.

    Args:
        config: the round.
        neighbours: ``round_neighbours(config)``.
        advertised: every member's advertised keys, by member.
        unmasked: the responders' unmask shares, by responder.
        survivors: members whose upload is in the sum (their self masks are removed).
        dropped: members that shared keys but did not upload (their pairwise masks are).

    Raises:
        RoundAborted: fewer than ``threshold`` shares of a secret.
        IntegrityError: a rebuilt masking key does not match its advertised public key.
    """
    self_seeds = {
        u: _rebuild(config, unmasked, u, "self_mask_shares", SELF_MASK_SEED_BYTES)
        for u in survivors
    }
    dropped_pairs = []
    for v in dropped:
        masking_private = _rebuild(config, unmasked, v, "masking_key_shares", MASKING_KEY_BYTES)
        if agreement.public_key(masking_private) != advertised[v].masking_public:
            raise IntegrityError(f"the masking key rebuilt for {v}")
        for u in neighbours[v]:
            if u in survivors:
                seed = agreement.pairwise_seed(
                    masking_private,
                    advertised[u].masking_public,
                    federation_id=config.federation_id,
                    round=config.round,
                    u=u,
                    v=v,
                )
                dropped_pairs.append((u, v, seed))
    return tuple(masks.correction_terms(self_seeds, dropped_pairs))


def _rebuild(
    config: RoundConfig, unmasked: Mapping[str, UnmaskShares], owner: str, field: str, length: int
) -> bytes:
    shares = [
        shamir.Share.from_bytes(data)
        for message in unmasked.values()
        for share_owner, data in getattr(message, field)
        if share_owner == owner
    ]
    return shamir.combine(shares, config.threshold, length)
