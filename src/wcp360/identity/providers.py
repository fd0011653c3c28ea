"""Identity providers (seed 003 `auth.providers`): which sign-in methods this installation offers.

A provider turns presented credentials into a local account. `local` (argon2id passwords in our
database) is built in. `ldap` (bind as the user, map to a local account) and `oauth2` (redirect
flow) plug in here by implementing `PasswordProvider` or a redirect counterpart; until they exist,
an enabled entry for them is reported by `wcp360 config validate` and not offered. A disabled
provider is simply not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from wcp360.config.security import AuthConfig
from wcp360.identity.passwords import PasswordHasher
from wcp360.store.models import User

IMPLEMENTED = frozenset({"local"})


@dataclass(frozen=True)
class Verdict:
    user: User | None
    password_ok: bool


class PasswordProvider(Protocol):
    kind: str

    def check(self, s: OrmSession, username: str, password: str) -> Verdict:
        """Look the account up and check the password; must cost the same whether or not it exists."""
        ...


class LocalProvider:
    kind = "local"

    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher

    def check(self, s: OrmSession, username: str, password: str) -> Verdict:
        user = s.scalar(select(User).where(User.username == username))
        # Unknown users are checked against a dummy hash: one argon2 run on both paths.
        ok = self.hasher.verify(user.password_hash if user else None, password)
        return Verdict(user, ok)


def offered(settings: AuthConfig) -> list[str]:
    """The provider types a client may use: enabled in security.yml and implemented."""
    return [p.type for p in settings.providers if p.enabled and p.type in IMPLEMENTED]


def unavailable(settings: AuthConfig) -> list[str]:
    """Enabled in security.yml but not implemented in this version (reported, never offered)."""
    return [p.type for p in settings.providers if p.enabled and p.type not in IMPLEMENTED]
