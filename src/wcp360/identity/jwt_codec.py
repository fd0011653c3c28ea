"""Access tokens: JWTs signed with one pinned algorithm and checked claim by claim."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import jwt

from wcp360.config.security import JwtConfig
from wcp360.errors import Unauthorized

REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "nbf", "jti", "sub", "sid"]


@dataclass(frozen=True)
class AccessClaims:
    subject: uuid.UUID
    session_id: uuid.UUID
    jti: str
    roles: tuple[str, ...]
    expires_at: datetime


class JwtCodec:
    def __init__(self, settings: JwtConfig, hmac_secret: bytes) -> None:
        self.settings = settings
        self.algorithm = settings.algorithm
        if self.algorithm.startswith("HS"):
            secret = settings.secret.get_secret_value().encode() if settings.secret else hmac_secret
            self._signing_key: Any = secret
            self._verify_key: Any = secret
        else:
            assert settings.private_key_file and settings.public_key_file
            self._signing_key = settings.private_key_file.read_bytes()
            self._verify_key = settings.public_key_file.read_bytes()
        self._decode_cached = lru_cache(maxsize=8192)(self._decode)

    @property
    def lifetime_seconds(self) -> int:
        return int(self.settings.expiry.total_seconds())

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID, roles: list[str], now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + self.settings.expiry,
            "roles": roles,
            "typ": "access",
        }
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm, headers={"typ": "JWT"})

    def verify(self, token: str) -> AccessClaims:
        """Check a token: signature and claims once per distinct token, expiry on every use.

        Clients present the same access token for its whole lifetime, and checking a signature
        over the same bytes always gives the same answer, so successful decodes are cached
        (bounded; failures are never cached). Revocation is not affected: the session and the
        account are looked up on every request by the caller.
        """
        claims = self._decode_cached(token)
        if claims.expires_at + self.settings.leeway <= datetime.now(UTC):
            raise Unauthorized("invalid or expired token", reason="ExpiredSignatureError")
        return claims

    def _decode(self, token: str) -> AccessClaims:
        """Decode and check a token; every failure is the same 401 to the caller.

        `algorithms` is pinned to the one configured algorithm, which is what rejects `alg=none`
        and HS/RS key confusion; PyJWT also refuses PEM public keys as HMAC secrets.
        """
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
            if claims.get("typ") != "access":
                raise jwt.InvalidTokenError("not an access token")
            return AccessClaims(
                subject=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                jti=str(claims["jti"]),
                roles=tuple(claims.get("roles") or ()),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise Unauthorized("invalid or expired token", reason=type(exc).__name__) from None
