"""User administration over HTTP, and privilege-escalation attempts against it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CapturingSink, problem_of
from tests.helpers import STRONG, Account, bearer, login, signed_in
from wcp360.runtime import Runtime

NEW_USER = {"username": "newbie", "email": "newbie@example.test", "password": STRONG, "roles": ["developer"]}


@pytest.fixture
def admin(client: TestClient, rt: Runtime) -> Account:
    return signed_in(client, rt, "boss", ["admin"])


@pytest.fixture
def reseller(client: TestClient, rt: Runtime) -> Account:
    return signed_in(client, rt, "shop", ["reseller"])


def test_create_get_update_delete(client: TestClient, admin: Account, audit_events: CapturingSink) -> None:
    created = client.post("/api/v1/users", json=NEW_USER, headers=admin.headers)
    assert created.status_code == 201
    user = created.json()
    assert user["roles"] == ["developer"] and user["status"] == "active" and "password_hash" not in user
    assert client.get(f"/api/v1/users/{user['id']}", headers=admin.headers).json()["email"] == NEW_USER["email"]
    patched = client.patch(f"/api/v1/users/{user['id']}", json={"email": "n2@example.test"}, headers=admin.headers)
    assert patched.json()["email"] == "n2@example.test"
    assert client.delete(f"/api/v1/users/{user['id']}", headers=admin.headers).status_code == 204
    assert client.get(f"/api/v1/users/{user['id']}", headers=admin.headers).status_code == 404
    assert {"user_create", "user_update", "user_delete"} <= set(audit_events.actions())


def test_duplicate_username_or_email_conflicts(client: TestClient, admin: Account) -> None:
    assert client.post("/api/v1/users", json=NEW_USER, headers=admin.headers).status_code == 201
    again = client.post(
        "/api/v1/users", json={**NEW_USER, "username": "NEWBIE", "email": "x@example.test"}, headers=admin.headers
    )
    assert again.status_code == 409
    same_mail = client.post(
        "/api/v1/users", json={**NEW_USER, "username": "x2", "email": "NEWBIE@example.test"}, headers=admin.headers
    )
    assert same_mail.status_code == 409


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"password": "password1"}, "password"),
        ({"roles": ["wizard"]}, "unknown role"),
        ({"username": "a b"}, "username"),
        ({"email": "nope"}, "email"),
        ({"roles": []}, ""),
    ],
)
def test_bad_user_input_is_refused_and_writes_nothing(
    client: TestClient, admin: Account, change: dict[str, object], fragment: str
) -> None:
    response = client.post("/api/v1/users", json={**NEW_USER, **change}, headers=admin.headers)
    assert response.status_code == 422
    assert fragment in response.text
    listed = client.get("/api/v1/users", headers=admin.headers).json()
    assert "newbie" not in [u["username"] for u in listed["items"]]


def test_paging(client: TestClient, rt: Runtime, admin: Account) -> None:
    for i in range(5):
        client.post(
            "/api/v1/users",
            json={**NEW_USER, "username": f"user{i}", "email": f"u{i}@example.test"},
            headers=admin.headers,
        )
    page = client.get("/api/v1/users?limit=2&offset=1", headers=admin.headers).json()
    assert page["total"] == 6 and page["limit"] == 2 and page["offset"] == 1
    assert [u["username"] for u in page["items"]] == ["user0", "user1"]
    assert client.get("/api/v1/users?limit=0", headers=admin.headers).status_code == 422
    assert client.get("/api/v1/users?limit=1000", headers=admin.headers).status_code == 422
    devs = client.get("/api/v1/users?role=developer", headers=admin.headers).json()
    assert devs["total"] == 5


def test_roles_add_and_remove(client: TestClient, admin: Account, audit_events: CapturingSink) -> None:
    user = client.post("/api/v1/users", json=NEW_USER, headers=admin.headers).json()
    added = client.put(f"/api/v1/users/{user['id']}/roles/operator", headers=admin.headers)
    assert added.json()["roles"] == ["developer", "operator"]
    removed = client.delete(f"/api/v1/users/{user['id']}/roles/developer", headers=admin.headers)
    assert removed.json()["roles"] == ["operator"]
    changes = audit_events.of("role_change")
    assert changes[0].details["added"] == ["operator"] and changes[1].details["removed"] == ["developer"]


def test_disable_enable_and_reset_password(client: TestClient, admin: Account) -> None:
    user = client.post("/api/v1/users", json=NEW_USER, headers=admin.headers).json()
    session = login(client, "newbie")
    client.post(f"/api/v1/users/{user['id']}/disable", headers=admin.headers)
    assert client.get("/api/v1/auth/me", headers=bearer(session["access_token"])).status_code == 401
    client.post(f"/api/v1/users/{user['id']}/enable", headers=admin.headers)
    reset = client.post(
        f"/api/v1/users/{user['id']}/reset-password", json={"password": "Fresh!Start#2026x"}, headers=admin.headers
    )
    assert reset.status_code == 200
    login(client, "newbie", "Fresh!Start#2026x")


def test_the_last_admin_is_protected(client: TestClient, admin: Account) -> None:
    own = client.delete(f"/api/v1/users/{admin.user_id}/roles/admin", headers=admin.headers)
    assert own.status_code == 409 and "last active admin" in problem_of(own)["detail"]
    assert client.post(f"/api/v1/users/{admin.user_id}/disable", headers=admin.headers).status_code == 409


# -- privilege escalation -----------------------------------------------------------------


def test_developer_cannot_manage_users(
    client: TestClient, rt: Runtime, admin: Account, audit_events: CapturingSink
) -> None:
    dev = signed_in(client, rt, "dev9", ["developer"])
    assert client.get("/api/v1/users", headers=dev.headers).status_code == 403
    assert client.post("/api/v1/users", json=NEW_USER, headers=dev.headers).status_code == 403
    own_roles = client.put(f"/api/v1/users/{dev.user_id}/roles/admin", headers=dev.headers)
    assert own_roles.status_code == 403
    denial = audit_events.of("permission_denied")[-1]
    assert denial.outcome == "denied" and denial.details["permission"] == "users:update"


def test_reseller_cannot_create_or_grant_admin(client: TestClient, reseller: Account) -> None:
    as_admin = client.post("/api/v1/users", json={**NEW_USER, "roles": ["admin"]}, headers=reseller.headers)
    assert as_admin.status_code == 403
    # An operator holds scheduler:*, which a reseller does not: it may not hand that out either.
    operator = client.post("/api/v1/users", json={**NEW_USER, "roles": ["operator"]}, headers=reseller.headers)
    assert operator.status_code == 403
    tenant = client.post("/api/v1/users", json={**NEW_USER, "roles": ["tenant"]}, headers=reseller.headers)
    assert tenant.status_code == 201
    for role in ("admin", "operator"):
        grant = client.put(f"/api/v1/users/{tenant.json()['id']}/roles/{role}", headers=reseller.headers)
        assert grant.status_code == 403, role
    self_grant = client.put(f"/api/v1/users/{reseller.user_id}/roles/admin", headers=reseller.headers)
    assert self_grant.status_code == 403


def test_reseller_sees_and_manages_only_its_own_accounts(
    client: TestClient, rt: Runtime, admin: Account, reseller: Account
) -> None:
    theirs = client.post(
        "/api/v1/users",
        json={**NEW_USER, "username": "adminmade", "email": "am@example.test", "roles": ["viewer"]},
        headers=admin.headers,
    ).json()
    mine = client.post("/api/v1/users", json={**NEW_USER, "roles": ["tenant"]}, headers=reseller.headers).json()
    listed = client.get("/api/v1/users", headers=reseller.headers).json()
    assert [u["username"] for u in listed["items"]] == ["newbie"] and listed["total"] == 1
    assert client.get(f"/api/v1/users/{theirs['id']}", headers=reseller.headers).status_code == 403
    assert client.post(f"/api/v1/users/{theirs['id']}/disable", headers=reseller.headers).status_code == 403
    assert (
        client.post(
            f"/api/v1/users/{admin.user_id}/reset-password",
            json={"password": "Hijack!Attempt#77"},
            headers=reseller.headers,
        ).status_code
        == 403
    )
    assert client.post(f"/api/v1/users/{mine['id']}/disable", headers=reseller.headers).status_code == 200
    login(client, "boss", totp=admin.device.code() if admin.device else None)


def test_api_token_scope_limits_user_admin(client: TestClient, admin: Account) -> None:
    token = client.post(
        "/api/v1/auth/api-tokens", json={"name": "ro", "scopes": ["users:read"]}, headers=admin.headers
    ).json()["token"]
    assert client.get("/api/v1/users", headers=bearer(token)).status_code == 200
    assert client.post("/api/v1/users", json=NEW_USER, headers=bearer(token)).status_code == 403
