"""Every RPC request the coordinator accepts, garbled by Hypothesis, over real gRPC.

The coordinator serves a federation whose three members enrolled: a `masks` one, whose
round 1 waits in its ADVERTISE stage, and a `none` one, whose round 1 waits for
uploads (so that chunks reach the wire decoder and the sum). Each example sends one
request of one RPC with random or
hostile field values (wrong lengths, huge numbers, unknown enum values, duplicated
entries, random bytes, unknown or impersonated participants). The property: the
request is refused with the gRPC status its `accord.errors` class names (the details
start with that class's name), never INTERNAL or UNKNOWN, and the federation's status
(`GetStatus`, liveness aside) is what it was before. A few RPCs may succeed on input
that happens to be valid (a heartbeat, a task poll, a repeated enrolment); their answer
is then checked to be well-formed instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accord import errors
from accord.coordinator import server
from accord.crypto import agreement, ceremony
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from accord.wire.round_config import round_config_from_proto
from accord.wire.tasks import ceremony_keys_from_proto

from .plaintext_federation import (
    ADAPTER_PARAMETERS,
    MODEL_HASH,
    NAMES,
    json_logger,
    make_config,
    make_keys,
    upload_chunks,
)
from .test_service import comparable, header

FEDERATION = "accord-demo"
LOCAL = (errors.UsageError,)
"""A peer's bad input is never a misuse of the coordinator's own API. (A ConfigError is a
refusal that tells the member to fix its settings, e.g. another adapter size.)"""
TYPED = {
    cls.__name__: cls
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.AccordError)
    and cls is not errors.AccordError
    and not issubclass(cls, LOCAL)
}
DETAILS = re.compile(r"^(\w+): ")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


WAITS_IN = {"masks": pb.ADVERTISE, "none": pb.UPLOAD}
"""The stage round 1 of each profile waits in once everyone enrolled."""


@pytest.fixture(scope="module", params=sorted(WAITS_IN))
def federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[server.RunningServer, pb_grpc.CoordinatorStub, pb.Task]]:
    profile = request.param
    folder = tmp_path_factory.mktemp(f"fuzz-rpc-{profile}")
    config = make_config(
        folder,
        make_keys(),
        profile=profile,
        rate_limit_per_s=1e6,
        rate_limit_burst=10**6,
        aggregation_workers=0,
        stage_deadline_s=3600,
    )
    running = server.start(config, log=json_logger(folder))
    keys = make_keys()
    ceremony_keys = {name: agreement.generate_keypair() for name in NAMES}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CoordinatorStub(channel)
            for name in NAMES:
                public = ceremony_keys[name].public
                stub.Enroll(
                    pb.EnrollRequest(
                        header=header(name),
                        base_model_hash=MODEL_HASH,
                        adapter_parameters=ADAPTER_PARAMETERS,
                        ceremony_public_key=public,
                        ceremony_key_signature=ceremony.sign_ceremony_key(
                            keys[name].private,
                            federation_id=FEDERATION,
                            participant=name,
                            ceremony_public=public,
                        ),
                    ),
                    timeout=10,
                )
            task = stub.NextTask(pb.TaskRequest(header=header("energy"), wait_s=5), timeout=10)
            if task.stage == pb.KEY_CEREMONY:  # every secure profile makes its keys first
                made = ceremony.make(
                    ceremony_keys_from_proto(task),
                    {name: pair.public for name, pair in keys.items()},
                    federation_id=FEDERATION,
                    key_epoch=task.key_epoch,
                    maker="energy",
                    maker_identity_private=keys["energy"].private,
                    with_ckks=False,
                )
                stub.PostCeremony(
                    pb.CeremonyPost(
                        header=header("energy"),
                        key_epoch=made.key_epoch,
                        public_context=made.public,
                        secrets=[
                            pb.SealedSecret(
                                recipient_id=name, envelope=sealed, signature=made.signatures[name]
                            )
                            for name, sealed in sorted(made.sealed.items())
                        ],
                    ),
                    timeout=10,
                )
                task = stub.NextTask(pb.TaskRequest(header=header("energy"), wait_s=5), timeout=10)
            assert task.stage == WAITS_IN[profile], task
            yield running, stub, task
    finally:
        running.stop(grace_s=0)


# ---- strategies: hostile values for each field type ----

U64 = st.one_of(
    st.sampled_from([0, 1, 2, 3, 2**31, 2**32 - 1, 2**32, 2**40, 2**63, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
)
U32 = st.one_of(st.sampled_from([0, 1, 2, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
STAGE = st.one_of(st.sampled_from(list(pb.Stage.values())), st.integers(-(2**31), 2**31 - 1))
IDS = st.one_of(
    st.sampled_from([*NAMES, "", "mallory", "Energy", "energy ", "energy\x00", "e" * 300]),
    st.text(max_size=40),
)
BLOBS = st.one_of(
    st.binary(max_size=100),
    st.sampled_from([0, 1, 31, 32, 33, 63, 64, 65, 4096]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def headers(draw: st.DrawFn) -> pb.RequestHeader:
    """Mostly a member's routing fields (so checks past authentication run), else anything."""
    if draw(st.booleans()):
        federation, participant = FEDERATION, draw(st.sampled_from(NAMES))
    else:
        federation = draw(st.one_of(st.just(FEDERATION), st.text(max_size=20)))
        participant = draw(IDS)
    return pb.RequestHeader(
        federation_id=federation,
        participant_id=participant,
        round=draw(st.one_of(st.sampled_from([0, 1, 2, 2**63 - 1, 2**63, 2**64 - 1]), U64)),
        stage=draw(STAGE),
        sequence=draw(U64),
        signature=draw(BLOBS),
    )


def listed(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """Lists that often repeat an entry verbatim."""
    return st.lists(element, max_size=4).flatmap(
        lambda items: st.just(items + items[:1]) if items else st.just(items)
    ) | st.lists(element, max_size=4)


def sealed_shares() -> st.SearchStrategy[pb.SealedShare]:
    return st.builds(pb.SealedShare, sender_id=IDS, recipient_id=IDS, envelope=BLOBS)


REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "Enroll": st.builds(
        pb.EnrollRequest,
        header=headers(),
        base_model_hash=st.one_of(st.just(MODEL_HASH), st.text(max_size=80)),
        ceremony_public_key=BLOBS,
        software_version=st.text(max_size=20),
        adapter_parameters=st.one_of(st.just(ADAPTER_PARAMETERS), U64),
        ceremony_key_signature=BLOBS,
    ),
    "Heartbeat": st.builds(pb.HeartbeatRequest, header=headers(), state=st.text(max_size=50)),
    "PostCeremony": st.builds(
        pb.CeremonyPost,
        header=headers(),
        key_epoch=U32,
        public_context=BLOBS,
        secrets=listed(
            st.builds(pb.SealedSecret, recipient_id=IDS, envelope=BLOBS, signature=BLOBS)
        ),
    ),
    "FetchCeremony": st.builds(pb.CeremonyRequest, header=headers()),
    "NextTask": st.builds(
        pb.TaskRequest,
        header=headers(),
        # A member's poll with nothing new waits up to wait_s (capped at 60 s): keep it short.
        wait_s=st.sampled_from([float("nan"), float("-inf"), -1.0, 0.0, 0.01]),
    ),
    "AdvertiseKeys": st.builds(
        pb.AdvertiseKeysRequest,
        header=headers(),
        keys=st.builds(
            pb.SignedKeys,
            participant_id=IDS,
            encryption_public_key=BLOBS,
            masking_public_key=BLOBS,
            signature=BLOBS,
            sequence=U64,
        ),
    ),
    "ShareKeys": st.builds(pb.ShareKeysRequest, header=headers(), shares=listed(sealed_shares())),
    "SubmitUnmaskShares": st.builds(
        pb.UnmaskRequest,
        header=headers(),
        self_mask_shares=listed(st.builds(pb.Share, owner_id=IDS, share=BLOBS)),
        masking_key_shares=listed(st.builds(pb.Share, owner_id=IDS, share=BLOBS)),
    ),
    "DownloadAggregate": st.builds(pb.AggregateRequest, header=headers()),
    "UploadUpdate": st.lists(
        st.builds(pb.UpdateChunk, header=headers(), chunk=BLOBS), min_size=0, max_size=3
    ),
}
MAY_SUCCEED = {"Enroll", "Heartbeat", "NextTask", "FetchCeremony"}
"""RPCs whose random input can be valid: the rest need a signature no example can forge."""


def call(stub: pb_grpc.CoordinatorStub, rpc: str, request: Any) -> Any:
    method: Callable[..., Any] = getattr(stub, rpc)
    if rpc == "UploadUpdate":
        return method(iter(request), timeout=10)
    if rpc == "DownloadAggregate":
        return list(method(request, timeout=10))
    return method(request, timeout=10)


def check_refusal(error: grpc.RpcError) -> None:
    code, details = error.code(), error.details() or ""
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (code, details)
    named = DETAILS.match(details)
    assert named is not None and named.group(1) in TYPED, (code, details)
    event(f"refused: {named.group(1)}")
    assert TYPED[named.group(1)].grpc_status == code.name, (code, details)


@pytest.mark.parametrize("rpc", sorted(REQUESTS))
@FUZZ
@given(data=st.data())
def test_a_garbled_request_is_refused_typed_and_changes_nothing(
    federation, rpc: str, data: st.DataObject
) -> None:
    running, stub, _ = federation
    request = data.draw(REQUESTS[rpc], label=rpc)
    before = comparable(stub.GetStatus(pb.StatusRequest(), timeout=10))
    try:
        answer = call(stub, rpc, request)
    except grpc.RpcError as error:
        check_refusal(error)
        after = comparable(stub.GetStatus(pb.StatusRequest(), timeout=10))
        assert after == before, (rpc, request)
        return
    event("accepted")
    assert rpc in MAY_SUCCEED, (rpc, request, answer)
    assert running.orchestrator.status().round == 1  # the round still waits, unharmed


@pytest.mark.parametrize("round", [2**63, 2**64 - 1])
@pytest.mark.parametrize("rpc", ["DownloadAggregate", "Heartbeat", "NextTask", "UploadUpdate"])
def test_a_round_past_what_the_store_holds_is_malformed(federation, rpc: str, round: int) -> None:
    # Found by the property above: the store's range check answered UsageError.
    _, stub, _ = federation
    routed = pb.RequestHeader(federation_id=FEDERATION, participant_id="energy", round=round)
    request = {
        "DownloadAggregate": pb.AggregateRequest(header=routed),
        "Heartbeat": pb.HeartbeatRequest(header=routed),
        "NextTask": pb.TaskRequest(header=routed),
        "UploadUpdate": [pb.UpdateChunk(header=routed, chunk=b"x")],
    }[rpc]
    before = comparable(stub.GetStatus(pb.StatusRequest(), timeout=10))
    with pytest.raises(grpc.RpcError) as refused:
        call(stub, rpc, request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"Malformed: request header: round {round} is out of range"
    assert comparable(stub.GetStatus(pb.StatusRequest(), timeout=10)) == before


DAMAGE = ["flip", "truncate", "extend", "duplicate", "drop", "sequence", "signature", "stage"]


@pytest.mark.parametrize("federation", ["none"], indirect=True)
@FUZZ
@given(data=st.data())
def test_a_damaged_valid_upload_is_refused_typed_and_changes_nothing(
    federation, data: st.DataObject
) -> None:
    running, stub, task = federation
    assert task.stage == pb.UPLOAD
    config = round_config_from_proto(task.config, federation_id=FEDERATION)
    chunks, sequence, signature = upload_chunks(config, "energy", make_keys(), np.ones(10))
    routed = pb.RequestHeader(
        federation_id=FEDERATION,
        participant_id="energy",
        round=1,
        stage=pb.UPLOAD,
        sequence=sequence,
        signature=signature,
    )
    damage = data.draw(st.sampled_from(DAMAGE), label="damage")
    event(damage)
    index = data.draw(st.integers(0, len(chunks) - 1), label="chunk")
    chunk = bytearray(chunks[index])
    if damage == "flip":
        bit = data.draw(st.integers(0, 8 * len(chunk) - 1), label="bit")
        chunk[bit // 8] ^= 1 << (bit % 8)
        chunks[index] = bytes(chunk)
    elif damage == "truncate":
        chunks[index] = bytes(chunk[: data.draw(st.integers(0, len(chunk) - 1))])
    elif damage == "extend":
        chunks[index] = bytes(chunk) + data.draw(st.binary(min_size=1, max_size=16))
    elif damage == "duplicate":
        chunks.insert(index, chunks[index])
    elif damage == "drop":
        del chunks[index]
    elif damage == "sequence":
        routed.sequence = sequence + data.draw(st.integers(1, 2**32))
    elif damage == "signature":
        bit = data.draw(st.integers(0, 8 * len(signature) - 1), label="bit")
        routed.signature = bytes(
            b ^ (1 << (bit % 8)) if i == bit // 8 else b for i, b in enumerate(signature)
        )
    else:
        routed.stage = data.draw(st.sampled_from([s for s in pb.Stage.values() if s != pb.UPLOAD]))
    before = comparable(stub.GetStatus(pb.StatusRequest(), timeout=10))
    with pytest.raises(grpc.RpcError) as refused:
        call(stub, "UploadUpdate", [pb.UpdateChunk(header=routed, chunk=c) for c in chunks])
    check_refusal(refused.value)
    assert comparable(stub.GetStatus(pb.StatusRequest(), timeout=10)) == before
    assert running.orchestrator.status().round == 1
