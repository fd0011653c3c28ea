"""What a credential change ends: a second factor proven in one session does not complete another,
and a password change or reset and a 2FA reset end every session, refresh family and API token."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.conftest import CapturingSink, problem_of
from tests.helpers import HOST, STRONG, bearer, enable_totp, login, make_user, signed_in
from wcp360.runtime import Runtime
from wcp360.store.scope import NOBODY

NEW = "An0ther!Passphrase#77"


def test_enrolling_in_one_session_does_not_complete_a_password_only_session(client: TestClient, rt: Runtime) -> None:
    # The attack: a password-only session (stolen, or left open) waits while the owner enrols.
    make_user(rt, "ada", ["admin"])
    stolen = login(client, "ada")
    owner = login(client, "ada")
    assert client.get("/api/v1/auth/me", headers=bearer(stolen["access_token"])).json()["mfa_pending"] is True
    enable_totp(client, owner["access_token"])

    me = client.get("/api/v1/auth/me", headers=bearer(stolen["access_token"]))
    assert me.status_code == 401  # revoked by the confirmation, not upgraded
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]}).status_code == 401
    created = client.post(
        "/api/v1/users",
        json={"username": "evil", "email": "evil@example.test", "password": STRONG, "roles": ["admin"]},
        headers=bearer(stolen["access_token"]),
    )
    assert created.status_code == 401
    minted = client.post(
        "/api/v1/auth/api-tokens",
        json={"name": "keep", "scopes": ["users:*", "system:*"], "expires_in_days": 365},
        headers=bearer(stolen["access_token"]),
    )
    assert minted.status_code == 401
    # The session that enrolled is whole.
    assert client.get("/api/v1/auth/me", headers=bearer(owner["access_token"])).json()["mfa_pending"] is False


def test_a_session_without_the_factor_stays_pending_while_totp_is_on(client: TestClient, rt: Runtime) -> None:
    # Even if a password-only session survived (e.g. written before this fix), it is never full.
    make_user(rt, "bea", ["admin"])
    stale = login(client, "bea")
    with rt.db.transaction(NOBODY) as s:
        from sqlalchemy import update

        from wcp360.store.models import Session

        owner = login(client, "bea")
        enable_totp(client, owner["access_token"])
        s.execute(update(Session).values(revoked_at=None, revoked_reason=None))
    me = client.get("/api/v1/auth/me", headers=bearer(stale["access_token"])).json()
    assert me["mfa_pending"] is True
    assert client.get("/api/v1/users", headers=bearer(stale["access_token"])).status_code == 403


def _token(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/api/v1/auth/api-tokens", json={"name": "ci", "scopes": ["modules:read"]}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_password_change_ends_other_sessions_and_api_tokens(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    account = signed_in(client, rt, "cid", ["developer"], with_totp=True)
    assert account.device is not None
    other = login(client, "cid", totp=account.device.code())
    token = _token(client, account.headers)
    assert client.get("/api/v1/modules", headers=bearer(token)).status_code == 200
    changed = client.post(
        "/api/v1/auth/password", json={"current_password": STRONG, "new_password": NEW}, headers=account.headers
    )
    assert changed.status_code == 204, changed.text
    assert client.get("/api/v1/modules", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(other["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code == 401
    assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 200  # this session stays
    details = audit_events.of("password_change")[-1].details
    assert details["sessions_revoked"] == 1 and details["api_credentials_revoked"] == 1


def test_admin_password_reset_and_2fa_reset_end_api_tokens(client: TestClient, rt: Runtime) -> None:
    for reset in ("password", "2fa"):
        name = f"dev{reset[0]}"
        account = signed_in(client, rt, name, ["developer"], with_totp=True)
        token = _token(client, account.headers)
        user_id = uuid.UUID(account.user_id)
        if reset == "password":
            rt.users.reset_password(HOST, user_id, NEW)
        else:
            rt.users.reset_two_factor(HOST, user_id)
        refused = client.get("/api/v1/modules", headers=bearer(token))
        assert refused.status_code == 401, reset
        assert problem_of(refused)["status"] == 401
        assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 401


def test_totp_required_answer_counts_toward_the_account_throttle(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    account = signed_in(client, rt, "dora", ["developer"], with_totp=True)
    assert account.device is not None
    answer = client.post("/api/v1/auth/login", json={"username": "dora", "password": STRONG})
    assert problem_of(answer)["type"].endswith("totp-required")
    failure = audit_events.of("login_failure")[-1]
    assert failure.details["reason"] == "totp_required" and failure.details["username"] == "dora"


def test_a_password_typed_as_a_username_is_not_stored(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    secret = "Hunter2-MyRealPassword!"
    for _ in range(2):
        assert client.post("/api/v1/auth/login", json={"username": secret, "password": "x"}).status_code == 401
    failures = audit_events.of("login_failure")
    names = {f.details["username"] for f in failures}
    assert len(names) == 1  # the same unknown name counts together ...
    (name,) = names
    assert name.startswith("unknown:") and secret.lower() not in str(name)  # ... as a keyed hash only
    log = (rt.config.log_dir / "audit.log").read_text() if (rt.config.log_dir / "audit.log").exists() else ""
    assert secret.lower() not in log and secret not in log
    # The brute-force counters see that name too, so an unknown name is throttled like a known one.
    assert rt.auth.login_name(secret) == name
