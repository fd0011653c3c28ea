"""API tokens this process has seen verified: the only way an API token may choose a rate-limit key.

The defense runs before any route and must not read the database for every request, so it cannot
verify an API token itself. Keying by the unverified token let an attacker give every login attempt
a fresh bucket (`Authorization: Bearer wcp_<random>`). Instead, authentication reports each token
it verified, and until a token is reported here its requests are keyed by the client's address.
A verified token is keyed by its account (`u:<user id>`), so every credential of one account shares
the per-user budget.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict

# Long enough that a busy token is looked up here, not re-verified for its key; short enough that a
# revoked token stops choosing its account's bucket soon (authentication refuses it at once anyway).
_TTL_SECONDS = 300.0
_MAX_ENTRIES = 50_000


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class VerifiedCredentials:
    def __init__(self, ttl: float = _TTL_SECONDS, max_entries: int = _MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, token: str, user_id: uuid.UUID) -> None:
        """Called by authentication after the token verified (secret, expiry, revocation, address)."""
        with self._lock:
            self._entries[_fingerprint(token)] = (str(user_id), time.monotonic() + self.ttl)
            self._entries.move_to_end(_fingerprint(token))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def account_of(self, token: str) -> str | None:
        key = _fingerprint(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] < time.monotonic():
                del self._entries[key]
                return None
            return entry[0]
