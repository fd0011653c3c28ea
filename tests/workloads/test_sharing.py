"""Sharing modules with users and roles: what a share grants, and everything it does not."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import CapturingSink
from tests.helpers import HOST, signed_in
from tests.workloads.test_execution_api import HELLO, upload
from wcp360.runtime import Runtime
from wcp360.store.models import Share
from wcp360.store.scope import SYSTEM


def test_share_execute_with_a_user_then_take_it_back(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    owner = signed_in(client, rt, "owner", ["developer"])
    friend = signed_in(client, rt, "friend", ["developer"])
    module_id = upload(client, owner, HELLO)
    run = f"/api/v1/modules/{module_id}/execute"
    assert client.post(run, json={}, headers=friend.headers).status_code == 403
    assert client.get("/api/v1/modules", headers=friend.headers).json()["total"] == 0

    share = client.post(
        f"/api/v1/modules/{module_id}/shares", json={"user": "friend", "action": "execute"}, headers=owner.headers
    )
    assert share.status_code == 201, share.text
    assert share.json()["grantee"] == "user:friend"  # the name given, never the account id
    assert client.post(run, json={}, headers=friend.headers).json()["stdout"] == "hello\n"
    # execute does not imply read: the listing and download stay closed.
    assert client.get(f"/api/v1/modules/{module_id}/download", headers=friend.headers).status_code == 403
    # Listing shows modules shared for any action.
    assert [m["id"] for m in client.get("/api/v1/modules", headers=friend.headers).json()["items"]] == [module_id]

    # The grantee cannot share onwards, see the share list, or delete.
    onward = client.post(
        f"/api/v1/modules/{module_id}/shares", json={"user": "owner", "action": "execute"}, headers=friend.headers
    )
    assert onward.status_code == 403
    assert client.get(f"/api/v1/modules/{module_id}/shares", headers=friend.headers).status_code == 403

    share_id = share.json()["id"]
    assert client.delete(f"/api/v1/modules/{module_id}/shares/{share_id}", headers=owner.headers).status_code == 204
    assert client.post(run, json={}, headers=friend.headers).status_code == 403
    assert [e.details["action"] for e in audit_events.of("resource_share")] == ["execute"]
    assert len(audit_events.of("resource_unshare")) == 1


def test_share_read_with_a_role(client: TestClient, rt: Runtime) -> None:
    owner = signed_in(client, rt, "owner", ["developer"])
    viewer = signed_in(client, rt, "watcher", ["viewer"])
    other_dev = signed_in(client, rt, "otherdev", ["developer"])
    module_id = upload(client, owner, HELLO)
    assert (
        client.post(
            f"/api/v1/modules/{module_id}/shares", json={"role": "viewer", "action": "read"}, headers=owner.headers
        ).status_code
        == 201
    )
    assert client.get(f"/api/v1/modules/{module_id}", headers=viewer.headers).status_code == 200
    assert client.get(f"/api/v1/modules/{module_id}/download", headers=viewer.headers).status_code == 200
    # Read is not execute, and the role share does not reach other roles.
    assert client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=viewer.headers).status_code == 403
    assert client.get(f"/api/v1/modules/{module_id}", headers=other_dev.headers).status_code == 403


def test_bad_shares_are_refused_and_change_nothing(client: TestClient, rt: Runtime) -> None:
    owner = signed_in(client, rt, "owner", ["developer"])
    signed_in(client, rt, "friend", ["developer"])
    module_id = upload(client, owner, HELLO)
    path = f"/api/v1/modules/{module_id}/shares"
    cases = [
        ({"user": "owner", "action": "read"}, 422),  # oneself
        ({"role": "no-such-role", "action": "read"}, 422),
        ({"user": "friend", "role": "viewer", "action": "read"}, 422),
        ({"action": "read"}, 422),
        ({"user": "friend", "action": "delete"}, 422),  # only read or execute
        ({"user": "friend", "action": "read", "extra": 1}, 422),
    ]
    for body, status in cases:
        response = client.post(path, json=body, headers=owner.headers)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get(path, headers=owner.headers).json()["items"] == []
    assert client.post(path, json={"user": "friend", "action": "read"}, headers=owner.headers).status_code == 201
    assert client.post(path, json={"user": "friend", "action": "read"}, headers=owner.headers).status_code == 409


def test_viewer_cannot_share_what_they_cannot_execute(client: TestClient, rt: Runtime) -> None:
    # A grantee holding read cannot grant execute (or anything: sharing is the owner's act).
    owner = signed_in(client, rt, "owner", ["developer"])
    viewer = signed_in(client, rt, "watcher", ["viewer"])
    module_id = upload(client, owner, HELLO)
    client.post(
        f"/api/v1/modules/{module_id}/shares", json={"user": "watcher", "action": "read"}, headers=owner.headers
    )
    response = client.post(
        f"/api/v1/modules/{module_id}/shares", json={"user": "owner", "action": "execute"}, headers=viewer.headers
    )
    assert response.status_code == 403


def test_deleting_a_module_removes_its_shares(client: TestClient, rt: Runtime) -> None:
    owner = signed_in(client, rt, "owner", ["developer"])
    friend = signed_in(client, rt, "friend", ["developer"])
    module_id = upload(client, owner, HELLO)
    client.post(f"/api/v1/modules/{module_id}/shares", json={"user": "friend", "action": "read"}, headers=owner.headers)
    rt.modules.delete(HOST, uuid.UUID(module_id))  # developers hold no modules:delete; the host admin does
    assert client.get("/api/v1/modules", headers=friend.headers).json()["total"] == 0
    with rt.db.transaction(SYSTEM) as s:
        assert s.scalar(select(func.count()).select_from(Share)) == 0


def test_sharing_does_not_tell_who_has_an_account(client: TestClient, rt: Runtime) -> None:
    # The attack: share with guessed names and compare the answers (it was 404 vs 201).
    owner = signed_in(client, rt, "owner", ["developer"])
    friend = signed_in(client, rt, "friend", ["developer"])
    module_id = upload(client, owner, HELLO)
    path = f"/api/v1/modules/{module_id}/shares"
    real = client.post(path, json={"user": "friend", "action": "execute"}, headers=owner.headers)
    ghost = client.post(path, json={"user": "ghost", "action": "execute"}, headers=owner.headers)
    assert real.status_code == ghost.status_code == 201
    shape = {k for k in real.json() if k not in ("id", "created_at")}
    assert shape == {k for k in ghost.json() if k not in ("id", "created_at")}
    assert (real.json()["grantee"], ghost.json()["grantee"]) == ("user:friend", "user:ghost")
    # Repeats, listings and removal answer alike too.
    for name in ("friend", "ghost"):
        again = client.post(path, json={"user": name, "action": "execute"}, headers=owner.headers)
        assert again.status_code == 409
    listed = client.get(path, headers=owner.headers).json()["items"]
    assert sorted(item["user"] for item in listed) == ["friend", "ghost"]
    # The real share works; the ghost's reaches nobody, not even an account created later by that name.
    assert client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=friend.headers).status_code == 200
    late = signed_in(client, rt, "ghost", ["developer"])
    assert client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=late.headers).status_code == 403
