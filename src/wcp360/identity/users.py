"""Account management: the service both the API and `wcp360 admin` call.

Each method takes the acting principal, asks the policy function, changes the database in one
transaction and records the audit event. Nothing is written when a check fails.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.authz import Policy, Principal, Resource
from wcp360.authz.owned import Owned
from wcp360.authz.resources import USERS
from wcp360.config.security import PasswordPolicy
from wcp360.errors import Conflict, InvalidInput, NotFound
from wcp360.identity.passwords import PasswordHasher, check_password
from wcp360.identity.revocation import end_credentials, end_sessions
from wcp360.identity.views import UserView, user_view
from wcp360.store.database import Database
from wcp360.store.models import ExternalIdentity, RecoveryCode, Tenant, User, UserRole
from wcp360.store.scope import NOBODY, SYSTEM, RowScope
from wcp360.store.types import utcnow

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$|^[^@\s]{1,64}@localhost$")
ADMIN_ROLE = "admin"
STATUSES = ("active", "disabled")


def normalize_username(value: str) -> str:
    name = value.strip().lower()
    if not USERNAME.match(name):
        raise InvalidInput("username must be 2-64 characters: a letter, then letters, digits, '.', '_' or '-'")
    return name


def normalize_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not EMAIL.match(email) or not email.isprintable():
        raise InvalidInput(f"invalid email address {value!r}")
    return email


def another_active_admin(s: OrmSession, user: User) -> bool:
    """Whether an active admin other than `user` exists (the last one never loses the role)."""
    found = s.scalar(
        select(User.id)
        .join(UserRole)
        .where(UserRole.role == ADMIN_ROLE, User.status == "active", User.id != user.id)
        .limit(1)
    )
    return found is not None


class UserService:
    def __init__(self, db: Database, policy: Policy, hasher: PasswordHasher, password_policy: PasswordPolicy) -> None:
        self.db = db
        self.policy = policy
        self.hasher = hasher
        self.password_policy = password_policy
        self.owned = Owned(db, policy, USERS)

    # -- reading -------------------------------------------------------------------------

    def list_users(
        self, actor: Principal, limit: int = 50, offset: int = 0, status: str | None = None, role: str | None = None
    ) -> tuple[list[UserView], int]:
        filters = []
        if status is not None:
            filters.append(User.status == status)
        if role is not None:
            filters.append(User.id.in_(select(UserRole.user_id).where(UserRole.role == role)))
        return self.owned.page(actor, user_view, *filters, order_by=User.username, limit=limit, offset=offset)

    def get(self, actor: Principal, user_id: uuid.UUID) -> UserView:
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:read", self._resource(user, include_grants=False))
            return user_view(user)

    def find_id(self, username: str) -> uuid.UUID:
        with self.db.transaction(NOBODY) as s:
            user_id = s.scalar(select(User.id).where(User.username == username.strip().lower()))
        if user_id is None:
            raise NotFound(f"no user named {username!r}")
        return user_id

    # -- changing ------------------------------------------------------------------------

    def create(self, actor: Principal, username: str, email: str, password: str, roles: Iterable[str]) -> UserView:
        name, mail, role_list = normalize_username(username), normalize_email(email), self._valid_roles(roles)
        self.policy.require(
            actor,
            "users:create",
            Resource("users", grants=self.policy.grants_of_roles(role_list), label=",".join(role_list)),
        )
        check_password(self.password_policy, password, name, mail)
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            if s.scalar(select(User.id).where((User.username == name) | (User.email == mail))):
                raise Conflict("a user with that username or email already exists")
            user = User(
                username=name,
                email=mail,
                password_hash=self.hasher.hash(password),
                created_by=actor.user_id,
                roles=[UserRole(role=r) for r in role_list],
            )
            s.add(user)
            s.flush()
            audit.record(
                "user_create",
                actor=actor,
                resource_type="user",
                resource_id=str(user.id),
                details={"username": name, "roles": role_list},
            )
            return user_view(user)

    def update(self, actor: Principal, user_id: uuid.UUID, email: str | None = None) -> UserView:
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:update", self._resource(user))
            changed: dict[str, Any] = {}
            if email is not None:
                mail = normalize_email(email)
                if mail != user.email:
                    if s.scalar(select(User.id).where(User.email == mail, User.id != user.id)):
                        raise Conflict("that email address is in use")
                    user.email = mail
                    changed["email"] = True
            audit.record("user_update", actor=actor, resource_type="user", resource_id=str(user.id), details=changed)
            return user_view(user)

    def change_roles(
        self, actor: Principal, user_id: uuid.UUID, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> UserView:
        added, removed = self._valid_roles(add, allow_empty=True), self._valid_roles(remove, allow_empty=True)
        if set(added) & set(removed):
            raise InvalidInput("a role cannot be added and removed at once")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            # The actor must already hold everything the target holds and everything it is given.
            resource = self._resource(user, extra_roles=added)
            self.policy.require(actor, "users:update", resource)
            before = user.role_names
            after = sorted((set(before) | set(added)) - set(removed))
            if ADMIN_ROLE in before and ADMIN_ROLE not in after:
                self._keep_an_admin(s, user)
            user.roles = [r for r in user.roles if r.role in after] + [
                UserRole(role=r) for r in after if r not in before
            ]
            audit.record(
                "role_change",
                actor=actor,
                resource_type="user",
                resource_id=str(user.id),
                details={
                    "username": user.username,
                    "added": sorted(set(added) - set(before)),
                    "removed": sorted(set(removed) & set(before)),
                    "roles": after,
                },
            )
            s.flush()
            return user_view(user)

    def set_status(self, actor: Principal, user_id: uuid.UUID, status: str) -> UserView:
        if status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:update", self._resource(user))
            if status == "active" and user.tenant_id is not None:
                self._not_held_by_a_suspended_tenant(user)
            if status == "disabled":
                if actor.user_id == user.id:
                    raise Conflict("you cannot disable your own account")
                if ADMIN_ROLE in user.role_names:
                    self._keep_an_admin(s, user)
                end_sessions(s, user.id, "account_disabled")
            user.status = status
            action = "user_disable" if status == "disabled" else "user_enable"
            audit.record(
                action, actor=actor, resource_type="user", resource_id=str(user.id), details={"username": user.username}
            )
            return user_view(user)

    def _not_held_by_a_suspended_tenant(self, user: User) -> None:
        """Enabling an account its tenant's suspension holds would undo the suspension for it."""
        with self.db.transaction(SYSTEM, readonly=True) as s:  # the tenant may be another owner's
            tenant = s.execute(select(Tenant.name, Tenant.status).where(Tenant.id == user.tenant_id)).first()
        if tenant is not None and tenant.status == "suspended":
            raise Conflict(f"{user.username} belongs to tenant {tenant.name}, which is suspended: resume the tenant")

    def reset_password(self, actor: Principal, user_id: uuid.UUID, password: str) -> UserView:
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:update", self._resource(user))
            check_password(self.password_policy, password, user.username, user.email)
            user.password_hash = self.hasher.hash(password)
            user.password_changed_at = utcnow()
            ended = end_credentials(s, user.id, "password_reset")
            audit.record(
                "password_reset",
                actor=actor,
                resource_type="user",
                resource_id=str(user.id),
                details={"username": user.username, **ended},
            )
            return user_view(user)

    def reset_two_factor(self, actor: Principal, user_id: uuid.UUID) -> UserView:
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:update", self._resource(user))
            user.totp_secret = user.totp_pending_secret = None
            user.totp_enabled_at = None
            user.totp_last_step = None
            s.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
            ended = end_credentials(s, user.id, "2fa_reset")
            audit.record(
                "2fa_reset",
                actor=actor,
                resource_type="user",
                resource_id=str(user.id),
                details={"username": user.username, **ended},
            )
            return user_view(user)

    def link_identity(self, actor: Principal, user_id: uuid.UUID, provider: str, issuer: str, subject: str) -> UserView:
        """Link an account to a subject at a provider (how an account is linked when the provider's
        `accounts.create` is off): only an administrator's act ever links by a known subject."""
        subject = subject.strip()
        if not subject or len(subject) > 255 or not subject.isprintable():
            raise InvalidInput("the subject must be 1-255 printable characters")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:update", self._resource(user))
            taken = s.scalar(
                select(ExternalIdentity.id).where(
                    ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject
                )
            )
            if taken is not None:
                raise Conflict("that identity is already linked to an account")
            user.identities.append(ExternalIdentity(provider=provider, issuer=issuer, subject=subject))
            s.flush()
            audit.record(
                "identity_link",
                actor=actor,
                resource_type="user",
                resource_id=str(user.id),
                details={"username": user.username, "provider": provider, "subject": subject},
            )
            return user_view(user)

    def unlink_identity(self, actor: Principal, user_id: uuid.UUID, provider: str) -> UserView:
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:update", self._resource(user))
            links = [i for i in user.identities if i.provider == provider]
            if not links:
                raise NotFound(f"{user.username} has no identity at {provider}")
            for link in links:
                user.identities.remove(link)
            # Sessions opened through that provider end with the link.
            ended = end_credentials(s, user.id, "identity_unlinked")
            audit.record(
                "identity_unlink",
                actor=actor,
                resource_type="user",
                resource_id=str(user.id),
                details={"username": user.username, "provider": provider, **ended},
            )
            s.flush()
            return user_view(user)

    def delete(self, actor: Principal, user_id: uuid.UUID) -> None:
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._load(s, user_id)
            self.policy.require(actor, "users:delete", self._resource(user))
            if actor.user_id == user.id:
                raise Conflict("you cannot delete your own account")
            if ADMIN_ROLE in user.role_names:
                self._keep_an_admin(s, user)
            s.delete(user)
            audit.record(
                "user_delete",
                actor=actor,
                resource_type="user",
                resource_id=str(user_id),
                details={"username": user.username},
            )

    # -- helpers -------------------------------------------------------------------------

    def _load(self, s: OrmSession, user_id: uuid.UUID) -> User:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    def _resource(self, user: User, extra_roles: Iterable[str] = (), include_grants: bool = True) -> Resource:
        roles = [*user.role_names, *extra_roles]
        return Resource(
            "users",
            id=str(user.id),
            owner_id=user.created_by,
            grants=self.policy.role_permissions(roles) if include_grants else frozenset(),
            label=ADMIN_ROLE if ADMIN_ROLE in roles else "user",
        )

    def _valid_roles(self, roles: Iterable[str], allow_empty: bool = False) -> list[str]:
        names = sorted({r.strip() for r in roles if r.strip()})
        unknown = [r for r in names if r not in self.policy.rbac.roles]
        if unknown:
            raise InvalidInput(f"unknown role(s): {', '.join(unknown)}")
        if not names and not allow_empty:
            raise InvalidInput("at least one role is required")
        return names

    def _keep_an_admin(self, s: OrmSession, leaving: User) -> None:
        if not another_active_admin(s, leaving):
            raise Conflict("this is the last active admin; add another admin first")
