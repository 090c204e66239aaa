"""The round's parameters and its running sum, as the coordinator builds them.

`round_config` turns the coordinator's settings into the `RoundConfig` both sides
agree on. `RoundSum` wraps `accord.crypto.aggregate.UpdateSum` (the only code that
reads or adds wire chunks) with what the driver needs on top: chunks of one upload
must arrive in plan order and complete, and the mask correction is added before
the aggregate is served.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from accord.coordinator.config import CoordinatorConfig
from accord.crypto import masks
from accord.crypto.aggregate import UpdateSum
from accord.crypto.ckks import PublicContext
from accord.crypto.messages import RoundConfig
from accord.crypto.packing import choose_packing
from accord.crypto.quantize import QuantSpec
from accord.errors import Malformed


def round_config(
    config: CoordinatorConfig,
    *,
    round: int,
    selected: Sequence[str],
    element_count: int,
    graph_seed: bytes,
    key_epoch: int = 0,
) -> RoundConfig:
    """The parameters of round `round` for the `selected` participants.

    Raises:
        ConfigError: the settings do not make a valid round (e.g. no exact packing).
    """
    max_participants = len(config.participants)
    quant = QuantSpec(
        modulus_bits=config.modulus_bits,
        max_participants=max_participants,
        clip_norm=config.clip_norm,
    )
    packing = (
        choose_packing(config.modulus_bits, max_participants) if config.profile.uses_ckks else None
    )
    return RoundConfig(
        federation_id=config.federation_id,
        round=round,
        profile=config.profile,
        selected=tuple(sorted(selected)),
        threshold=min(config.threshold, len(selected)),
        quant=quant,
        element_count=element_count,
        packing=packing,
        neighbour_degree=config.neighbour_degree or len(selected) - 1,
        graph_seed=graph_seed if config.profile.uses_masks else b"",
        key_epoch=key_epoch,
    )


class RoundSum:
    """One round's sum of uploads (O(model) memory, whatever the number of uploads).

    Args:
        config: the round.
        public: the CKKS public context (no key of any kind) for the CKKS profiles.
        max_chunk_bytes: larger chunks are refused.
    """

    def __init__(
        self, config: RoundConfig, *, public: PublicContext | None, max_chunk_bytes: int
    ) -> None:
        self._config = config
        self._sum = UpdateSum(
            config.profile,
            config.element_count,
            modulus_bits=config.quant.modulus_bits,
            packing=config.packing,
            public=public,
            federation_id=config.federation_id,
            round=config.round,
            max_chunk_bytes=max_chunk_bytes,
        )
        self._plan = self._sum.plan

    @property
    def chunk_count(self) -> int:
        """Chunks in one complete upload."""
        return len(self._plan)

    def check(self, chunk: bytes, *, index: int) -> None:
        """Validate chunk number `index` of an upload without adding it.

        Raises:
            Malformed: the chunk is out of order, or fails the wire checks.
            IntegrityError, Oversized: from the wire checks.
        """
        header = self._sum.check(chunk)
        if header.chunk_index != index:
            raise Malformed(f"chunk {header.chunk_index} arrived where chunk {index} was due")

    def check_complete(self, chunks: Sequence[bytes]) -> None:
        """Raise `Malformed` unless `chunks` is a whole upload."""
        if len(chunks) != self.chunk_count:
            raise Malformed(f"the upload has {len(chunks)} of {self.chunk_count} chunks")

    def add(self, chunks: Sequence[bytes]) -> None:
        """Add a whole upload whose chunks all passed `check`."""
        for chunk in chunks:
            self._sum.add(chunk)

    def finish(self, correction: Sequence[masks.MaskTerm]) -> Iterator[bytes]:
        """Remove the remaining masks (if any) and return the aggregate's chunks."""
        if correction:
            bits = self._config.quant.modulus_bits
            for start, count in self._plan:
                self._sum.add_correction(start, masks.correction(start, count, correction, bits))
        return self._sum.chunks()
