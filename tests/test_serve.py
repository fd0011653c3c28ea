"""`wcp360 serve` for real: first-start bootstrap, private files, loopback-only plain HTTP."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dropping import serve_command, serve_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`wcp360 serve` in production mode (the default). Run by root, as in production, it drops to
    a service user (tests/dropping.py) that owns the data directory: a test starting one uses the
    `serving_as_production_does` fixture."""

    def __init__(self, tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tmp_path / "data"
        if os.geteuid() == 0:
            user = (tmp_path / "service-user").read_text()
            etc = tmp_path / "etc"
            etc.mkdir(mode=0o700, exist_ok=True)
            # The test's own settings stay; the server runs as the service user.
            settings = etc / "wcp360.yml"
            text = settings.read_text() if settings.exists() else ""
            if f"user: {user}\n" not in text:
                settings.write_text(text + f"user: {user}\n")
            settings.chmod(0o600)
            self.data.mkdir(mode=0o700, exist_ok=True)
            account = pwd.getpwnam(user)
            os.chown(self.data, account.pw_uid, account.pw_gid)
        env = {
            **os.environ,
            "WCP360_DATA_DIR": str(self.data),
            "WCP360_CONFIG_DIR": str(tmp_path / "etc"),
            **serve_env(),
            **(extra_env or {}),
        }
        env.pop("WCP360_ADMIN_PASSWORD", None) if "WCP360_ADMIN_PASSWORD" not in (extra_env or {}) else None
        self.log = tmp_path / "server.log"
        self.process = subprocess.Popen(
            [*serve_command(), "serve", "--listen", f"127.0.0.1:{self.port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("server did not start")

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(timeout=30)
        return self.log.read_text()


pytestmark = pytest.mark.usefixtures("serving_as_production_does")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    yield running
    if running.process.poll() is None:
        running.stop()


def _printed_password(log: str) -> str:
    lines = [line for line in log.splitlines() if "password (shown only now)" in line]
    assert len(lines) == 1, log
    return lines[0].rsplit(": ", 1)[1].strip()


def test_first_start_creates_admin_and_prints_password_once(server: Server, tmp_path: Path) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert "server" not in response.headers
    log = server.stop()
    password = _printed_password(log)
    # A second start on the same data dir creates nothing and prints nothing.
    again = Server(tmp_path)
    second_log = again.stop()
    assert "shown only now" not in second_log
    assert password not in second_log
    # The printed password signs in (the admin must then enrol 2FA before acting).
    third = Server(tmp_path)
    try:
        login = httpx.post(f"{third.url}/api/v1/auth/login", json={"username": "admin", "password": password})
        assert login.status_code == 200
        me = httpx.get(
            f"{third.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
        assert me.json()["mfa_pending"] is True
    finally:
        third.stop()


def test_files_and_directories_are_private(server: Server) -> None:
    server.stop()
    for path in [server.data, *server.data.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {mode:04o}"
    audit_log = (server.data / "log" / "audit.log").read_text()
    assert '"action":"service_start"' in audit_log and '"action":"service_stop"' in audit_log
    assert '"action":"config_change"' in audit_log  # every start compares the config with the last


def test_admin_password_from_environment(tmp_path: Path) -> None:
    chosen = "Env!Chosen#Passw0rd"
    running = Server(tmp_path, {"WCP360_ADMIN_PASSWORD": chosen})
    try:
        login = httpx.post(f"{running.url}/api/v1/auth/login", json={"username": "admin", "password": chosen})
        assert login.status_code == 200
    finally:
        log = running.stop()
    assert "shown only now" not in log and chosen not in log


def test_plain_http_off_loopback_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "WCP360_DATA_DIR": str(tmp_path / "d"), "WCP360_CONFIG_DIR": str(tmp_path / "etc")}
    result = subprocess.run(
        [sys.executable, "-m", "wcp360.cli", "serve", "--listen", "0.0.0.0:8443"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: refusing plain HTTP on 0.0.0.0: enable TLS in tls.yml or listen on 127.0.0.1 / ::1"
    )
