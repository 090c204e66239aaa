"""The live roster: the coordinator authorizes every call against it, and reloads it
when the operator rewrites the file.

Theory of operation (DESIGN.md section 1, "network attacker", and section 3, "Enroll";
docs/provisioning.md; the file and its entries: ``coordinator/roster.py``):

- ``Roster.authorize(peer, claimed)`` looks the peer's certificate up by fingerprint,
  never by the name inside it, and refuses (``NotAllowed``, PERMISSION_DENIED) a
  certificate that is unknown, revoked, or whose participant differs from the id a
  request claims: "certificate of energy cannot speak for urban". The coordinator
  calls it in one place, before any handler touches state.
- Revocation without restart: the operator rewrites the file (``accord provision
  revoke``, an atomic ``os.replace``); ``authorize`` first stats the file and reloads
  it when its (mtime, size, inode) signature changed, so the next request of a
  revoked participant is refused. A stat costs microseconds; a busy coordinator
  still stats at most once per ``check_interval_s`` (one second in the server), so a
  revocation takes effect within that interval. A certificate the last copy does not
  know stats the file at once, so a participant approved a moment ago is admitted
  (only certificates of the federation's CA get past the TLS handshake to ask).
- Fail closed: a roster that no longer parses refuses every participant until it is
  fixed; the reason is kept in ``Roster.error`` for the coordinator's log. Keeping the
  last good copy instead would keep a revoked participant in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from accord.coordinator.roster import RosterSnapshot, read_snapshot
from accord.core.pki import fingerprint, normalize_fingerprint
from accord.errors import ConfigError, NotAllowed, UsageError

__all__ = ["Roster"]


class Roster:
    """The live roster the coordinator authorizes against; reloads when the file changes.

    Thread-safe: gRPC handlers on many threads may call ``authorize`` at once.

    Args:
        path: the roster file.
        snapshot: its contents, as read.
        signature: its (mtime, size, inode, device) when read.
        check_interval_s: least seconds between two stats of the file; 0 stats on
            every call.
        clock: monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        path: Path,
        snapshot: RosterSnapshot,
        signature: tuple[int, ...],
        *,
        check_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = Path(path)
        self._snapshot = snapshot
        self._signature: tuple[int, ...] | None = signature
        self._error: ConfigError | None = None
        self._lock = threading.Lock()
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._checked_at_s: float | None = None

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        check_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> Roster:
        """Read the roster at ``path`` (the coordinator does this once, at start).

        Args:
            path: the roster file.
            check_interval_s: least seconds between two stats of the file (the
                coordinator uses one second; 0 stats on every call).
            clock: monotonic seconds.

        Raises:
            ConfigError: the file is missing or malformed.
        """
        path = Path(path)
        signature = _signature(path)
        return cls(
            path,
            read_snapshot(path),
            signature,
            check_interval_s=check_interval_s,
            clock=clock,
        )

    @property
    def path(self) -> Path:
        """The roster file."""
        return self._path

    @property
    def federation_id(self) -> str:
        """The federation of the last good copy."""
        return self._snapshot.federation_id

    @property
    def error(self) -> ConfigError | None:
        """Why the file could not be read at the last reload, or None if it could."""
        return self._error

    def snapshot(self) -> RosterSnapshot:
        """The contents after reloading the file if it changed."""
        self.reload_if_changed()
        with self._lock:
            return self._snapshot

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Stat the file; read it again if its (mtime, size, inode) changed.

        Within ``check_interval_s`` of the last stat it does nothing (and keeps
        refusing if the last read failed), unless ``force``.

        Returns:
            True if the file was read again.

        Raises:
            ConfigError: the file changed and no longer reads; until it does, every
                ``authorize`` is refused (fail closed).
        """
        now_s = self._clock()
        with self._lock:
            recent = (
                not force
                and self._checked_at_s is not None
                and now_s - self._checked_at_s < self._check_interval_s
            )
            if recent:
                if self._error is not None:
                    raise self._error
                return False
            self._checked_at_s = now_s
        try:
            signature: tuple[int, ...] | None = _signature(self._path)
        except ConfigError:
            signature = None
        with self._lock:
            if signature is not None and signature == self._signature:
                if self._error is not None:
                    raise self._error
                return False
            self._signature = signature
            try:
                self._snapshot = read_snapshot(self._path)
            except ConfigError as error:
                self._error = error
                raise
            self._error = None
            return True

    def authorize(self, peer: bytes | str, claimed_participant_id: str | None = None) -> str:
        """Map a peer's client certificate to the participant it may speak for.

        Args:
            peer: the peer certificate (DER or PEM bytes) or its SHA-256 fingerprint
                (hex; ``tls.peer_identity`` returns it).
            claimed_participant_id: the id the request claims (its header's
                ``participant_id``); None for calls that claim no id.

        Returns:
            The participant id the certificate belongs to.

        Raises:
            NotAllowed: the certificate is unknown or revoked, the claimed id differs,
                or the roster file is unreadable (fail closed).
        """
        try:
            self.reload_if_changed()
        except ConfigError:
            raise NotAllowed(
                "the coordinator's roster is unreadable; every participant is refused until "
                "the operator fixes it"
            ) from None
        cert_sha256 = _peer_fingerprint(peer)
        with self._lock:
            entry = self._snapshot.by_fingerprint(cert_sha256)
        if entry is None:
            # Approved a moment ago? Look at the file now rather than after the interval,
            # so that a newcomer is not refused (and its daemon stopped) by the cache.
            try:
                self.reload_if_changed(force=True)
            except ConfigError:
                raise NotAllowed(
                    "the coordinator's roster is unreadable; every participant is refused "
                    "until the operator fixes it"
                ) from None
        with self._lock:
            entry = self._snapshot.by_fingerprint(cert_sha256)
            federation_id = self._snapshot.federation_id
        if entry is None:
            raise NotAllowed(
                f"certificate {cert_sha256[:16]}… is not in the roster of federation "
                f"{federation_id} (ask the operator to approve your request)"
            )
        if not entry.active:
            raise NotAllowed(f"participant {entry.participant_id} is revoked")
        if claimed_participant_id is not None and claimed_participant_id != entry.participant_id:
            raise NotAllowed(
                f"certificate of {entry.participant_id} cannot speak for {claimed_participant_id}"
            )
        return entry.participant_id

    def identity_keys(self) -> dict[str, bytes]:
        """Raw Ed25519 identity public key of each active participant."""
        return {e.participant_id: e.identity_public_key for e in self.snapshot().active()}

    def active_ids(self) -> list[str]:
        """Ids of the active participants, sorted."""
        return sorted(e.participant_id for e in self.snapshot().active())

    def revoked_ids(self) -> list[str]:
        """Ids of the revoked participants, sorted."""
        return sorted(e.participant_id for e in self.snapshot().entries if not e.active)


def _signature(path: Path) -> tuple[int, ...]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no roster (create the federation with `accord provision`)"
        ) from None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev)


def _peer_fingerprint(peer: bytes | str) -> str:
    if isinstance(peer, str):
        try:
            return normalize_fingerprint(peer)
        except UsageError:
            raise NotAllowed("the peer presented no usable client certificate") from None
    try:
        return fingerprint(peer)
    except UsageError:
        raise NotAllowed("the peer presented no usable client certificate") from None
