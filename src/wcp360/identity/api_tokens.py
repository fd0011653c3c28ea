"""API tokens: `wcp_<id>_<secret>`, shown once, stored hashed, scoped, expiring, rotatable."""

from __future__ import annotations

import ipaddress
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.authz import Policy, Principal, covers
from wcp360.config.rbac import is_permission
from wcp360.config.security import ApiTokenConfig
from wcp360.errors import Forbidden, InvalidInput, NotFound
from wcp360.identity.auth import API_TOKEN_PREFIX
from wcp360.identity.opaque import digest, new_secret
from wcp360.identity.two_factor import TwoFactor
from wcp360.identity.views import ApiTokenView, NewApiTokenView, api_token_view
from wcp360.store.database import Database
from wcp360.store.models import ApiToken, User
from wcp360.store.scope import RowScope
from wcp360.store.types import utcnow


class ApiTokenService:
    def __init__(self, db: Database, policy: Policy, two_factor: TwoFactor, settings: ApiTokenConfig) -> None:
        self.db = db
        self.policy = policy
        self.two_factor = two_factor
        self.settings = settings

    def create(
        self,
        actor: Principal,
        name: str,
        scopes: list[str],
        expires_in_days: int | None = None,
        allowed_cidrs: list[str] | None = None,
    ) -> NewApiTokenView:
        self.policy.require(actor, "self:api_tokens")
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidInput("name must be 1-100 characters")
        scopes = sorted(set(scopes))
        if not scopes:
            raise InvalidInput("a token needs at least one scope")
        held = self.policy.effective(actor)
        for scope in scopes:
            if not is_permission(scope):
                raise InvalidInput(f"invalid scope {scope!r}")
        wider = [s for s in scopes if not covers(held, s)]
        if wider:
            # Tokens can only narrow what their owner holds (seed 001: scoped, signed API tokens).
            self.policy.require(actor, wider[0])
            raise Forbidden(f"scope exceeds your permissions: {', '.join(wider)}")
        lifetime = timedelta(days=expires_in_days) if expires_in_days is not None else self.settings.default_expiry
        if lifetime <= timedelta(0) or lifetime > self.settings.max_expiry:
            raise InvalidInput(f"expiry must be between 1 day and {self.settings.max_expiry.days} days")
        cidrs = [str(_network(c)) for c in (allowed_cidrs or [])]
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._owner(s, actor)
            if self.two_factor.settings.required_for_api_tokens and not user.totp_enabled:
                raise Forbidden("turn on two-factor authentication before creating API tokens")
            secret = new_secret()
            token = ApiToken(
                id=secrets.token_hex(8),
                user_id=user.id,
                name=name,
                scopes=scopes,
                allowed_cidrs=cidrs,
                secret_hash=digest(secret),
                expires_at=utcnow() + lifetime,
            )
            s.add(token)
            s.flush()
            audit.record(
                "api_token_create",
                actor=actor,
                resource_type="api_token",
                resource_id=token.id,
                details={"name": name, "scopes": scopes, "allowed_cidrs": cidrs},
            )
            return NewApiTokenView(**api_token_view(token).model_dump(), token=f"{API_TOKEN_PREFIX}{token.id}_{secret}")

    def list_tokens(self, actor: Principal) -> list[ApiTokenView]:
        self.policy.require(actor, "self:api_tokens")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            rows = s.scalars(select(ApiToken).where(ApiToken.user_id == actor.user_id).order_by(ApiToken.created_at))
            return [api_token_view(t) for t in rows]

    def rotate(self, actor: Principal, token_id: str) -> NewApiTokenView:
        """New secret now; the old one keeps working for `rotation_overlap` so clients can roll."""
        self.policy.require(actor, "self:api_tokens")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            token = self._own_token(s, actor, token_id)
            secret = new_secret()
            token.previous_secret_hash = token.secret_hash
            token.previous_valid_until = utcnow() + self.settings.rotation_overlap
            token.secret_hash = digest(secret)
            audit.record("api_token_rotate", actor=actor, resource_type="api_token", resource_id=token.id)
            return NewApiTokenView(**api_token_view(token).model_dump(), token=f"{API_TOKEN_PREFIX}{token.id}_{secret}")

    def revoke(self, actor: Principal, token_id: str) -> None:
        self.policy.require(actor, "self:api_tokens")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            token = self._own_token(s, actor, token_id)
            token.revoked_at = utcnow()
            token.previous_valid_until = None
            audit.record("api_token_revoke", actor=actor, resource_type="api_token", resource_id=token.id)

    @staticmethod
    def _owner(s: OrmSession, actor: Principal) -> User:
        user = s.get(User, actor.user_id) if actor.user_id else None
        if user is None:
            raise Forbidden("API tokens belong to user accounts")
        return user

    @staticmethod
    def _own_token(s: OrmSession, actor: Principal, token_id: str) -> ApiToken:
        token = s.get(ApiToken, token_id)
        if token is None or token.user_id != actor.user_id or token.revoked_at is not None:
            raise NotFound("no such API token")
        return token


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidInput(f"invalid CIDR {value!r}") from None
