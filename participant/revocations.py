"""The member's copy of the CA-signed revocation list (`crypto/revocation.py`).

Every task relays the operator's newest signed list. The member verifies it against
its kit's pinned CA, keeps the highest-numbered one in `state_dir/revocations.signed`
(so a restart cannot be rolled back to an older list), and refuses a key ceremony or
a round that includes a revoked member, naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from accord.crypto import revocation
from accord.crypto.revocation import RevocationList

STATE_FILE = "revocations.signed"


class RevocationKeeper:
    """Holds the newest verified revocation list a member has seen.

    Args:
        state_dir: where the newest list is kept across restarts.
        ca_pem: the kit's pinned CA certificate.
        federation_id: the federation the list must name.
    """

    def __init__(self, state_dir: Path, ca_pem: bytes, federation_id: str) -> None:
        self._path = Path(state_dir) / STATE_FILE
        self._ca_pem = ca_pem
        self._federation_id = federation_id
        self.current: RevocationList | None = None
        if self._path.exists():
            self.current = revocation.verify_revocations(
                self._path.read_bytes(), ca_pem, federation_id
            )

    def offer(self, signed: bytes) -> None:
        """Take a relayed list (empty: none relayed); keep it if it is newer.

        Raises:
            BadSignature, Malformed: the CA did not sign it, or it does not decode.
            Replayed: it is older than a list already seen.
        """
        if not signed:
            return
        offered = revocation.verify_revocations(signed, self._ca_pem, self._federation_id)
        kept = revocation.newer(self.current, offered)
        if self.current is None or kept.number > self.current.number:
            partial = self._path.with_suffix(".partial")
            partial.write_bytes(signed)
            os.replace(partial, self._path)
        self.current = kept

    def check(self, members: tuple[str, ...], *, what: str) -> None:
        """Raise `NotAllowed` naming any revoked member of `members`."""
        revocation.check_not_revoked(self.current, members, what=what)
