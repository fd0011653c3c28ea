"""Sites through the API with the in-process agent (as root) and the real nginx and clamd:
owned through the tenant, problem+json for every bad input with nothing changed, uploads with
their limits and the malware scan, audited; the certificate's expiry in /metrics."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.clamd_server import EICAR, clamd_server
from tests.conftest import CapturingSink, problem_of, write_files
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN, signed_in
from tests.pki import free_port
from wcp360.runtime import Runtime
from wcp360.system.client import InProcessAgent


@pytest.fixture(scope="module")
def scanner() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="wcp360-clamd-"))
    with clamd_server(directory) as socket:
        yield socket
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def config_dir(config_dir: Path, scanner: Path) -> Iterator[Path]:
    """The suite's configuration with websites: homes nginx's workers can pass through, nginx on
    loopback ports, self-signed certificates (Pebble is exercised in test_websites), scanning on."""
    web = Path(tempfile.mkdtemp(prefix="wcp360-web-", dir="/var/tmp"))
    os.chmod(web, 0o755)  # noqa: S103 - traversable, as /srv/www is
    wcp360_yml = (
        "mode: dev\n"
        "tenants:\n"
        f"  home_root: {web / 'www'}\n"
        f"  archive_dir: {web / 'archives'}\n"
        f"  uid_min: {TEST_UID_MIN}\n"
        f"  uid_max: {TEST_UID_MAX}\n"
        "  websites:\n"
        "    listen_addresses: ['127.0.0.1']\n"
        f"    http_port: {free_port()}\n"
        f"    https_port: {free_port()}\n"
        "    panel_hostname: panel.example.test\n"
        "    acme: {enabled: false}\n"
        "    uploads:\n"
        "      max_size: 1MiB\n"
        "      max_unpacked: 4MiB\n"
        f"      scan: {{enabled: true, clamd_socket: {scanner}}}\n"
    )
    write_files(config_dir, {"wcp360.yml": wcp360_yml})
    yield config_dir
    shutil.rmtree(web, ignore_errors=True)


@pytest.fixture
def reseller(client: TestClient, rt: Runtime) -> Iterator[tuple[dict[str, str], dict[str, str], str]]:
    headers = signed_in(client, rt, "res", ["reseller"]).headers
    tenant = client.post("/api/v1/tenants", json={"name": f"wt{uuid.uuid4().hex[:10]}"}, headers=headers).json()
    try:
        yield headers, tenant, f"/api/v1/tenants/{tenant['id']}/sites"
    finally:
        client.delete(f"/api/v1/tenants/{tenant['id']}", params={"confirm": tenant["name"]}, headers=headers)
        assert isinstance(rt.agent, InProcessAgent)
        rt.agent.dispatcher.host.websites.nginx.stop()


UPLOAD = {"Content-Type": "application/octet-stream"}


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_create_upload_list_delete(
    client: TestClient, rt: Runtime, reseller: tuple, audit_events: CapturingSink
) -> None:  # type: ignore[type-arg]
    headers, tenant, sites = reseller
    domain = f"{tenant['name']}.example.test"
    made = client.post(sites, json={"name": "www", "domains": [f"Www.{domain}"]}, headers=headers)
    assert made.status_code == 201, made.text
    site = made.json()
    assert site["domains"] == [f"www.{domain}"] and site["certificate"]["status"] == "self_signed"
    assert site["document_root"].endswith("/public/www") and site["serving"] is True
    archive = zipped({"index.html": b"<h1>hi</h1>", "css/a.css": b"a{}"})
    uploaded = client.put(f"{sites}/www/files", params={"format": "zip"}, content=archive, headers=UPLOAD | headers)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["files"] == 2 and uploaded.json()["scanned"] is True
    one = client.put(
        f"{sites}/www/files", params={"path": "robots.txt"}, content=b"User-agent: *", headers=UPLOAD | headers
    )
    assert one.status_code == 200 and one.json()["files"] == 1
    assert (Path(site["document_root"]) / "robots.txt").read_bytes() == b"User-agent: *"
    assert [s["name"] for s in client.get(sites, headers=headers).json()] == ["www"]
    assert client.get(f"{sites}/www", headers=headers).json()["domains"] == [f"www.{domain}"]
    scrape = client.get("/metrics", headers=headers)
    assert f'certificate_expiry_seconds{{domain="www.{domain}"}}' in scrape.text
    wrong = client.delete(f"{sites}/www", params={"confirm": "wwx"}, headers=headers)
    assert wrong.status_code == 422
    gone = client.delete(f"{sites}/www", params={"confirm": "www"}, headers=headers)
    assert gone.status_code == 200 and client.get(sites, headers=headers).json() == []
    assert {"site_create", "site_upload", "site_delete"} <= set(audit_events.actions())


def test_bad_input_is_refused_with_problem_json_and_changes_nothing(
    client: TestClient,
    rt: Runtime,
    reseller: tuple,
    audit_events: CapturingSink,  # type: ignore[type-arg]
) -> None:
    headers, tenant, sites = reseller
    other = signed_in(client, rt, "other", ["reseller"]).headers
    domain = f"{tenant['name']}.example.test"
    assert client.post(sites, json={"name": "www", "domains": [domain]}, headers=headers).status_code == 201
    bad_sites = [
        ({"name": "x", "domains": ["not a domain"]}, 422),
        ({"name": "x", "domains": ["127.0.0.1"]}, 422),
        ({"name": "x", "domains": [domain.upper()]}, 409),  # taken, in another spelling
        ({"name": "x", "domains": ["panel.example.test"]}, 409),  # the panel's own hostname
        ({"name": "www", "domains": [f"b.{domain}"]}, 409),
        ({"name": "x", "domains": [f"c.{domain}"], "root": "../../etc"}, 422),
        ({"name": "x", "domains": [f"c.{domain}"], "kind": "php"}, 422),  # no process
        ({"name": "X;", "domains": [f"c.{domain}"]}, 422),
        ({"name": "x", "domains": [f'c.{domain}";\n}}']}, 422),
    ]
    for body, status in bad_sites:
        refused = client.post(sites, json=body, headers=headers)
        assert refused.status_code == status, (body, refused.text)
        problem_of(refused)
    assert client.get(sites, headers=other).status_code in (403, 404)
    assert client.post(sites, json={"name": "y", "domains": [f"y.{domain}"]}, headers=other).status_code in (403, 404)
    assert client.put(f"{sites}/www/files", params={"path": "a"}, content=b"x", headers=UPLOAD | other).status_code in (
        403,
        404,
    )
    root = Path(client.get(f"{sites}/www", headers=headers).json()["document_root"])
    before = sorted(root.rglob("*"))
    bad_uploads = [
        ({"format": "zip"}, zipped({"../../escape.txt": b"x"}), "leave the document root"),
        ({"format": "zip"}, zipped({"bomb": b"\0" * (8 * 1024**2)}), "max_unpacked"),
        ({"path": "../x.txt"}, b"x", "leave the document root"),
        ({"path": "x.txt"}, b"x" * (1024**2 + 1), "max_size"),
        ({"format": "zip"}, zipped({"ok.txt": b"ok", "bad.txt": EICAR}), "malware"),
        ({"format": "tar"}, b"not a tar", "not a tar"),
        ({"format": "rar"}, b"x", ""),
    ]
    for params, content, reason in bad_uploads:
        refused = client.put(f"{sites}/www/files", params=params, content=content, headers=UPLOAD | headers)
        assert refused.status_code in (413, 422), (params, refused.text)
        assert reason in problem_of(refused)["detail"] or refused.status_code == 413 or not reason
    assert sorted(root.rglob("*")) == before
    assert "site_upload_infected" in audit_events.actions()
    assert not list((rt.config.data_dir / "uploads").iterdir())  # nothing left in the spool
    nosuch = client.put(f"{sites}/nosuch/files", params={"path": "a.txt"}, content=b"x", headers=UPLOAD | headers)
    assert nosuch.status_code == 404
