"""Accounts for people who sign in through a directory (LDAP) or an OpenID provider.

A provider hands over an `ExternalProfile`; `Accounts.resolve` turns it into the one WCP360 account
linked to the provider's stable subject (`issuer` + `subject`). Never by an email or a username:
whoever controls a provider account could otherwise claim `admin@...` and become root's account.
Without a link, an account is created only when the provider's `accounts.create` says so, and never
over a name an existing account already holds. Roles come from `accounts.roles` at creation and,
when `accounts.groups` is set, from the person's groups at every sign-in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.config.security import AccountMapping
from wcp360.errors import InvalidInput, Unauthorized
from wcp360.identity.passwords import NO_PASSWORD
from wcp360.identity.users import ADMIN_ROLE, another_active_admin, normalize_email, normalize_username
from wcp360.store.models import ExternalIdentity, User, UserRole
from wcp360.store.types import utcnow

NOT_LINKED = "no WCP360 account is linked to this identity; ask an administrator to link it"


@dataclass(frozen=True)
class ExternalProfile:
    """Who a provider says signed in: the stable subject and what the account is built from."""

    provider: str
    issuer: str
    subject: str
    username: str | None
    email: str | None
    groups: tuple[str, ...] = ()
    # The provider asserted a second factor and the config trusts its word.
    mfa: bool = False
    external_name: str | None = None


def roles_from_groups(mapping: AccountMapping, groups: tuple[str, ...]) -> list[str]:
    """The roles `accounts.groups` gives these groups (case-insensitive names)."""
    held = {g.strip().lower() for g in groups}
    return sorted({role for group, roles in mapping.groups.items() if group.strip().lower() in held for role in roles})


class Accounts:
    """Linking external identities to accounts, inside the sign-in's transaction."""

    def __init__(self, known_roles: frozenset[str]) -> None:
        self.known_roles = known_roles

    def resolve(self, s: OrmSession, profile: ExternalProfile, mapping: AccountMapping) -> User:
        link = s.scalar(
            select(ExternalIdentity).where(
                ExternalIdentity.issuer == profile.issuer, ExternalIdentity.subject == profile.subject
            )
        )
        if link is not None:
            user = s.get(User, link.user_id)
            assert user is not None
        elif mapping.create:
            user = self._create(s, profile, mapping)
            link = ExternalIdentity(
                user_id=user.id, provider=profile.provider, issuer=profile.issuer, subject=profile.subject
            )
            s.add(link)
        else:
            raise Unauthorized(NOT_LINKED)
        link.last_login_at = link.last_checked_at = utcnow()
        link.external_name = profile.external_name or link.external_name
        if mapping.groups:
            self._sync_roles(s, user, profile, mapping)
        return user

    def _create(self, s: OrmSession, profile: ExternalProfile, mapping: AccountMapping) -> User:
        try:
            name = normalize_username(profile.username or "")
        except InvalidInput:
            raise Unauthorized(f"{profile.provider} gave no usable username for a new account") from None
        email = _email_for(profile)
        if s.scalar(select(User.id).where((User.username == name) | (User.email == email))):
            # Never take over (or link to) an account by its name or address.
            raise Unauthorized(NOT_LINKED)
        roles = self._known(mapping.roles)
        if mapping.groups:
            roles = sorted(set(roles) | set(self._known(roles_from_groups(mapping, profile.groups))))
        if ADMIN_ROLE in roles and not mapping.allow_admin:  # the config validator refuses this too
            roles.remove(ADMIN_ROLE)
        user = User(username=name, email=email, password_hash=NO_PASSWORD, roles=[UserRole(role=r) for r in roles])
        s.add(user)
        s.flush()
        audit.record(
            "user_create",
            actor_id=f"provider:{profile.provider}",
            resource_type="user",
            resource_id=str(user.id),
            details={"username": name, "roles": roles, "provider": profile.provider, "just_in_time": True},
        )
        return user

    def _sync_roles(self, s: OrmSession, user: User, profile: ExternalProfile, mapping: AccountMapping) -> None:
        """Roles follow the groups: those `accounts.roles` names stay, the rest is what the
        person's groups give now (a group left is a role lost at the next sign-in)."""
        wanted = set(self._known(mapping.roles)) | set(self._known(roles_from_groups(mapping, profile.groups)))
        if not mapping.allow_admin and ADMIN_ROLE in user.role_names:
            wanted.add(ADMIN_ROLE)  # granted here, not by the directory: not the directory's to take
        if ADMIN_ROLE in user.role_names and ADMIN_ROLE not in wanted and not another_active_admin(s, user):
            wanted.add(ADMIN_ROLE)  # the last active admin keeps the role, as a local change would
        before = set(user.role_names)
        if wanted == before:
            return
        user.roles = [r for r in user.roles if r.role in wanted] + [UserRole(role=r) for r in wanted - before]
        audit.record(
            "role_change",
            actor_id=f"provider:{profile.provider}",
            resource_type="user",
            resource_id=str(user.id),
            details={
                "username": user.username,
                "added": sorted(wanted - before),
                "removed": sorted(before - wanted),
                "roles": sorted(wanted),
                "provider": profile.provider,
            },
        )

    def _known(self, roles: list[str]) -> list[str]:
        return sorted(r for r in roles if r in self.known_roles)


def _email_for(profile: ExternalProfile) -> str:
    if profile.email:
        try:
            return normalize_email(profile.email)
        except InvalidInput:
            pass
    # Accounts need a unique address; a provider without one gets a placeholder no mail reaches.
    digest = hashlib.sha256(f"{profile.issuer}\0{profile.subject}".encode()).hexdigest()[:16]
    return f"{digest}@{profile.provider}.invalid"
