"""Opaque random tokens (refresh tokens, API token secrets, recovery codes) and their stored form.

They carry 256 bits of entropy, so a plain SHA-256 digest is a safe stored form (no slow hash
needed) and lets the database find a token by an indexed equality lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def digest_matches(token: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(digest(token), stored)
