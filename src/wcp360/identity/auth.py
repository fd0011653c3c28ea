"""Sign-in, token refresh with replay detection, sign-out, and turning a bearer token into a Principal."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, select, update
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit, metrics
from wcp360.authz import Policy, Principal
from wcp360.config.security import AuthConfig
from wcp360.errors import Forbidden, Unauthorized
from wcp360.identity.external import Accounts, ExternalProfile
from wcp360.identity.jwt_codec import JwtCodec
from wcp360.identity.opaque import digest, digest_matches, new_secret
from wcp360.identity.passwords import PasswordHasher, check_password
from wcp360.identity.providers import LDAP, LOCAL, LocalProvider, Providers
from wcp360.identity.revocation import end_credentials
from wcp360.identity.two_factor import TwoFactor
from wcp360.identity.views import TokenPairView
from wcp360.store.database import Database
from wcp360.store.models import ApiToken, RefreshToken, Session, User, UserRole
from wcp360.store.scope import NOBODY, RowScope
from wcp360.store.types import utcnow

API_TOKEN_PREFIX = "wcp_"  # noqa: S105 - a public prefix, not a secret
# Refreshing last_used_at on every API-token request would turn every read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
INVALID_CREDENTIALS = "invalid username or password"

# Built once: constructing a statement costs more than running it on this path.
_SESSION_LOOKUP = (
    select(
        User.username,
        User.status,
        User.totp_enabled_at,
        Session.revoked_at,
        Session.expires_at,
        Session.mfa,
        UserRole.role,
    )
    .join(Session, Session.user_id == User.id)
    .outerjoin(UserRole, UserRole.user_id == User.id)
    .where(Session.id == bindparam("sid"), User.id == bindparam("sub"))
)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105

    def view(self) -> TokenPairView:
        return TokenPairView(
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            token_type=self.token_type,
            expires_in=self.expires_in,
        )


class TotpRequired(Unauthorized):
    code = "totp-required"
    title = "Second factor required"


class AuthService:
    def __init__(
        self,
        db: Database,
        policy: Policy,
        hasher: PasswordHasher,
        codec: JwtCodec,
        two_factor: TwoFactor,
        settings: AuthConfig,
        name_key: bytes = b"",
        providers: Providers | None = None,
    ) -> None:
        self.db = db
        # Keys the names of accounts that do not exist before they reach the trail or a counter:
        # people type passwords into the username field (see login_name).
        self.name_key = name_key
        self.policy = policy
        self.hasher = hasher
        self.codec = codec
        self.two_factor = two_factor
        self.settings = settings
        self.local = LocalProvider(hasher)
        self.providers = providers or Providers(settings)
        self.accounts = Accounts(frozenset(policy.rbac.roles))
        # Told of every API token that verified (the defense keys rate limits by its account).
        self.on_api_token_verified: list[Callable[[str, uuid.UUID], None]] = []

    # -- sign-in -------------------------------------------------------------------------

    def login(self, username: str, password: str, totp: str | None = None, provider: str | None = None) -> TokenPair:
        """A password sign-in: local, or the directory's (`provider: ldap`)."""
        chosen = self.providers.password_provider(provider)
        if chosen is None:
            raise Unauthorized(
                "password sign-in is not offered here"
                if provider is None
                else f"no password provider named {provider!r} is enabled"
            )
        if chosen == LDAP:
            return self._login_directory(username, password, totp)
        name = username.strip().lower()
        with self.db.transaction(NOBODY) as s:
            # Unknown user and wrong password cost the same and return the same body.
            verdict = self.local.check(s, name, password)
            user, password_ok = verdict.user, verdict.password_ok
            if user is None or not password_ok or user.status != "active":
                reason = "unknown_user" if user is None else ("bad_password" if not password_ok else "disabled")
                self._fail(reason, name if user is not None else self._unknown(name), user)
                raise Unauthorized(INVALID_CREDENTIALS)
            assert user is not None
            if self.hasher.needs_rehash(user.password_hash):
                user.password_hash = self.hasher.hash(password)
            mfa = self._second_factor(s, user, name, totp, LOCAL)
            return self._signed_in(s, user, mfa, LOCAL)

    def _login_directory(self, username: str, password: str, totp: str | None) -> TokenPair:
        directory = self.providers.directory
        assert directory is not None
        name = username.strip().lower()
        try:
            profile = directory.authenticate(username, password)
        except Unauthorized:
            self._fail("bad_password", self.login_name(name), None, LDAP)
            raise Unauthorized(INVALID_CREDENTIALS) from None
        with self.db.transaction(NOBODY) as s:
            user = self._account_for(s, profile)
            mfa = self._second_factor(s, user, user.username, totp, LDAP)
            return self._signed_in(s, user, mfa, LDAP)

    def login_external(self, profile: ExternalProfile) -> TokenPair:
        """The end of an OpenID Connect sign-in: the provider vouched for `profile`. An account
        with TOTP opens a session that must still prove it (POST /auth/2fa/verify) unless the
        provider asserted a second factor and the config trusts it."""
        with self.db.transaction(NOBODY) as s:
            user = self._account_for(s, profile)
            return self._signed_in(s, user, profile.mfa, profile.provider)

    def verify_second_factor(self, actor: Principal, code: str) -> None:
        """Complete a session opened without the second factor (an OIDC sign-in) with a TOTP or
        recovery code; counts toward the sign-in throttles like a wrong password."""
        self.policy.require(actor, "self:2fa")
        if actor.session_id is None or actor.user_id is None:
            raise Forbidden("only a signed-in session can be completed with a second factor")
        with self.db.transaction(NOBODY) as s:
            user = s.get(User, actor.user_id)
            assert user is not None
            if not user.totp_enabled:
                raise Forbidden("this account has no second factor to verify; enrol one")
            second = self.two_factor.verify(s, user, code)
            if second != "ok":
                self._fail("reused_totp" if second == "reused" else "bad_totp", user.username, user)
                raise Unauthorized("invalid two-factor code")
            s.execute(update(Session).where(Session.id == actor.session_id).values(mfa=True))
            audit.record("2fa_verify", actor=actor, resource_type="session", resource_id=str(actor.session_id))

    def _account_for(self, s: OrmSession, profile: ExternalProfile) -> User:
        try:
            user = self.accounts.resolve(s, profile, self.providers.mapping(profile.provider))
        except Unauthorized as refused:
            self._fail("not_linked", f"{profile.provider}:{profile.subject}", None, profile.provider)
            raise refused from None
        if user.status != "active":
            self._fail("disabled", user.username, user, profile.provider)
            raise Unauthorized(INVALID_CREDENTIALS)
        return user

    def _second_factor(self, s: OrmSession, user: User, name: str, totp: str | None, provider: str) -> bool:
        if not user.totp_enabled:
            return False
        if not totp:
            # The answer confirms the password was right, so it counts toward the account's
            # throttle like a failure: otherwise it is a free password oracle.
            self._fail("totp_required", name, user, provider)
            raise TotpRequired("a two-factor code is required")
        second = self.two_factor.verify(s, user, totp)
        if second == "reused":
            self._fail("reused_totp", name, user, provider)
            raise Unauthorized("this two-factor code was already used; wait for the next one")
        if second != "ok":
            self._fail("bad_totp", name, user, provider)
            raise Unauthorized("invalid two-factor code")
        return True

    def _signed_in(self, s: OrmSession, user: User, mfa: bool, provider: str) -> TokenPair:
        user.last_login_at = utcnow()
        pair = self._open_session(s, user, mfa)
        audit.record(
            "login_success",
            actor_id=str(user.id),
            resource_type="user",
            resource_id=str(user.id),
            details={"username": user.username, "mfa": mfa, "provider": provider},
        )
        return pair

    def record_external_failure(self, provider: str | None, reason: str) -> None:
        """A refused OpenID Connect callback: a login_failure like any other (the IDS counts it)."""
        self._fail(reason, None, None, provider)

    def refresh(self, refresh_token: str) -> TokenPair:
        stored = digest(refresh_token)
        with self.db.transaction(NOBODY) as s:
            row = s.scalar(select(RefreshToken).where(RefreshToken.token_hash == stored))
            if row is None:
                self._fail("unknown_refresh_token", None, None)
                raise Unauthorized("invalid refresh token")
            session = s.get(Session, row.session_id)
            user = s.get(User, session.user_id) if session else None
            assert session is not None and user is not None
            now = utcnow()
            if session.revoked_at or session.expires_at <= now or row.expires_at <= now or user.status != "active":
                self._fail("refresh_rejected", user.username, user)
                raise Unauthorized("invalid refresh token")
            # Mark used with a guarded UPDATE: of two concurrent refreshes only one wins; the
            # other, like any second use of a token, is a replay. (Read used_at first: the ORM
            # synchronises `row` with the UPDATE.)
            unused = row.used_at is None
            claimed = s.execute(
                update(RefreshToken)
                .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
            )
            won = unused and cast("CursorResult[Any]", claimed).rowcount == 1
            if won:
                pair = self._issue(s, user, session)
                audit.record(
                    "token_refresh", actor_id=str(user.id), resource_type="session", resource_id=str(session.id)
                )
                return pair
            self._revoke_family(session, user)
        # The revocation above is committed; only then does the caller hear about it.
        raise Unauthorized("refresh token reuse detected; the session has been revoked")

    def record_throttled(self, username: str) -> None:
        """A refused attempt still counts as a failure (so the address-level rule can ban it)."""
        self._fail("throttled", self.login_name(username), None)

    def login_name(self, username: str) -> str:
        """The name sign-in counters and the trail use for `username`: the account's name when it
        exists, else `unknown:` and a keyed hash. A password typed into the username field must
        not be stored, yet repeated guesses for one unknown name still count together."""
        name = username.strip().lower()
        with self.db.transaction(NOBODY, readonly=True) as s:
            exists = s.scalar(select(User.id).where(User.username == name)) is not None
        return name if exists else self._unknown(name)

    def _unknown(self, name: str) -> str:
        return "unknown:" + hmac.new(self.name_key, name.encode(), hashlib.sha256).hexdigest()[:20]

    def notify_under_attack(self, username: str, alert: Callable[[str, str, dict[str, Any]], None]) -> None:
        """Tell the owner (through the alerts, de-duplicated per window) and record it."""
        name = username.strip().lower()
        with self.db.transaction(NOBODY, readonly=True) as s:
            user = s.scalar(select(User).where(User.username == name))
        if user is None:
            return
        alert(
            "account_under_attack",
            name,
            {
                "rule": "account_under_attack",
                "action": "notify",
                "condition": "failed sign-ins from many addresses",
                "event": {"username": name, "email": user.email},
            },
        )
        audit.record(
            "account_under_attack",
            actor_id="ids",
            resource_type="user",
            resource_id=str(user.id),
            outcome="alert",
            details={"username": name},
        )

    def logout(self, actor: Principal) -> None:
        if actor.session_id is None:
            raise Forbidden("only a signed-in session can sign out")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            s.execute(
                update(Session)
                .where(Session.id == actor.session_id, Session.revoked_at.is_(None))
                .values(revoked_at=utcnow(), revoked_reason="logout")
            )
            audit.record("logout", actor=actor, resource_type="session", resource_id=str(actor.session_id))

    def change_password(self, actor: Principal, current: str, new: str) -> None:
        self.policy.require(actor, "self:update")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = s.get(User, actor.user_id) if actor.user_id else None
            if user is None or not self.hasher.verify(user.password_hash, current):
                self._fail("bad_password", actor.username, user)
                raise Unauthorized("current password is not valid")
            check_password(self.settings.password_policy(), new, user.username, user.email)
            user.password_hash = self.hasher.hash(new)
            user.password_changed_at = utcnow()
            # Every other session and every API token ends; this session stays.
            ended = end_credentials(s, user.id, "password_change", keep=actor.session_id)
            audit.record("password_change", actor=actor, resource_type="user", resource_id=str(user.id), details=ended)

    # -- every request -------------------------------------------------------------------

    def authenticates_inline(self, bearer: str) -> bool:
        """Whether authenticating `bearer` is cheap enough for the event loop: a session token
        (a cached signature check) looked up with one read of a local SQLite file, ~0.06 ms,
        where a threadpool hop costs several times that. PostgreSQL (a network round trip) and
        API tokens (a write transaction that may wait for SQLite's write lock) take the hop."""
        return not self.db.is_postgres and not bearer.startswith(API_TOKEN_PREFIX)

    def authenticate(self, bearer: str, client_ip: str | None) -> Principal:
        if bearer.startswith(API_TOKEN_PREFIX):
            return self._authenticate_api_token(bearer, client_ip)
        claims = self.codec.verify(bearer)
        # The hot path of every request: one query for session, account and roles (columns, not
        # ORM objects), on every request, so that sign-out and disabling an account act at once.
        rows = self.db.read_one_statement(_SESSION_LOOKUP, {"sid": claims.session_id, "sub": claims.subject})
        if not rows:
            raise Unauthorized("invalid or expired token")
        first = rows[0]
        if first.revoked_at is not None or first.expires_at <= utcnow() or first.status != "active":
            raise Unauthorized("invalid or expired token")
        roles = tuple(sorted(row.role for row in rows if row.role is not None))
        return Principal(
            user_id=claims.subject,
            username=first.username,
            roles=roles,
            via="session",
            session_id=claims.session_id,
            # The second factor must have been proven in this session: enrolling it in another
            # session does not complete this one (confirm() ends the others anyway).
            mfa_pending=not first.mfa and (self.two_factor.required_for(roles) or first.totp_enabled_at is not None),
        )

    def _authenticate_api_token(self, bearer: str, client_ip: str | None) -> Principal:
        token_id, _, secret = bearer[len(API_TOKEN_PREFIX) :].partition("_")
        # A read: it takes no write lock (on SQLite every API-token request used to, so a flood of
        # refused requests queued other users' run inserts behind it). last_used_at is written
        # apart, at most once a minute per token.
        with self.db.transaction(NOBODY, readonly=True) as s:
            token = s.get(ApiToken, token_id) if token_id and secret else None
            now = utcnow()
            if token is None or token.revoked_at is not None or token.expires_at <= now:
                self._fail("bad_api_token", None, None)
                raise Unauthorized("invalid or expired token")
            current = digest_matches(secret, token.secret_hash)
            overlap = (
                token.previous_valid_until is not None
                and token.previous_valid_until > now
                and digest_matches(secret, token.previous_secret_hash)
            )
            if not (current or overlap):
                self._fail("bad_api_token", None, None)
                raise Unauthorized("invalid or expired token")
            if token.allowed_cidrs and not _ip_allowed(client_ip, token.allowed_cidrs):
                self._fail("api_token_ip", None, None)
                raise Unauthorized("this token may not be used from this address")
            user = s.get(User, token.user_id)
            if user is None or user.status != "active":
                raise Unauthorized("invalid or expired token")
            stale = token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION
            user_id = user.id
            principal = Principal(
                user_id=user.id,
                username=user.username,
                roles=tuple(user.role_names),
                via="api_token",
                scopes=tuple(token.scopes),
                token_id=token.id,
            )
        if stale:
            with self.db.transaction(NOBODY) as s:
                s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        for listener in self.on_api_token_verified:
            listener(bearer, user_id)
        return principal

    # -- helpers -------------------------------------------------------------------------

    def _open_session(self, s: OrmSession, user: User, mfa: bool) -> TokenPair:
        context = audit.current_request()
        session = Session(
            user_id=user.id,
            expires_at=utcnow() + self.settings.jwt.refresh_expiry,
            ip_address=context.ip_address,
            user_agent=(context.user_agent or "")[:512] or None,
            mfa=mfa,
        )
        s.add(session)
        s.flush()
        return self._issue(s, user, session)

    def _issue(self, s: OrmSession, user: User, session: Session) -> TokenPair:
        refresh = new_secret()
        s.add(RefreshToken(session_id=session.id, token_hash=digest(refresh), expires_at=session.expires_at))
        access = self.codec.issue(user.id, session.id, user.role_names)
        return TokenPair(access, refresh, self.codec.lifetime_seconds)

    @staticmethod
    def _revoke_family(session: Session, user: User) -> None:
        """A refresh token was presented twice: someone holds a stolen copy. End the whole family."""
        session.revoked_at = utcnow()
        session.revoked_reason = "refresh_token_replay"
        audit.record(
            "token_refresh",
            actor_id=str(user.id),
            outcome="replay_detected",
            resource_type="session",
            resource_id=str(session.id),
            details={"action_taken": "session_revoked"},
        )
        metrics.AUTHENTICATION_FAILURES.labels(reason="refresh_replay").inc()

    @staticmethod
    def _fail(reason: str, username: str | None, user: User | None, provider: str | None = LOCAL) -> None:
        metrics.AUTHENTICATION_FAILURES.labels(reason=reason).inc()
        audit.record(
            "login_failure",
            actor_id=str(user.id) if user else None,
            outcome="failure",
            resource_type="user",
            details={"username": username, "reason": reason, "provider": provider},
        )


def _ip_allowed(client_ip: str | None, cidrs: list[Any]) -> bool:
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(c, strict=False) for c in cidrs)
