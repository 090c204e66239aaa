"""The daemon's connection to the coordinator, and what it knows of the membership.

    dial         `load_kit` and the channel: mTLS with the kit's pinned CA, else plaintext
                 (loopback debugging)
    connect      wait until the coordinator answers; stop at once if it refuses this kit
    enroll       announce this member (its model, its signed ceremony key) and take the
                 roster: with a kit, only identity keys its CA certified (`know` enrols
                 again to learn a member approved since)
    call         an idempotent RPC, retried with backoff while the coordinator is away
    heartbeat    liveness every interval, and at once when the daemon's state changes

`Session` reads time only from the injected `Clock`; the daemon, the key ceremony
(`ceremony_keys.CeremonyKeys`), the upload (`uploading.py`) and the aggregate
(`applying.py`) all call the coordinator through it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import grpc

from accord import __version__
from accord.core import logs, transport
from accord.crypto import agreement, ceremony
from accord.crypto.messages import Stage
from accord.errors import ConfigError, ProtocolError
from accord.participant.ceremony_keys import ceremony_private
from accord.participant.clock import Clock
from accord.participant.config import ParticipantConfig
from accord.participant.kit.certificates import CertifiedRoster, certify_roster, load_certificate
from accord.participant.kit.startup_kit import Kit, secure_channel
from accord.participant.rpc_errors import accord_error, refusal, retryable
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from accord.wire.enrol import roster_from_proto
from accord.wire.headers import Header, header_to_proto
from accord.wire.stages import profile_from_proto

T = TypeVar("T")


class Session:
    """One member's connection to the coordinator: calls, enrolment, roster, liveness.

    Args:
        config: the member's settings.
        kit: its startup kit (None: plaintext debugging, the coordinator is trusted).
        identity_private: its raw Ed25519 identity key (signs its ceremony key).
        base_model_hash: the trainer's base model, announced at enrolment.
        adapter_parameters: the trainer's adapter size, announced at enrolment.
        clock: where deadlines and retry sleeps are read.
        log: structured logger.
    """

    def __init__(
        self,
        config: ParticipantConfig,
        kit: Kit | None,
        *,
        identity_private: bytes,
        base_model_hash: str,
        adapter_parameters: int,
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        self._config = config
        self._kit = kit
        self._identity_private = identity_private
        self._base_model_hash = base_model_hash
        self._adapter_parameters = adapter_parameters
        self._clock = clock
        self._log = log
        self.state = "starting"
        """What the daemon is doing, as the heartbeat reports it."""
        self.stopped = threading.Event()
        """Set by `stop`: the daemon returns after the current call."""
        self._state_changed = threading.Event()
        self.identities: dict[str, bytes] = {}
        """The members' identity keys (with a kit, only those its CA certified)."""
        self.certified: CertifiedRoster | None = None
        """The CA-checked roster (None without a kit)."""
        self.uses_ckks = True  # the federation's profile, from Enroll
        self.transfer_timeout_s = 120.0
        """The deadline of a streamed upload or download (twice the stage deadline)."""
        self._heartbeat: threading.Thread | None = None
        self.channel = _dial(config, kit)
        self.stub = pb_grpc.CoordinatorStub(self.channel)

    def open(self) -> None:
        """Connect, enrol, and start the heartbeat thread (`close` ends it).

        Raises:
            ConfigError: the coordinator does not answer, or refuses this participant's
                settings.
        """
        self.connect()
        interval = self.enroll()
        self._heartbeat = threading.Thread(
            target=self._beat, args=(interval,), name="accord-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def stop(self) -> None:
        """Ask the daemon and the heartbeat to return after the current call."""
        self.stopped.set()
        self._state_changed.set()

    def close(self) -> None:
        """Close the channel (it cancels a heartbeat in flight), then wait for the heartbeat."""
        self.channel.close()
        if self._heartbeat is not None:
            # A daemon thread still inside a gRPC call when the interpreter exits is
            # unwound through C++ frames and aborts the process ("terminate called
            # without an active exception", exit status -6): let it finish first.
            self._heartbeat.join(timeout=10.0)

    def connect(self) -> None:
        """Wait until the coordinator answers; stop at once if it refuses this kit.

        Raises:
            ConfigError: no answer within `connect_timeout_s`, or a refusal no retry can
                fix (a failed TLS handshake, an unknown or revoked certificate).
        """
        deadline = self._clock.monotonic() + self._config.connect_timeout_s
        delays = transport.retry_delays()
        while True:
            try:
                self.stub.GetStatus(pb.StatusRequest(), timeout=5.0)
                return
            except grpc.RpcError as error:
                stop = refusal(error, kit=self._config.kit)
                if stop is not None:
                    raise stop from None
                if self._clock.monotonic() > deadline:
                    raise ConfigError(
                        f"[participant] coordinator = {self._config.coordinator!r}: no answer "
                        f"within {self._config.connect_timeout_s:g} s (is the coordinator running "
                        "there? Or does it refuse this kit's certificate? `accord kit check KIT` "
                        "tells)"
                    ) from None
                self._clock.sleep(next(delays))

    def enroll(self) -> float:
        """Enrol (again: the coordinator takes it as a repeat); return the heartbeat interval."""
        ceremony_public = agreement.public_key(ceremony_private(self._config, self._kit))
        request = pb.EnrollRequest(
            header=self.header(),
            base_model_hash=self._base_model_hash,
            software_version=__version__,
            adapter_parameters=self._adapter_parameters,
            ceremony_public_key=ceremony_public,
            ceremony_key_signature=ceremony.sign_ceremony_key(
                self._identity_private,
                federation_id=self._config.federation_id,
                participant=self._config.name,
                ceremony_public=ceremony_public,
            ),
        )
        try:
            response = self.stub.Enroll(request, timeout=30.0)
        except grpc.RpcError as error:
            raise (refusal(error, kit=self._config.kit) or accord_error(error)) from None
        self._accept_roster(response.roster)
        self.uses_ckks = profile_from_proto(response.profile).uses_ckks
        self.set_state("enrolled")
        logs.event(
            self._log,
            "enrolled",
            participant=self._config.name,
            round=response.current_round,
            adapter_parameters=self._adapter_parameters,
        )
        return response.heartbeat_interval_s or 2.0

    def _accept_roster(self, entries: Iterable[pb.RosterEntry]) -> None:
        """Take the members' identity keys from an Enroll response.

        With a kit, only the keys its pinned CA certified (DESIGN.md guarantee 2): an
        entry that fails is refused and logged, and a round or key ceremony that needs
        that member is refused (`know`). Without a kit (`insecure_plaintext`, loopback
        debugging) there is no CA to ask, and the coordinator is trusted.
        """
        if self._kit is None or self._config.insecure_plaintext:
            self.identities = roster_from_proto(entries)
            return
        ca = load_certificate(self._kit.ca_pem, str(self._kit.paths.ca_cert))
        roster = certify_roster(entries, ca, now=self._clock.now())
        for name, reason in sorted(roster.refused.items()):
            logs.event(
                self._log, "member_refused", participant=name, reason=reason, level=logging.WARNING
            )
        self.certified = roster
        self.identities = roster.identities

    def know(self, names: Iterable[str], *, what: str) -> None:
        """Hold a (certified) identity key of each of `names`; enrol again to learn newcomers.

        A member approved while the federation runs is unknown to those that enrolled
        before it: enrolling again (the coordinator takes it as a repeat) fetches the
        current roster.

        Raises:
            ProtocolError: a member still without a key; the message names it and why.
        """
        names = sorted(set(names))
        if all(name in self.identities for name in names):
            return
        self.enroll()
        if self.certified is not None:
            self.certified.require(names, what=what)
        for name in names:
            if name not in self.identities:
                raise ProtocolError(
                    f"{what} refused: the coordinator's roster does not list {name}"
                )

    def _beat(self, interval_s: float) -> None:
        """Report liveness every `interval_s`, and at once when the state changes."""
        while not self.stopped.is_set():
            self._state_changed.wait(interval_s)
            self._state_changed.clear()
            if self.stopped.is_set():
                return  # `run` is closing the channel
            self.send_heartbeat(timeout_s=interval_s * 2)

    def send_heartbeat(self, *, timeout_s: float) -> None:
        """Report `state` once; a failed heartbeat is logged, never raised."""
        request = pb.HeartbeatRequest(header=self.header(), state=self.state)
        try:
            self.stub.Heartbeat(request, timeout=timeout_s)
        except grpc.RpcError as error:
            logs.event(self._log, "heartbeat_failed", code=error.code().name, level=logging.WARNING)

    def header(self, *, round: int = 0, stage: Stage | None = None) -> pb.RequestHeader:
        """A fresh request header of this member (`round` 0: outside any round)."""
        return header_to_proto(Header(self._config.federation_id, round, stage, self._config.name))

    def set_state(self, state: str) -> None:
        """Note what the daemon does now; the heartbeat reports it at once."""
        self.state = state
        self._state_changed.set()

    def call(self, method: Callable[..., T], request: object, *, timeout: float = 30.0) -> T:
        """Call an idempotent RPC, retrying with backoff while the coordinator is unreachable."""
        deadline = self._clock.monotonic() + self._config.connect_timeout_s
        delays = transport.retry_delays()
        while True:
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as error:
                if not retryable(error) or self._clock.monotonic() > deadline:
                    raise accord_error(error) from None
                delay = next(delays)
                logs.event(
                    self._log,
                    "retrying",
                    code=error.code().name,
                    delay_s=round(delay, 3),
                    level=logging.WARNING,
                )
                self._clock.sleep(delay)


def load_kit(config: ParticipantConfig) -> Kit | None:
    """The kit `config.kit` names (None: plaintext debugging); ConfigError if unusable."""
    if config.kit is None and not config.insecure_plaintext:
        raise ConfigError(
            "[participant] kit: required unless insecure_plaintext = true (run `accord "
            'provision federation.toml --out DIR` and set kit = "DIR/kits/<name>")'
        )
    kit = Kit.load(config.kit) if config.kit is not None else None
    if kit is not None and kit.coordinator_ledger_key is None:
        raise ConfigError(
            f"[participant] kit = {str(config.kit)!r}: the kit pins no coordinator ledger "
            "key (packaged before kits did); ask the operator to run `accord provision "
            "ledger-key` and approve your request again, then `accord kit package` anew"
        )
    return kit


def _dial(config: ParticipantConfig, kit: Kit | None) -> grpc.Channel:
    """The channel to the coordinator: mTLS with the kit, else plaintext (loopback debugging)."""
    options = transport.client_options(config.max_message_bytes)
    if kit is None or config.insecure_plaintext:
        return grpc.insecure_channel(config.coordinator, options=options)
    # mTLS, trusting only the kit's pinned CA; the config may override its address, not CA.
    dial = dataclasses.replace(kit, coordinator=config.coordinator)
    return secure_channel(dial, options=options)
