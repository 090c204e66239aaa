"""Per-participant rate limits: token buckets on an injected clock, then over real gRPC."""

from __future__ import annotations

import grpc
import pytest

from accord.coordinator import server
from accord.coordinator.ratelimit import MAX_TRACKED, ParticipantRateLimiter, TokenBucket
from accord.errors import RateLimited, UsageError
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from tests.support import FakeClock

from .plaintext_federation import json_logger, make_config, make_keys
from .test_service import comparable, enroll, header, status_code


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(rate_per_s=2.0, burst=3, now_s=0.0)
    assert [bucket.take(now_s=0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(now_s=0.4)  # 0.8 of a token earned: not yet
    assert bucket.take(now_s=0.5)  # one token after 1 / rate seconds
    assert not bucket.take(now_s=0.5)
    # A long quiet spell refills to the burst, never beyond it.
    assert [bucket.take(now_s=100.0) for _ in range(4)] == [True, True, True, False]


def test_a_bucket_refuses_nonsense_settings_and_a_clock_going_back() -> None:
    with pytest.raises(UsageError):
        TokenBucket.full(rate_per_s=0, burst=3, now_s=0.0)
    with pytest.raises(UsageError):
        ParticipantRateLimiter(1.0, 0)
    bucket = TokenBucket.full(rate_per_s=1.0, burst=1, now_s=10.0)
    assert bucket.take(now_s=10.0)
    assert not bucket.take(now_s=5.0)  # an earlier time earns nothing
    assert bucket.take(now_s=11.0)


def test_each_participant_has_its_own_bucket() -> None:
    clock = FakeClock(100.0)
    limiter = ParticipantRateLimiter(1.0, 2, clock=clock)
    limiter.check("energy")
    limiter.check("energy")
    with pytest.raises(RateLimited, match="energy exceeds 1 requests per second"):
        limiter.check("energy")
    limiter.check("urban")  # untouched by energy's burst
    limiter.check("urban")
    clock.now += 1.0
    limiter.check("energy")
    with pytest.raises(RateLimited):
        limiter.check("energy")


def test_invented_ids_cannot_grow_the_table_without_bound() -> None:
    clock = FakeClock(100.0)
    limiter = ParticipantRateLimiter(1000.0, 2, clock=clock)
    limiter.check("energy")
    limiter.check("energy")
    for i in range(MAX_TRACKED + 10):
        clock.now += 0.001
        limiter.check(f"made-up-{i}")
    assert len(limiter._buckets) <= MAX_TRACKED + 1


def test_a_burst_over_grpc_is_resource_exhausted_and_changes_nothing(tmp_path) -> None:
    keys = make_keys()
    config = make_config(tmp_path, keys, rate_limit_per_s=0.01, rate_limit_burst=3)
    running = server.start(config, log=json_logger(tmp_path))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CoordinatorStub(channel)
            enroll(stub, "energy")
            for state in ("one", "two"):
                stub.Heartbeat(pb.HeartbeatRequest(header=header("energy"), state=state))
            before = comparable(stub.GetStatus(pb.StatusRequest()))
            assert {p.participant_id: p.state for p in before.participants}["energy"] == "two"
            code, details = status_code(
                lambda: stub.Heartbeat(pb.HeartbeatRequest(header=header("energy"), state="three"))
            )
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert details.startswith("RateLimited: energy exceeds 0.01 requests per second")
            code, _ = status_code(lambda: enroll(stub, "energy"))
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
            # The refused requests changed nothing, and another participant is unaffected.
            assert comparable(stub.GetStatus(pb.StatusRequest())) == before
            enroll(stub, "urban")
    finally:
        running.stop(grace_s=0)
