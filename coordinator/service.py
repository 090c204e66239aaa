"""The Coordinator gRPC servicer: thin, it converts messages and asks the orchestrator.

No protocol decision is made here (see `orchestrator.py`), and no exception is turned
into a status here: `server.py` maps every `AccordError` in one interceptor. Every
request that names a participant passes `_header`: authentication, then the
participant's rate limit (`ratelimit.py`), before the orchestrator sees it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.live_roster import Roster
from accord.coordinator.operator.approve import REVOCATIONS_FILE
from accord.coordinator.orchestrator import Orchestrator
from accord.coordinator.ratelimit import ParticipantRateLimiter
from accord.crypto.lifecycle import Lifecycle
from accord.errors import Malformed, StreamIdle
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from accord.wire.ceremony import (
    ceremony_bundle_to_proto,
    enrolment_ceremony_key_from_proto,
    sealed_keys_from_proto,
)
from accord.wire.enrol import roster_to_proto
from accord.wire.evidence import confirm_survivors_from_proto, evidence_to_proto
from accord.wire.headers import Header, header_from_proto
from accord.wire.keys import advertise_from_proto, share_keys_from_proto, unmask_from_proto
from accord.wire.round_config import round_config_to_proto
from accord.wire.stages import profile_to_proto, shown_stage
from accord.wire.status import status_to_proto
from accord.wire.tasks import assignment_to_proto


class CoordinatorService(pb_grpc.CoordinatorServicer):
    """Serves `accord.v1.Coordinator` for one federation.

    Args:
        config: the coordinator's settings (`rate_limit_per_s`, `rate_limit_burst`).
        orchestrator: decides everything about the rounds.
        authenticate: checks that the mTLS peer may speak for a participant id.
        limiter: per-participant request limits; one from `config` when None.
        roster: the live provisioning roster (mTLS): the Enroll response hands out each
            member's certificate from it, so that participants check the keys against
            their CA.
        admit_from_roster: the members are the roster's, not a list in the settings:
            an enrolment first admits the participants approved since the start.
    """

    def __init__(
        self,
        config: CoordinatorConfig,
        orchestrator: Orchestrator,
        *,
        authenticate: Callable[[grpc.ServicerContext, str], None] | None = None,
        limiter: ParticipantRateLimiter | None = None,
        roster: Roster | None = None,
        admit_from_roster: bool = False,
    ) -> None:
        self._config = config
        self._orchestrator = orchestrator
        self._authenticate = authenticate
        self._roster = roster
        self._admit_from_roster = admit_from_roster and roster is not None
        self._limiter = limiter or ParticipantRateLimiter(
            config.rate_limit_per_s, config.rate_limit_burst
        )

    def _header(
        self, header: pb.RequestHeader, context: grpc.ServicerContext, *, counts: bool = True
    ) -> Header:
        """The request's routing fields, once its sender is authenticated and within its rate.

        The caller's mTLS certificate must be allowed to speak for the participant id the
        header claims; then the request takes a token of that participant's bucket.
        `counts=False` for the later messages of a stream, which belong to a request
        already counted (an upload's chunks).

        Raises:
            Malformed: the header lacks its federation or participant id.
            NotAllowed: the mTLS peer may not speak for the participant it names.
            RateLimited: the participant made more requests than its rate allows.
        """
        routed = header_from_proto(header)
        if self._roster is not None:
            # A revocation bites at once: never selected again, and a new CKKS key.
            self._orchestrator.revoke(self._roster.revoked_ids())
        if self._authenticate is not None:
            self._authenticate(context, routed.participant)
        if counts:
            self._limiter.check(routed.participant)
        return routed

    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        header = self._header(request.header, context)
        if self._admit_from_roster:
            assert self._roster is not None
            self._orchestrator.admit(self._roster.identity_keys())
        current_round = self._orchestrator.enroll(
            header,
            base_model_hash=request.base_model_hash,
            adapter_parameters=request.adapter_parameters,
            ceremony_key=enrolment_ceremony_key_from_proto(request, header.participant),
        )
        return pb.EnrollResponse(
            federation_id=self._config.federation_id,
            current_round=current_round,
            profile=profile_to_proto(self._config.profile),
            roster=roster_to_proto(
                self._orchestrator.identities,
                self._roster.snapshot().active() if self._roster is not None else None,
            ),
            heartbeat_interval_s=self._config.heartbeat_interval_s,
        )

    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.HeartbeatResponse:
        header = self._header(request.header, context)
        current_round, stage = self._orchestrator.heartbeat(header, request.state)
        return pb.HeartbeatResponse(
            current_round=current_round,
            stage=shown_stage(stage, Lifecycle.IDLE),
        )

    def NextTask(self, request: pb.TaskRequest, context: grpc.ServicerContext) -> pb.Task:
        header = self._header(request.header, context)
        task = self._orchestrator.next_task(header, wait_s=request.wait_s, active=context.is_active)
        answer = assignment_to_proto(task, stage_deadline_s=self._config.stage_deadline_s)
        if self._config.roster is not None:
            # Relay the operator's newest signed revocation list; members check it.
            revocations = self._config.roster.parent / REVOCATIONS_FILE
            if revocations.exists():
                answer.revocation_list = revocations.read_bytes()
        return answer

    def UploadUpdate(
        self, request_iterator: Iterator[pb.UpdateChunk], context: grpc.ServicerContext
    ) -> pb.UploadReceipt:
        upload = None
        header = None
        try:
            for message in _idle_limited(request_iterator, self._config.stream_idle_s):
                header = self._header(message.header, context, counts=upload is None)
                if upload is None:
                    upload = self._orchestrator.open_upload(header)
                self._orchestrator.take_chunk(upload, header, message.chunk)
            if upload is None or header is None:
                raise Malformed("an upload needs at least one chunk")
            digest = self._orchestrator.finish_upload(upload, header)
            return pb.UploadReceipt(chunks=len(upload.chunks), bytes=upload.bytes, digest=digest)
        finally:
            if upload is not None:
                upload.chunks.close()

    def DownloadAggregate(
        self, request: pb.AggregateRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.AggregateChunk]:
        header = self._header(request.header, context)
        config, chunks, evidence = self._orchestrator.aggregate_for(header)
        sent = 0
        for index, chunk in enumerate(chunks):
            message = pb.AggregateChunk(chunk=chunk)
            if index == 0:
                message.config.CopyFrom(
                    round_config_to_proto(config, stage_deadline_s=self._config.stage_deadline_s)
                )
                if evidence is not None:
                    message.evidence.CopyFrom(evidence_to_proto(evidence))
            yield message
            sent += len(chunk)
        self._orchestrator.download_done(header, sent)

    def GetStatus(
        self, request: pb.StatusRequest, context: grpc.ServicerContext
    ) -> pb.StatusResponse:
        return status_to_proto(
            self._orchestrator.status(),
            federation_id=self._config.federation_id,
            profile=self._config.profile,
        )

    def PostCeremony(self, request: pb.CeremonyPost, context: grpc.ServicerContext) -> pb.Ack:
        header = self._header(request.header, context)
        self._orchestrator.post_ceremony(
            header,
            key_epoch=request.key_epoch,
            public=request.public_context,
            sealed=sealed_keys_from_proto(request),
        )
        return pb.Ack(message=f"key epoch {request.key_epoch} stored")

    def FetchCeremony(
        self, request: pb.CeremonyRequest, context: grpc.ServicerContext
    ) -> pb.CeremonyBundle:
        header = self._header(request.header, context)
        keys, sealed = self._orchestrator.fetch_ceremony(header)
        return ceremony_bundle_to_proto(
            key_epoch=keys.epoch, maker=keys.maker, public=keys.public, sealed=sealed
        )

    def AdvertiseKeys(
        self, request: pb.AdvertiseKeysRequest, context: grpc.ServicerContext
    ) -> pb.Ack:
        header = self._header(request.header, context)
        self._orchestrator.receive(header, advertise_from_proto(request, header))
        return pb.Ack()

    def ShareKeys(self, request: pb.ShareKeysRequest, context: grpc.ServicerContext) -> pb.Ack:
        header = self._header(request.header, context)
        self._orchestrator.receive(header, share_keys_from_proto(request, header))
        return pb.Ack()

    def SubmitUnmaskShares(
        self, request: pb.UnmaskRequest, context: grpc.ServicerContext
    ) -> pb.Ack:
        header = self._header(request.header, context)
        self._orchestrator.receive(header, unmask_from_proto(request, header))
        return pb.Ack()

    def ConfirmSurvivors(
        self, request: pb.ConsistencyRequest, context: grpc.ServicerContext
    ) -> pb.Ack:
        header = self._header(request.header, context)
        self._orchestrator.receive(header, confirm_survivors_from_proto(request, header))
        return pb.Ack()

    def ConfirmApplied(self, request: pb.AggregateApplied, context: grpc.ServicerContext) -> pb.Ack:
        header = self._header(request.header, context)
        self._orchestrator.applied(header)
        return pb.Ack()


Message = TypeVar("Message")

_READ_AHEAD = 4
"""Messages a stream's reader thread takes ahead of the handler."""


def _idle_limited(messages: Iterator[Message], idle_s: float) -> Iterator[Message]:
    """`messages`, ending with `StreamIdle` once the peer sends nothing for `idle_s`.

    gRPC's request iterator blocks without a timeout, so a reader thread takes the
    messages and the handler waits for each at most `idle_s`. After `StreamIdle` the
    handler's status ends the call, which ends the reader's wait as well.
    """
    box: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=_READ_AHEAD)
    abandoned = threading.Event()

    def put(item: tuple[bool, object]) -> None:
        while not abandoned.is_set():
            try:
                box.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            for message in messages:
                put((True, message))
            put((False, None))
        except BaseException as error:  # the call was cancelled or ended: hand it over
            put((False, error))

    threading.Thread(target=read, name="accord-stream-reader", daemon=True).start()
    try:
        while True:
            try:
                more, item = box.get(timeout=idle_s)
            except queue.Empty:
                raise StreamIdle(
                    f"the stream sent nothing for {idle_s:g} s "
                    "([coordinator] stream_idle_s); send chunks without pauses"
                ) from None
            if not more:
                if isinstance(item, BaseException):
                    raise item
                return
            yield item  # type: ignore[misc]
    finally:
        abandoned.set()
