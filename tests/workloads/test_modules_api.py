"""Modules over HTTP on SQLite and PostgreSQL: upload, analysis, quarantine, ownership, download."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CapturingSink, problem_of
from tests.helpers import Account, signed_in
from tests.workloads.conftest import WAT, wasm
from wcp360.runtime import Runtime

WASM = {"Content-Type": "application/wasm"}


@pytest.fixture
def dev(client: TestClient, rt: Runtime) -> Account:
    return signed_in(client, rt, "dev", ["developer"])


def upload(client: TestClient, account: Account, raw: bytes, name: str = "app", **headers: str) -> dict[str, object]:
    response = client.post(f"/api/v1/modules?name={name}", content=raw, headers={**account.headers, **WASM, **headers})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_upload_returns_analysis_and_stores_by_digest(
    client: TestClient, rt: Runtime, dev: Account, audit_events: CapturingSink
) -> None:
    raw = wasm("trivial")
    body = upload(client, dev, raw)
    assert set(body) >= {"id", "digest", "status", "risk_score", "findings"}
    assert body["digest"] == hashlib.sha256(raw).hexdigest() and body["status"] == "active"
    stored = rt.config.data_dir / "modules" / str(body["digest"])[:2] / str(body["digest"])
    assert stored.read_bytes() == raw and stat.S_IMODE(stored.stat().st_mode) == 0o600
    again = upload(client, dev, raw)
    assert again["version"] == 2 and again["digest"] == body["digest"]
    assert len(list(stored.parent.iterdir())) == 1  # same bytes, stored once
    event = audit_events.of("module_upload")[0]
    assert event.resource_id == body["id"] and event.details["size"] == len(raw)


def test_text_format_and_multipart(client: TestClient, dev: Account) -> None:
    text = client.post(
        "/api/v1/modules?name=wat",
        content=WAT["trivial"].encode(),
        headers={**dev.headers, "Content-Type": "text/plain"},
    )
    assert text.status_code == 201
    form = client.post(
        "/api/v1/modules", files={"module": ("form.wasm", wasm("trivial"), "application/wasm")}, headers=dev.headers
    )
    assert form.status_code == 201 and form.json()["name"] == "form"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\0asm\x01\0\0\0\x01\x05", "not a valid WebAssembly module"),
        (b"MZ\x90\0garbage", "bad magic"),
        (wasm("trivial")[:-3], "not a valid WebAssembly module"),
        (b"", "bad magic"),
    ],
)
def test_bad_modules_are_refused_and_nothing_is_stored(
    client: TestClient, rt: Runtime, dev: Account, raw: bytes, fragment: str
) -> None:
    response = client.post("/api/v1/modules?name=bad", content=raw, headers={**dev.headers, **WASM})
    assert response.status_code == 422 and fragment in problem_of(response)["detail"]
    assert not (rt.config.data_dir / "modules").exists() or not any((rt.config.data_dir / "modules").rglob("*"))
    assert client.get("/api/v1/modules", headers=dev.headers).json()["total"] == 0


def test_wrong_media_type_and_missing_name(client: TestClient, dev: Account) -> None:
    assert (
        client.post(
            "/api/v1/modules?name=x", content=b"x", headers={**dev.headers, "Content-Type": "image/png"}
        ).status_code
        == 415
    )
    assert client.post("/api/v1/modules", content=wasm("trivial"), headers={**dev.headers, **WASM}).status_code == 422
    assert (
        client.post("/api/v1/modules?name=../etc", content=wasm("trivial"), headers={**dev.headers, **WASM}).status_code
        == 422
    )


def test_hostile_module_is_quarantined_and_only_an_admin_releases_it(
    client: TestClient, rt: Runtime, dev: Account, audit_events: CapturingSink
) -> None:
    body = upload(client, dev, wasm("memory_bomb"), name="bomb")
    assert body["status"] == "quarantined" and body["risk_score"] == 8
    assert {f["rule"] for f in body["findings"]} == {"detect_infinite_loops", "detect_memory_leaks"}  # type: ignore[union-attr,index]
    assert client.post(f"/api/v1/modules/{body['id']}/release", headers=dev.headers).status_code == 403
    admin = signed_in(client, rt, "boss", ["admin"])
    quarantined = client.get("/api/v1/modules?status=quarantined", headers=admin.headers).json()
    assert [m["id"] for m in quarantined["items"]] == [body["id"]]
    released = client.post(f"/api/v1/modules/{body['id']}/release", headers=admin.headers)
    assert released.status_code == 200 and released.json()["status"] == "active"
    assert "module_release" in audit_events.actions()


def test_ownership(client: TestClient, rt: Runtime, dev: Account) -> None:
    mine = upload(client, dev, wasm("trivial"))
    other = signed_in(client, rt, "other", ["developer"])
    upload(client, other, wasm("bounded_loop"), name="theirs")
    assert [m["name"] for m in client.get("/api/v1/modules", headers=dev.headers).json()["items"]] == ["app"]
    for method, path in (("GET", ""), ("GET", "/download")):
        assert client.request(method, f"/api/v1/modules/{mine['id']}{path}", headers=other.headers).status_code == 403
    tenant = signed_in(client, rt, "tenant1", ["tenant"])
    assert client.delete(f"/api/v1/modules/{mine['id']}", headers=tenant.headers).status_code == 403
    admin = signed_in(client, rt, "boss", ["admin"])
    assert client.get("/api/v1/modules", headers=admin.headers).json()["total"] == 2


def test_download_and_delete(client: TestClient, rt: Runtime, dev: Account, audit_events: CapturingSink) -> None:
    owner = signed_in(client, rt, "owner", ["tenant"])  # tenants may delete their modules
    raw = wasm("bounded_loop")
    body = upload(client, owner, raw)
    download = client.get(f"/api/v1/modules/{body['id']}/download", headers=owner.headers)
    assert download.content == raw and download.headers["content-type"] == "application/wasm"
    assert client.delete(f"/api/v1/modules/{body['id']}", headers=owner.headers).status_code == 204
    assert client.get(f"/api/v1/modules/{body['id']}", headers=owner.headers).status_code == 404
    deleted = audit_events.of("module_delete")[0]
    assert deleted.resource_id == body["id"] and deleted.resource_type == "module"


def test_viewer_cannot_upload(client: TestClient, rt: Runtime) -> None:
    viewer = signed_in(client, rt, "looker", ["viewer"])
    response = client.post("/api/v1/modules?name=x", content=wasm("trivial"), headers={**viewer.headers, **WASM})
    assert response.status_code == 403


def test_module_events_put_module_id_at_top_level(rt: Runtime, tmp_path: Path) -> None:
    from wcp360 import audit
    from wcp360.audit.setup import audit_file, trail_scope
    from wcp360.audit.tail import iter_events

    with trail_scope(rt.config, rt.db):
        audit.record("module_execute", actor_id="u", resource_type="module", resource_id="m-1")
    directory, name, _ = audit_file(rt.config)
    assert [e.get("module_id") for e in iter_events(directory, name)] == ["m-1"]
