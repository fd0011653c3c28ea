"""Access-token attacks: none-alg, wrong key, wrong iss/aud, expiry, HS/RS confusion, tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wcp360.config.security import JwtConfig
from wcp360.errors import Unauthorized
from wcp360.identity.jwt_codec import JwtCodec

SECRET = b"s" * 48


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "iss": "wcp360",
        "aud": "wcp360-api",
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "jti": "j",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "roles": ["admin"],
        "typ": "access",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def codec() -> JwtCodec:
    return JwtCodec(JwtConfig(), SECRET)


def test_round_trip(codec: JwtCodec) -> None:
    user, session = uuid.uuid4(), uuid.uuid4()
    claims = codec.verify(codec.issue(user, session, ["developer"]))
    assert (claims.subject, claims.session_id, claims.roles) == (user, session, ("developer",))


def test_alg_none_is_rejected(codec: JwtCodec) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims(iat=1, nbf=1, exp=2**31)).encode())
    for token in (f"{header}.{body}.", f"{header}.{body}"):
        with pytest.raises(Unauthorized):
            codec.verify(token)


def test_wrong_key_is_rejected(codec: JwtCodec) -> None:
    with pytest.raises(Unauthorized):
        codec.verify(jwt.encode(_claims(), b"x" * 48, algorithm="HS256"))


def test_other_hmac_algorithm_is_rejected(codec: JwtCodec) -> None:
    with pytest.raises(Unauthorized):
        codec.verify(jwt.encode(_claims(), SECRET * 2, algorithm="HS512"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "evil"},
        {"aud": "other-api"},
        {"aud": ["wcp360-api", "other"]},
        {"exp": datetime.now(UTC) - timedelta(minutes=5)},
        {"nbf": datetime.now(UTC) + timedelta(minutes=5)},
        {"sid": None},
        {"jti": None},
        {"typ": "refresh"},
        {"sub": "not-a-uuid"},
    ],
)
def test_bad_claims_are_rejected(codec: JwtCodec, overrides: dict[str, object]) -> None:
    with pytest.raises(Unauthorized):
        codec.verify(jwt.encode(_claims(**overrides), SECRET, algorithm="HS256"))


def test_tampered_payload_is_rejected(codec: JwtCodec) -> None:
    header, _, signature = codec.issue(uuid.uuid4(), uuid.uuid4(), ["viewer"]).split(".")
    forged = _b64(json.dumps(_claims(roles=["admin"], iat=1, nbf=1, exp=2**31)).encode())
    with pytest.raises(Unauthorized):
        codec.verify(f"{header}.{forged}.{signature}")


@pytest.fixture
def rsa_codec(tmp_path: Path) -> tuple[JwtCodec, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "k.pem").write_bytes(private)
    (tmp_path / "k.pub").write_bytes(public)
    settings = JwtConfig(algorithm="RS256", private_key_file=tmp_path / "k.pem", public_key_file=tmp_path / "k.pub")
    return JwtCodec(settings, SECRET), public


def test_rs256_round_trip(rsa_codec: tuple[JwtCodec, bytes]) -> None:
    codec, _ = rsa_codec
    user = uuid.uuid4()
    assert codec.verify(codec.issue(user, uuid.uuid4(), [])).subject == user


def test_hs_rs_key_confusion_is_rejected(rsa_codec: tuple[JwtCodec, bytes]) -> None:
    """The classic attack: sign HS256 with the server's *public* key as the HMAC secret."""
    codec, public_pem = rsa_codec
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims(iat=1, nbf=1, exp=2**31)).encode())
    signature = _b64(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(Unauthorized):
        codec.verify(f"{header}.{body}.{signature}")


def test_hs_token_is_rejected_by_rs_server_even_with_right_secret(rsa_codec: tuple[JwtCodec, bytes]) -> None:
    codec, _ = rsa_codec
    with pytest.raises(Unauthorized):
        codec.verify(jwt.encode(_claims(), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", "a.b.c", "x" * 5000, "eyJhbGciOiJIUzI1NiJ9..", "🙂.🙂.🙂"])
def test_garbage_is_rejected(codec: JwtCodec, garbage: str) -> None:
    with pytest.raises(Unauthorized):
        codec.verify(garbage)


def test_a_cached_token_still_expires(codec: JwtCodec) -> None:
    from datetime import datetime as real_datetime

    issued = real_datetime.now(UTC) - timedelta(minutes=14, seconds=59)
    token = codec.issue(uuid.uuid4(), uuid.uuid4(), [], now=issued)
    codec.verify(token)  # valid now, and now cached
    later = issued + codec.settings.expiry + codec.settings.leeway + timedelta(seconds=1)

    class Frozen(real_datetime):
        @classmethod
        def now(cls, tz: object = None) -> real_datetime:  # type: ignore[override]
            return later

    import wcp360.identity.jwt_codec as module

    original = module.datetime
    module.datetime = Frozen  # type: ignore[misc]
    try:
        with pytest.raises(Unauthorized):
            codec.verify(token)
    finally:
        module.datetime = original  # type: ignore[misc]


def test_failures_are_not_cached(codec: JwtCodec) -> None:
    token = codec.issue(uuid.uuid4(), uuid.uuid4(), [])
    header, body, signature = token.split(".")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            codec.verify(f"{header}.{body}.{signature[:-2]}AA")
    codec.verify(token)
