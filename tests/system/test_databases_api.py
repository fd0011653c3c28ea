"""Tenants' databases through the API on the machine's real MariaDB and PostgreSQL: the password
once and never stored, cached or audited; hostile names and other owners refused with
problem+json, nothing created."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CapturingSink, problem_of
from tests.helpers import signed_in
from tests.system.test_databases import HOSTILE
from wcp360.runtime import Runtime


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_create_list_rotate_drop(client: TestClient, rt: Runtime, engine: str, audit_events: CapturingSink) -> None:
    reseller = signed_in(client, rt, "res", ["reseller"]).headers
    tenant = client.post("/api/v1/tenants", json={"name": f"wt{uuid.uuid4().hex[:10]}"}, headers=reseller).json()
    databases = f"/api/v1/tenants/{tenant['id']}/databases"
    try:
        made = client.post(databases, json={"engine": engine, "name": "shop"}, headers=reseller)
        assert made.status_code == 201, made.text
        assert made.headers["cache-control"] == "no-store"
        body = made.json()
        assert body["database"] == f"{tenant['name']}_shop" and len(body["password"]) >= 32
        listed = client.get(databases, headers=reseller).json()
        assert [d["name"] for d in listed] == ["shop"] and "password" not in listed[0]
        rotated = client.post(f"{databases}/{engine}/shop/rotate", headers=reseller)
        assert rotated.status_code == 200 and rotated.json()["password"] != body["password"]
        again = client.post(databases, json={"engine": engine, "name": "shop"}, headers=reseller)
        assert again.status_code == 409
        wrong = client.delete(f"{databases}/{engine}/shop", params={"confirm": "shopx"}, headers=reseller)
        assert wrong.status_code == 422 and len(client.get(databases, headers=reseller).json()) == 1
        dropped = client.delete(f"{databases}/{engine}/shop", params={"confirm": "shop"}, headers=reseller)
        assert dropped.status_code == 204 and client.get(databases, headers=reseller).json() == []
        trail = json.dumps([event.__dict__ for event in audit_events.events], default=str)
        assert body["password"] not in trail and rotated.json()["password"] not in trail
        assert {"tenant_database_create", "tenant_database_rotate", "tenant_database_drop"} <= set(
            audit_events.actions()
        )
    finally:
        client.delete(f"/api/v1/tenants/{tenant['id']}", params={"confirm": tenant["name"]}, headers=reseller)


def test_refusals_change_nothing(client: TestClient, rt: Runtime) -> None:
    reseller = signed_in(client, rt, "res", ["reseller"]).headers
    other = signed_in(client, rt, "other", ["reseller"]).headers
    tenant = client.post("/api/v1/tenants", json={"name": f"wt{uuid.uuid4().hex[:10]}"}, headers=reseller).json()
    databases = f"/api/v1/tenants/{tenant['id']}/databases"
    try:
        for name in [n for n in HOSTILE if n]:
            refused = client.post(databases, json={"engine": "mariadb", "name": name}, headers=reseller)
            assert refused.status_code in (400, 422), name
            problem_of(refused)
        assert client.post(databases, json={"engine": "oracle", "name": "shop"}, headers=reseller).status_code == 422
        assert client.get(databases, headers=other).status_code in (403, 404)
        made = client.post(databases, json={"engine": "mariadb", "name": "shop"}, headers=other)
        assert made.status_code in (403, 404)
        assert client.get(databases, headers=reseller).json() == []
        assert client.post(f"{databases}/mariadb/nosuch/rotate", headers=reseller).status_code == 404
        assert client.post(f"/api/v1/tenants/{tenant['id']}/suspend", headers=reseller).status_code == 200
        suspended = client.post(databases, json={"engine": "mariadb", "name": "shop"}, headers=reseller)
        assert suspended.status_code == 409
    finally:
        client.delete(f"/api/v1/tenants/{tenant['id']}", params={"confirm": tenant["name"]}, headers=reseller)
