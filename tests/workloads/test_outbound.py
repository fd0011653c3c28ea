"""The outbound HTTP host function: only allowed_hosts, checked in the API process, no redirects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import write_files
from tests.helpers import signed_in
from tests.workloads.test_execution_api import upload
from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.runtime import Runtime
from wcp360.workloads.engine.outbound import Allowed, OutboundDenied, check, resolve

# Calls http_get(URL) into a 4 KiB buffer; writes the body to stdout on success, else exits with 1
# for a failed request or status // 100 (3 for a redirect, 4 for not found).
FETCHER = """(module
  (import "wcp360" "http_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{url}")
  (func (export "_start") (local $n i32)
    (local.set $n (call $get (i32.const 1024) (i32.const {length}) (i32.const 4096) (i32.const 4096)))
    (if (i32.eq (local.get $n) (i32.const -1)) (then (call $exit (i32.const 1))))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (call $exit (i32.div_u (i32.sub (i32.const 0) (local.get $n)) (i32.const 100)))))
    (i32.store (i32.const 0) (i32.const 4096)) (i32.store (i32.const 4) (local.get $n))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def fetcher(url: str) -> str:
    return FETCHER.replace("{url}", url).replace("{length}", str(len(url)))


class Handler(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        Handler.seen.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://198.51.100.7/elsewhere")
            self.end_headers()
            return
        body = b"pong" if self.path == "/ping" else b"missing"
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Handler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def networked(config_dir: Path, tmp_path: Path, web: str) -> Iterator[tuple[TestClient, Runtime]]:
    sandbox = f"""sandbox:
  precompile: false
  module_capabilities:
    dev/fetcher:
      network_access: true
      allowed_hosts: ["{web}"]
"""
    write_files(config_dir, {"sandbox.yml": sandbox})
    rt = Runtime.open(load_config(config_dir, tmp_path / "net-data"))
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            yield client, rt
    finally:
        rt.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_allowed_host_is_reached_and_nothing_else(networked: tuple[TestClient, Runtime], web: str) -> None:
    client, rt = networked
    dev = signed_in(client, rt, "dev", ["developer"])

    def run(name: str, url: str) -> dict[str, object]:
        module_id = upload(client, dev, fetcher(url), name)
        response = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers)
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()
        return result

    ok = run("fetcher", f"{web}/ping")
    assert ok["outcome"] == "ok" and ok["stdout"] == "pong"
    assert run("fetcher", f"{web}/nothing-here")["exit_code"] == 4
    # A redirect is handed back, never followed.
    redirected = run("fetcher", f"{web}/redirect")
    assert redirected["exit_code"] == 3 and Handler.seen[-1] == "/redirect"
    # Another port, another scheme, another host: refused before any connection is made.
    port = int(web.rsplit(":", 1)[1])
    for url in (f"http://127.0.0.1:{port + 1}/ping", f"https://127.0.0.1:{port}/ping", f"http://localhost:{port}/ping"):
        denied = run("fetcher", url)
        assert denied["outcome"] == "capability_denied" and "allowed_hosts" in str(denied["message"]), url
    # The same module under a name without network_access is denied outright.
    other = run("other", f"{web}/ping")
    assert other["outcome"] == "capability_denied" and "network_access" in str(other["message"])
    assert Handler.seen == ["/ping", "/nothing-here", "/redirect"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/x", ["api.example.com"]),
        ("https://api.example.com:443/x?q=1", ["api.example.com"]),
        ("http://data.example.com:8080/", ["http://data.example.com:8080"]),
        ("https://API.Example.com/x", ["api.example.com"]),
    ],
)
def test_matching_urls(url: str, allowed: list[str]) -> None:
    assert check(url, allowed).host == urlhost(url)


def urlhost(url: str) -> str:
    return url.split("://")[1].split("/")[0].split(":")[0].lower()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://api.example.com/x", ["api.example.com"]),  # entry means https
        ("https://api.example.com:8443/x", ["api.example.com"]),
        ("https://evil.example.com/x", ["api.example.com"]),
        ("https://api.example.com.evil.test/x", ["api.example.com"]),
        ("https://user:pw@api.example.com/x", ["api.example.com"]),
        ("ftp://api.example.com/x", ["api.example.com"]),
        ("file:///etc/passwd", ["api.example.com"]),
        ("https://api.example.com:99999/x", ["api.example.com"]),
        ("https:///nohost", ["api.example.com"]),
    ],
)
def test_refused_urls(url: str, allowed: list[str]) -> None:
    with pytest.raises(OutboundDenied):
        check(url, allowed)


def test_hostnames_resolving_to_private_addresses_are_refused() -> None:
    # localhost is listed by name: it still resolves to loopback, which only an IP entry allows.
    target = check("http://localhost:8080/", ["http://localhost:8080"])
    with pytest.raises(OutboundDenied, match="non-public"):
        resolve(target)
    assert resolve(check("http://127.0.0.1:8080/", ["http://127.0.0.1:8080"])) == "127.0.0.1"


@pytest.mark.parametrize("entry", ["ftp://host", "https://host/path", "://", ""])
def test_bad_allowed_hosts_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        Allowed.parse(entry)


def test_bad_allowed_hosts_entry_is_a_config_error(tmp_path: Path) -> None:
    from wcp360.config.errors import ConfigError

    sandbox = 'sandbox:\n  module_capabilities:\n    m:\n      allowed_hosts: ["ftp://files.example.com"]\n'
    etc = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "sandbox.yml": sandbox})
    with pytest.raises(ConfigError) as error:
        load_config(etc, tmp_path / "data")
    assert "sandbox.yml" in str(error.value) and "allowed_hosts" in str(error.value)


hosts = st.sampled_from(["api.example.com", "data.example.com", "127.0.0.1", "evil.test", "api.example.com.evil.test"])


@given(
    entries=st.lists(
        st.tuples(st.sampled_from(["", "http://", "https://"]), hosts, st.sampled_from(["", ":80", ":443", ":8080"])),
        max_size=4,
    ),
    url=st.tuples(
        st.sampled_from(["http", "https", "ftp", "HTTPS"]), hosts, st.sampled_from(["", ":80", ":443", ":8080", ":x"])
    ),
    path=st.text(max_size=20),
)
def test_a_granted_url_always_equals_some_entry(
    entries: list[tuple[str, str, str]], url: tuple[str, str, str], path: str
) -> None:
    allowed = [f"{scheme}{host}{port}" for scheme, host, port in entries]
    text = f"{url[0]}://{url[1]}{url[2]}/{path}"
    try:
        target = check(text, allowed)
    except (OutboundDenied, ValueError):
        return
    assert Allowed(target.scheme, target.host, target.port) in {Allowed.parse(entry) for entry in allowed}
