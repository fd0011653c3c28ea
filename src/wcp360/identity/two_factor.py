"""TOTP second factor (RFC 6238 via pyotp) with single-use recovery codes."""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from typing import Any, Literal

import pyotp
from sqlalchemy import select, update
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.authz import Policy, Principal
from wcp360.config.security import TwoFactorConfig
from wcp360.errors import Conflict, InvalidInput, Unauthorized
from wcp360.identity.opaque import digest
from wcp360.identity.passwords import PasswordHasher
from wcp360.identity.revocation import end_sessions
from wcp360.identity.views import TotpEnrollmentView
from wcp360.keys import HostKeys
from wcp360.store.database import Database
from wcp360.store.models import ApiToken, RecoveryCode, Session, User
from wcp360.store.scope import RowScope
from wcp360.store.types import utcnow

STEP_SECONDS = 30
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def _recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


class TwoFactor:
    def __init__(
        self, db: Database, policy: Policy, keys: HostKeys, hasher: PasswordHasher, settings: TwoFactorConfig
    ) -> None:
        self.db = db
        self.policy = policy
        self.keys = keys
        self.hasher = hasher
        self.settings = settings

    def required_for(self, roles: list[str] | tuple[str, ...], holds_api_tokens: bool = False) -> bool:
        if any(r in self.settings.required_roles for r in roles):
            return True
        return holds_api_tokens and self.settings.required_for_api_tokens

    def enroll(self, actor: Principal) -> TotpEnrollmentView:
        self.policy.require(actor, "self:2fa")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._user(s, actor)
            if user.totp_enabled:
                raise Conflict("two-factor authentication is already on; disable it first")
            secret = pyotp.random_base32()
            user.totp_pending_secret = self.keys.encrypt(secret)
            audit.record("2fa_enroll", actor=actor, resource_type="user", resource_id=str(user.id))
            uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=self.settings.issuer)
            return TotpEnrollmentView(secret=secret, otpauth_uri=uri)

    def confirm(self, actor: Principal, code: str) -> list[str]:
        """Turn 2FA on with a first valid code; returns the recovery codes, shown this once."""
        self.policy.require(actor, "self:2fa")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._user(s, actor)
            if user.totp_enabled or user.totp_pending_secret is None:
                raise Conflict("no two-factor enrolment is pending")
            secret = self.keys.decrypt(user.totp_pending_secret)
            step = self._matching_step(secret, code, last_step=None)
            if step is None:
                audit.record(
                    "2fa_confirm", actor=actor, outcome="failure", resource_type="user", resource_id=str(user.id)
                )
                raise InvalidInput("the code is not valid")
            user.totp_secret, user.totp_pending_secret = user.totp_pending_secret, None
            user.totp_enabled_at = utcnow()
            user.totp_last_step = step
            codes = self._new_recovery_codes(s, user.id)
            if actor.session_id is not None:
                # This session just proved possession of the second factor.
                s.execute(update(Session).where(Session.id == actor.session_id).values(mfa=True))
            # Every other session was opened with the password alone: it must sign in again with
            # the code, or a session stolen before enrolment would become a full one.
            ended = end_sessions(s, user.id, "2fa_enabled", keep=actor.session_id)
            audit.record(
                "2fa_enable",
                actor=actor,
                resource_type="user",
                resource_id=str(user.id),
                details={"sessions_revoked": ended},
            )
            return codes

    def disable(self, actor: Principal, password: str, code: str) -> None:
        self.policy.require(actor, "self:2fa")
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            user = self._user(s, actor)
            if not user.totp_enabled:
                raise Conflict("two-factor authentication is not on")
            if not self.hasher.verify(user.password_hash, password) or not self.check(s, user, code):
                audit.record(
                    "2fa_disable", actor=actor, outcome="failure", resource_type="user", resource_id=str(user.id)
                )
                raise Unauthorized("password or code is not valid")
            holds_tokens = s.scalar(
                select(ApiToken.id).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).limit(1)
            )
            if holds_tokens and self.settings.required_for_api_tokens:
                raise Conflict("accounts holding API tokens must keep 2FA on; revoke the tokens first")
            user.totp_secret = None
            user.totp_enabled_at = None
            s.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
            audit.record("2fa_disable", actor=actor, resource_type="user", resource_id=str(user.id))

    def check(self, s: OrmSession, user: User, code: str) -> bool:
        """Accept a current TOTP code (never the same time step twice) or an unused recovery code."""
        return self.verify(s, user, code) == "ok"

    def verify(self, s: OrmSession, user: User, code: str) -> Literal["ok", "reused", "invalid"]:
        """`check`, telling a code already used apart from a wrong one (so a person who typed the
        code twice in one window hears that, not "invalid")."""
        code = code.strip().replace(" ", "")
        if user.totp_secret is None:
            return "invalid"
        if code.isdigit() and len(code) == 6:
            secret = self.keys.decrypt(user.totp_secret)
            step = self._matching_step(secret, code, user.totp_last_step)
            if step is None:
                return "reused" if self._matching_step(secret, code, None) is not None else "invalid"
            user.totp_last_step = step
            return "ok"
        stored = digest(code.lower())
        row = s.scalar(
            select(RecoveryCode).where(
                RecoveryCode.user_id == user.id, RecoveryCode.code_hash == stored, RecoveryCode.used_at.is_(None)
            )
        )
        if row is None:
            return "invalid"
        row.used_at = utcnow()
        audit.record("2fa_recovery_code_used", actor_id=str(user.id), resource_type="user", resource_id=str(user.id))
        return "ok"

    def _matching_step(self, secret: str, code: str, last_step: int | None) -> int | None:
        totp = pyotp.TOTP(secret)
        now_step = int(time.time()) // STEP_SECONDS
        match = None
        for step in range(now_step - self.settings.valid_window, now_step + self.settings.valid_window + 1):
            expected = totp.at(step * STEP_SECONDS)
            # Compare every candidate so timing does not reveal which step matched.
            if hmac.compare_digest(expected, code) and (last_step is None or step > last_step):
                match = step
        return match

    def _new_recovery_codes(self, s: OrmSession, user_id: uuid.UUID) -> list[str]:
        s.query(RecoveryCode).filter(RecoveryCode.user_id == user_id).delete()
        codes = [_recovery_code() for _ in range(self.settings.recovery_codes)]
        s.add_all(RecoveryCode(user_id=user_id, code_hash=digest(c)) for c in codes)
        return codes

    @staticmethod
    def _user(s: OrmSession, actor: Principal) -> User:
        user = s.get(User, actor.user_id) if actor.user_id else None
        if user is None:
            raise Unauthorized("no account")
        return user

    def status(self, user: User) -> dict[str, Any]:
        return {"enabled": user.totp_enabled, "pending": user.totp_pending_secret is not None}
