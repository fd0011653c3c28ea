"""Identity providers (seed 003 `auth.providers`): which sign-in methods this installation offers.

Three kinds: `local` (argon2id passwords in our database), `ldap` (a directory: a password checked
by binding as the person, `identity.ldap_directory`) and OpenID Connect providers (a redirect to
the provider and back: `identity.oidc_provider`, `identity.oidc_flows`), each named — the seed's
`oauth2` entry keyed by name (`google:`) or the generic `oidc` entry. A disabled provider is not
offered, and sign-in through it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from wcp360.config.security import AccountMapping, AuthConfig
from wcp360.errors import NotFound
from wcp360.identity.ldap_directory import Directory
from wcp360.identity.oidc_provider import OidcProvider
from wcp360.identity.passwords import PasswordHasher
from wcp360.store.models import User

LDAP = "ldap"
LOCAL = "local"


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
    kind = LOCAL

    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher

    def check(self, s: OrmSession, username: str, password: str) -> Verdict:
        user = s.scalar(select(User).where(User.username == username))
        # Unknown users are checked against a dummy hash: one argon2 run on both paths.
        ok = self.hasher.verify(user.password_hash if user else None, password)
        return Verdict(user, ok)


@dataclass(frozen=True)
class Offered:
    name: str
    type: str
    # "password": POST /auth/login with `provider`; "redirect": GET login_url in a browser.
    flow: Literal["password", "redirect"]


class Providers:
    """The enabled providers, built once from security.yml."""

    def __init__(self, settings: AuthConfig) -> None:
        self.settings = settings
        ldap = settings.ldap()
        self.directory = Directory(LDAP, ldap) if ldap is not None else None
        self.oidc = {name: OidcProvider(name, client) for name, client in settings.oidc_clients()}

    def offered(self) -> list[Offered]:
        found = [Offered(LOCAL, LOCAL, "password")] if self.settings.local_provider() else []
        if self.directory is not None:
            found.append(Offered(LDAP, LDAP, "password"))
        found.extend(Offered(name, "oidc", "redirect") for name in self.oidc)
        return found

    def password_provider(self, requested: str | None) -> str | None:
        """Which password provider a sign-in without `provider` means: local when offered, else
        the directory. None when the one asked for is not offered."""
        names = [o.name for o in self.offered() if o.flow == "password"]
        if requested is None:
            return names[0] if names else None
        return requested if requested in names else None

    def mapping(self, name: str) -> AccountMapping:
        if name == LDAP and self.directory is not None:
            return self.directory.settings.accounts
        return self.oidc[name].settings.accounts

    def issuer_of(self, name: str) -> str:
        """The issuer an identity at provider `name` is linked under."""
        if name == LDAP and self.directory is not None:
            return self.directory.issuer
        if name in self.oidc:
            return self.oidc[name].issuer
        raise NotFound(f"no enabled identity provider named {name!r}")

    def callback_paths(self) -> dict[str, frozenset[str]]:
        """Each redirect URL's path and the providers that come back to it."""
        paths: dict[str, set[str]] = {}
        for name, provider in self.oidc.items():
            paths.setdefault(urlsplit(provider.settings.redirect_url).path or "/", set()).add(name)
        return {path: frozenset(names) for path, names in paths.items()}


def unknown_roles(settings: AuthConfig, roles: frozenset[str]) -> list[str]:
    """Roles a provider's `accounts` names that rbac.yml does not define (`config validate`)."""
    named: list[tuple[str, AccountMapping]] = [(n, c.accounts) for n, c in settings.oidc_clients(enabled_only=False)]
    ldap = settings.ldap()
    if ldap is not None:
        named.append((LDAP, ldap.accounts))
    problems: list[str] = []
    for name, mapping in named:
        wanted = set(mapping.roles) | {r for group_roles in mapping.groups.values() for r in group_roles}
        problems.extend(f"provider {name}: role {r!r} is not defined in rbac.yml" for r in sorted(wanted - roles))
    return problems
