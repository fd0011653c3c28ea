"""A tenant's processes through the API: a real php-fpm pool started in the tenant's jail answers
FastCGI, its usage is read from the tenant's cgroups; other owners, bad input and suspended
tenants are refused with problem+json and change nothing."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import CapturingSink, problem_of
from tests.dropping import searchable
from tests.fastcgi import request as fastcgi
from tests.helpers import signed_in
from tests.system.test_supervise import wait_until
from wcp360.runtime import Runtime

PAGE = "<?php echo 'served by ', posix_geteuid(), PHP_EOL;"


def test_a_php_pool_through_the_api(
    client: TestClient, rt: Runtime, tmp_path: Path, audit_events: CapturingSink
) -> None:
    reseller = signed_in(client, rt, "res", ["reseller"]).headers
    name = f"wt{uuid.uuid4().hex[:10]}"
    tenant = client.post("/api/v1/tenants", json={"name": name}, headers=reseller).json()
    processes = f"/api/v1/tenants/{tenant['id']}/processes"
    home = Path(tenant["home"])
    (home / "public" / "index.php").write_text(PAGE)
    os.chown(home / "public" / "index.php", tenant["uid"], tenant["gid"])
    with searchable(home.parent):
        started = client.post(processes, json={"name": "php", "runtime": "php"}, headers=reseller)
        assert started.status_code == 201, started.text
        socket_path = started.json()["socket"]
        wait_until(lambda: Path(socket_path).exists())
        out, _ = fastcgi(socket_path, str(home / "public" / "index.php"))
        assert f"served by {tenant['uid']}" in out.decode()
        listing = client.get(processes, headers=reseller).json()
        assert [p["name"] for p in listing["processes"]] == ["php"]
        assert listing["processes"][0]["status"] == "running"
        assert listing["usage"]["pids"] >= 2 and listing["usage"]["memory_bytes"] > 0
        assert listing["usage"]["cpu_seconds"] > 0
        scraped = client.get("/metrics", headers=reseller).text
        assert f'tenant_memory_bytes{{tenant="{name}"}}' in scraped
        assert f'tenant_processes{{status="running",tenant="{name}"}} 1.0' in scraped
        stopped = client.post(f"{processes}/php/stop", headers=reseller)
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        assert client.delete(f"{processes}/php", headers=reseller).status_code == 204
        assert client.get(processes, headers=reseller).json()["processes"] == []
    actions = audit_events.actions()
    assert {"tenant_process_start", "tenant_process_stop", "tenant_process_remove"} <= set(actions)
    assert {"agent_process_start", "agent_process_control"} <= set(actions)


def test_refusals_change_nothing(client: TestClient, rt: Runtime) -> None:
    reseller = signed_in(client, rt, "res", ["reseller"]).headers
    other = signed_in(client, rt, "other", ["reseller"]).headers
    tenant = client.post("/api/v1/tenants", json={"name": f"wt{uuid.uuid4().hex[:10]}"}, headers=reseller).json()
    processes = f"/api/v1/tenants/{tenant['id']}/processes"
    bad_bodies = [
        {"name": "php", "runtime": "php", "argv": ["sh"]},  # php takes no argv
        {"name": "web", "runtime": "node"},  # node needs one
        {"name": "Bad Name", "runtime": "static", "argv": ["true"]},
        {"name": "web", "runtime": "ruby", "argv": ["true"]},
        {"name": "web", "runtime": "static", "argv": ["a\x00b"]},
        {"name": "web", "runtime": "static", "argv": ["x"] * 65},
        {"name": "web", "runtime": "static", "argv": ["true"], "extra": 1},
    ]
    for body in bad_bodies:
        refused = client.post(processes, json=body, headers=reseller)
        assert refused.status_code in (400, 422), body
        problem_of(refused)
    # Another reseller cannot see or start anything of this tenant.
    assert client.get(processes, headers=other).status_code in (403, 404)
    start = {"name": "web", "runtime": "static", "argv": ["sleep", "1000"]}
    assert client.post(processes, json=start, headers=other).status_code in (403, 404)
    assert client.post(f"{processes}/nosuch/stop", headers=reseller).status_code == 404
    assert client.post(f"{processes}/web/explode", headers=reseller).status_code == 422
    assert client.get(processes, headers=reseller).json()["processes"] == []
    # A suspended tenant starts nothing.
    assert client.post(f"/api/v1/tenants/{tenant['id']}/suspend", headers=reseller).status_code == 200
    suspended = client.post(processes, json=start, headers=reseller)
    assert suspended.status_code == 409 and "suspended" in problem_of(suspended)["detail"]
