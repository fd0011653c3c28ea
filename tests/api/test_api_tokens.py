"""API tokens: shown once, stored hashed, scoped within the owner, expiring, IP-bound, rotatable, revocable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import CapturingSink, problem_of
from tests.helpers import Account, bearer, login, make_user, signed_in
from wcp360.runtime import Runtime
from wcp360.store.models import ApiToken
from wcp360.store.scope import NOBODY
from wcp360.store.types import utcnow


def _create(client: TestClient, account: Account, **body: object) -> dict[str, object]:
    payload = {"name": "ci", "scopes": ["modules:read"], **body}
    response = client.post("/api/v1/auth/api-tokens", json=payload, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


@pytest.fixture
def dev(client: TestClient, rt: Runtime) -> Account:
    return signed_in(client, rt, "devtok", ["developer"], with_totp=True)


def test_token_needs_2fa_first(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "no2fa", ["developer"])
    token = login(client, "no2fa")["access_token"]
    refused = client.post(
        "/api/v1/auth/api-tokens", json={"name": "x", "scopes": ["modules:read"]}, headers=bearer(token)
    )
    assert refused.status_code == 403 and "two-factor" in problem_of(refused)["detail"]


def test_token_is_shown_once_and_stored_hashed(client: TestClient, rt: Runtime, dev: Account) -> None:
    created = _create(client, dev, scopes=["modules:read", "self:read"])
    secret = str(created["token"])
    assert secret.startswith(f"wcp_{created['id']}_")
    listed = client.get("/api/v1/auth/api-tokens", headers=dev.headers).json()["items"]
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    with rt.db.transaction(NOBODY) as s:
        row = s.get(ApiToken, created["id"])
        assert row is not None
        assert secret.split("_", 2)[2] not in (row.secret_hash or "")
    me = client.get("/api/v1/auth/me", headers=bearer(secret)).json()
    assert me["via"] == "api_token"
    assert sorted(me["permissions"]) == ["modules:read", "self:read"]


def test_default_expiry_is_ninety_days(client: TestClient, dev: Account) -> None:
    created = _create(client, dev)
    from datetime import datetime

    lifetime = datetime.fromisoformat(str(created["expires_at"])) - datetime.fromisoformat(str(created["created_at"]))
    assert abs(lifetime - timedelta(days=90)) < timedelta(seconds=5)


@pytest.mark.parametrize("scope", ["users:read", "modules:*", "system:any_owner", "metrics:*"])
def test_scope_cannot_widen_the_owner(client: TestClient, dev: Account, scope: str) -> None:
    response = client.post("/api/v1/auth/api-tokens", json={"name": "x", "scopes": [scope]}, headers=dev.headers)
    assert response.status_code == 403


@pytest.mark.parametrize("scope", ["modules", "*:*", "MODULES:READ", "modules:read:extra"])
def test_malformed_scopes_are_invalid(client: TestClient, dev: Account, scope: str) -> None:
    response = client.post("/api/v1/auth/api-tokens", json={"name": "x", "scopes": [scope]}, headers=dev.headers)
    assert response.status_code == 422


def test_a_token_cannot_mint_tokens_unless_scoped_to(client: TestClient, dev: Account) -> None:
    narrow = str(_create(client, dev)["token"])
    response = client.post(
        "/api/v1/auth/api-tokens", json={"name": "y", "scopes": ["modules:read"]}, headers=bearer(narrow)
    )
    assert response.status_code == 403


def test_scope_follows_the_owner_down(client: TestClient, rt: Runtime, dev: Account) -> None:
    token = str(_create(client, dev, scopes=["modules:create", "self:read"])["token"])
    import uuid

    from tests.helpers import HOST

    rt.users.change_roles(HOST, uuid.UUID(dev.user_id), add=["viewer"], remove=["developer"])
    me = client.get("/api/v1/auth/me", headers=bearer(token)).json()
    assert "modules:create" not in me["permissions"]


def test_cidr_allowlist(client: TestClient, dev: Account) -> None:
    # The test client's address is "testclient", which is no IP at all: nothing admits it.
    locked = str(_create(client, dev, allowed_cidrs=["10.1.0.0/16"], scopes=["self:read"])["token"])
    assert client.get("/api/v1/auth/me", headers=bearer(locked)).status_code == 401
    bad = client.post(
        "/api/v1/auth/api-tokens",
        json={"name": "x", "scopes": ["self:read"], "allowed_cidrs": ["not-a-net"]},
        headers=dev.headers,
    )
    assert bad.status_code == 422


def test_expired_token_is_refused(client: TestClient, rt: Runtime, dev: Account) -> None:
    created = _create(client, dev, scopes=["self:read"])
    with rt.db.transaction(NOBODY) as s:
        s.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/v1/auth/me", headers=bearer(str(created["token"]))).status_code == 401


def test_rotation_keeps_the_old_secret_for_the_overlap_only(
    client: TestClient, rt: Runtime, dev: Account, audit_events: CapturingSink
) -> None:
    created = _create(client, dev, scopes=["self:read"])
    old = str(created["token"])
    rotated = client.post(f"/api/v1/auth/api-tokens/{created['id']}/rotate", headers=dev.headers).json()
    new = str(rotated["token"])
    assert new != old and new.startswith(f"wcp_{created['id']}_")
    assert client.get("/api/v1/auth/me", headers=bearer(new)).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(old)).status_code == 200  # within the overlap
    with rt.db.transaction(NOBODY) as s:
        s.execute(update(ApiToken).values(previous_valid_until=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/v1/auth/me", headers=bearer(old)).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(new)).status_code == 200
    assert "api_token_rotate" in audit_events.actions()


def test_revoke(client: TestClient, dev: Account) -> None:
    created = _create(client, dev, scopes=["self:read"])
    assert client.delete(f"/api/v1/auth/api-tokens/{created['id']}", headers=dev.headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(str(created["token"]))).status_code == 401
    assert client.delete(f"/api/v1/auth/api-tokens/{created['id']}", headers=dev.headers).status_code == 404


def test_someone_elses_token_cannot_be_touched(client: TestClient, rt: Runtime, dev: Account) -> None:
    created = _create(client, dev)
    other = signed_in(client, rt, "other", ["developer"], with_totp=True)
    assert client.delete(f"/api/v1/auth/api-tokens/{created['id']}", headers=other.headers).status_code == 404
    assert client.post(f"/api/v1/auth/api-tokens/{created['id']}/rotate", headers=other.headers).status_code == 404


@pytest.mark.parametrize("forged", ["wcp_", "wcp_abc", "wcp_abc_def", "wcp_0000000000000000_" + "A" * 43])
def test_forged_tokens_are_refused(client: TestClient, dev: Account, forged: str) -> None:
    assert client.get("/api/v1/auth/me", headers=bearer(forged)).status_code == 401


def test_wrong_secret_for_a_real_id_is_refused(client: TestClient, dev: Account) -> None:
    created = _create(client, dev, scopes=["self:read"])
    assert client.get("/api/v1/auth/me", headers=bearer(f"wcp_{created['id']}_{'B' * 43}")).status_code == 401


def test_holding_tokens_keeps_2fa_on(client: TestClient, dev: Account) -> None:
    _create(client, dev)
    assert dev.device is not None
    refused = client.post(
        "/api/v1/auth/2fa/disable",
        headers=dev.headers,
        json={"password": "Str0ng!Passphrase#42", "code": dev.device.code()},
    )
    assert refused.status_code == 409
