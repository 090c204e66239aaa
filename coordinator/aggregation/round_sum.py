"""The round's parameters and its running sum, as the coordinator builds them.

`round_config` turns the coordinator's settings into the `RoundConfig` both sides
agree on. `RoundSum` wraps `accord.crypto.aggregate.UpdateSum` (the only code that
reads or adds wire chunks) with what the driver needs on top: chunks of one upload
must arrive in plan order and complete, and the mask correction is added before
the aggregate is served.

Where the sum lives is `RoundSum`'s choice, not the driver's: given the coordinator's
`SumWorkers` pool and a vector of enough chunks, the running sum is spread over the
worker processes by chunk range (`sum_workers`); otherwise, or when the workers
cannot begin the round, it is one `UpdateSum` in this process. Either way each chunk
is checked here as it streams in, and the sum holds one model in all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized

from accord.coordinator.aggregation.spool import Spool
from accord.coordinator.aggregation.sum_ranges import (
    Holding,
    SumSpec,
    add_extents,
    finish_sum,
    holding,
)
from accord.coordinator.aggregation.sum_workers import SpreadSum, SumWorkers
from accord.coordinator.config import CoordinatorConfig
from accord.crypto import masks, wire
from accord.crypto.ckks import PublicContext
from accord.crypto.client_dp import ClientNoise, widened_value_bound
from accord.crypto.messages import RoundConfig
from accord.crypto.packing import choose_packing
from accord.crypto.quantize import QuantSpec
from accord.errors import Malformed, RoundAborted


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

    With `[coordinator.client_dp]` on, the round carries the noise setting, every weight
    is capped at its `weight_cap`, and the quantization grid is widened (`value_bound`)
    until the noisy sum fits the modulus (`crypto.client_dp.widened_value_bound`).

    Raises:
        ConfigError: the settings do not make a valid round (e.g. no exact packing, or no
            room for the client-level noise).
    """
    max_participants = len(config.participants)
    noise, quant = _noise_and_quant(config, len(selected))
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
        client_noise=noise,
    )


def _noise_and_quant(
    config: CoordinatorConfig, participants: int
) -> tuple[ClientNoise | None, QuantSpec]:
    """The round's client-level noise (when on) and the quantization grid that fits it."""
    max_participants = len(config.participants)
    noise: ClientNoise | None = None
    value_bound: float | None = None
    weight_cap: int | None = None
    if config.client_dp is not None and config.client_dp.enabled:
        noise = ClientNoise(
            noise_multiplier=config.client_dp.noise_multiplier,
            honest_fraction=config.client_dp.honest_fraction,
            delta=config.client_dp.delta,
        )
        value_bound = widened_value_bound(
            noise,
            modulus_bits=config.modulus_bits,
            max_participants=max_participants,
            clip_norm=config.clip_norm,
            participants=participants,
        )
        weight_cap = config.client_dp.weight_cap
    quant = QuantSpec(
        modulus_bits=config.modulus_bits,
        max_participants=max_participants,
        clip_norm=config.clip_norm,
        value_bound=value_bound,
        weight_cap=weight_cap,
    )
    return noise, quant


class RoundSum:
    """One round's sum of uploads (O(model) memory, whatever the number of uploads).

    Args:
        config: the round.
        public: the CKKS public context (no key of any kind) for the CKKS profiles.
        max_chunk_bytes: larger chunks are refused.
        workers: the coordinator's pool; None sums in this process.
        target_chunk_bytes: the chunk size the participants plan with.

    Attributes:
        workers: processes holding the sum (1: this one).
        fallback_reason: why the pool was not used although given and the vector is
            large enough (empty otherwise); the sum then lives in this process.
    """

    def __init__(
        self,
        config: RoundConfig,
        *,
        public: PublicContext | None,
        max_chunk_bytes: int,
        workers: SumWorkers | None = None,
        target_chunk_bytes: int = wire.DEFAULT_TARGET_CHUNK_BYTES,
    ) -> None:
        spec = SumSpec(
            config,
            public.to_bytes() if public is not None else b"",
            max_chunk_bytes=max_chunk_bytes,
            target_chunk_bytes=target_chunk_bytes,
        )
        self._spread: SpreadSum | None = None
        self.fallback_reason = ""
        if workers is not None:
            try:
                self._spread = workers.spread(spec)
            except RoundAborted as error:
                self.fallback_reason = str(error)
        # With workers this sum only checks chunks: it owns none of them.
        self._sum = spec.new_sum(range(0) if self._spread else None, public=public)
        self._plan = self._sum.plan
        self.workers = len(self._spread.ranges) if self._spread else 1

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
        # With workers only the frame is checked here (the receiving thread frames and
        # spools); the workers check the payloads in `stage`, in parallel.
        header = self._sum.check_frame(chunk) if self._spread else self._sum.check(chunk)
        if header.chunk_index != index:
            raise Malformed(f"chunk {header.chunk_index} arrived where chunk {index} was due")

    def check_complete(self, chunks: Sized) -> None:
        """Raise `Malformed` unless `chunks` is a whole upload."""
        if len(chunks) != self.chunk_count:
            raise Malformed(f"the upload has {len(chunks)} of {self.chunk_count} chunks")

    def stage(self, upload: Spool) -> None:
        """Validate a whole upload's payloads in the workers (a no-op without workers:
        `check` did it); the sum is unchanged. Call before `add`.

        Raises:
            RoundAborted: an aggregation worker was lost (the round's sum with it).
            Malformed, IntegrityError, Oversized: a chunk is refused, as `check` refuses it.
        """
        if self._spread is not None:
            self._spread.check(upload)

    def add(self, upload: Spool) -> None:
        """Add a whole upload whose chunks all passed `check` (and `stage`).

        Raises:
            RoundAborted: an aggregation worker was lost (the round's sum with it).
            AccordError: as `UpdateSum.add`.
        """
        if self._spread is not None:
            self._spread.add(upload)
            return
        add_extents(self._sum, upload.fileno(), upload.extents())

    def finish(self, correction: Sequence[masks.MaskTerm]) -> Iterator[bytes]:
        """Remove the remaining masks (if any) and return the aggregate's chunks.

        Raises:
            RoundAborted: an aggregation worker was lost, or an add had failed.
            UsageError: as `UpdateSum.chunks` (nothing added, or a partly added upload).
        """
        if self._spread is not None:
            return iter(self._spread.finish(correction))
        return finish_sum(self._sum, correction)

    def holdings(self) -> list[Holding]:
        """What each process holding the sum holds (the workers', or this process's)."""
        if self._spread is not None:
            return self._spread.holdings()
        return [holding(self._sum)]
