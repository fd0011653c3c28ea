"""TOTP enrolment, sign-in with a second factor, code replay, recovery codes, disable and reset."""

from __future__ import annotations

import uuid

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import CapturingSink, problem_of
from tests.helpers import HOST, STRONG, bearer, enable_totp, login, make_user, signed_in
from wcp360.runtime import Runtime
from wcp360.store.models import RecoveryCode, User
from wcp360.store.scope import NOBODY


def test_enrol_confirm_and_sign_in(client: TestClient, rt: Runtime, audit_events: CapturingSink) -> None:
    make_user(rt, "mia", ["developer"])
    tokens = login(client, "mia")
    enrolled = client.post("/api/v1/auth/2fa/enroll", headers=bearer(tokens["access_token"])).json()
    assert enrolled["otpauth_uri"].startswith("otpauth://totp/WCP360:mia?")
    wrong = client.post("/api/v1/auth/2fa/confirm", json={"code": "000000"}, headers=bearer(tokens["access_token"]))
    assert wrong.status_code == 422
    # Not active until confirmed: a password alone still signs in.
    login(client, "mia")
    code = pyotp.TOTP(enrolled["secret"]).now()
    confirmed = client.post("/api/v1/auth/2fa/confirm", json={"code": code}, headers=bearer(tokens["access_token"]))
    assert confirmed.status_code == 200
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    needs = client.post("/api/v1/auth/login", json={"username": "mia", "password": STRONG})
    assert needs.status_code == 401 and problem_of(needs)["type"].endswith("totp-required")
    assert {"2fa_enroll", "2fa_enable"} <= set(audit_events.actions())


def test_secret_is_encrypted_at_rest_and_codes_hashed(client: TestClient, rt: Runtime) -> None:
    account = signed_in(client, rt, "nick", ["developer"], with_totp=True)
    assert account.device is not None
    with rt.db.transaction(NOBODY) as s:
        user = s.scalars(select(User).where(User.username == "nick")).one()
        stored = [c.code_hash for c in s.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id))]
    assert user.totp_secret and account.device.secret not in user.totp_secret
    assert rt.keys.decrypt(user.totp_secret) == account.device.secret
    assert all(len(h) == 64 for h in stored)


def test_a_code_cannot_be_replayed(client: TestClient, rt: Runtime) -> None:
    account = signed_in(client, rt, "olga", ["developer"], with_totp=True)
    assert account.device is not None
    code = account.device.code()
    login(client, "olga", totp=code)
    again = client.post("/api/v1/auth/login", json={"username": "olga", "password": STRONG, "totp": code})
    assert again.status_code == 401
    assert "already used" in problem_of(again)["detail"]  # said as it is, and still refused
    wrong = client.post("/api/v1/auth/login", json={"username": "olga", "password": STRONG, "totp": "000000"})
    assert wrong.status_code == 401 and "invalid two-factor code" in problem_of(wrong)["detail"]


def test_recovery_codes_work_once(client: TestClient, rt: Runtime, audit_events: CapturingSink) -> None:
    make_user(rt, "pete", ["developer"])
    _, codes = enable_totp(client, login(client, "pete")["access_token"])
    login(client, "pete", totp=codes[0].upper())
    reused = client.post("/api/v1/auth/login", json={"username": "pete", "password": STRONG, "totp": codes[0]})
    assert reused.status_code == 401
    login(client, "pete", totp=codes[1])
    assert len(audit_events.of("2fa_recovery_code_used")) == 2


def test_wrong_code_after_right_password_is_a_failure(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    signed_in(client, rt, "quin", ["developer"], with_totp=True)
    bad = client.post("/api/v1/auth/login", json={"username": "quin", "password": STRONG, "totp": "123456"})
    assert bad.status_code == 401
    assert audit_events.of("login_failure")[-1].details["reason"] == "bad_totp"


def test_disable_needs_password_and_code(client: TestClient, rt: Runtime) -> None:
    account = signed_in(client, rt, "rita", ["developer"], with_totp=True)
    assert account.device is not None
    no_pw = client.post(
        "/api/v1/auth/2fa/disable", headers=account.headers, json={"password": "wrong", "code": account.device.code()}
    )
    assert no_pw.status_code == 401
    no_code = client.post(
        "/api/v1/auth/2fa/disable", headers=account.headers, json={"password": STRONG, "code": "000000"}
    )
    assert no_code.status_code == 401
    ok = client.post(
        "/api/v1/auth/2fa/disable", headers=account.headers, json={"password": STRONG, "code": account.device.code()}
    )
    assert ok.status_code == 204
    login(client, "rita")


def test_admin_reset_clears_the_factor(client: TestClient, rt: Runtime) -> None:
    account = signed_in(client, rt, "sam", ["developer"], with_totp=True)
    rt.users.reset_two_factor(HOST, uuid.UUID(account.user_id))
    # Existing sessions end, and the password alone signs in again (enrolment starts over).
    assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 401
    login(client, "sam")


def test_enrol_twice_is_a_conflict(client: TestClient, rt: Runtime) -> None:
    account = signed_in(client, rt, "tom", ["developer"], with_totp=True)
    again = client.post("/api/v1/auth/2fa/enroll", headers=account.headers)
    assert again.status_code == 409
