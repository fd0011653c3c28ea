"""`wcp360 serve` started as root drops to its service user before serving, as /proc shows while it
serves; and that user cannot read what the panel must not (seed 000 "Panel Layer: cannot read raw
database files directly", the agent's state, the root-only configuration)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dropping import SITE_PACKAGES, SRC, SYSTEM_PYTHON, searchable
from tests.dropping import service_user as making_service_user
from tests.test_serve import free_port
from wcp360.privileges import drop_to, service_account


@pytest.fixture
def service_user() -> Iterator[str]:
    with making_service_user() as name:
        yield name


@pytest.fixture
def traversable() -> Iterator[None]:
    with searchable():
        yield


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory every user may traverse (pytest's are root's alone), as /var/lib is."""
    path = Path(tempfile.mkdtemp(prefix="wcp360-drop-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _children(pid: int) -> list[int]:
    found = []
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            parts = Path(path).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(parts[1]) == pid:
            found.append(int(path.split("/")[2]))
    return found


def test_serve_as_root_drops_everything_before_serving(service_user: str, reachable: Path, traversable: None) -> None:
    account = pwd.getpwnam(service_user)
    etc, data = reachable / "etc", reachable / "data"
    etc.mkdir(mode=0o700)
    (etc / "wcp360.yml").write_text(f"mode: dev\nuser: {service_user}\n")
    data.mkdir(mode=0o700)
    os.chown(data, account.pw_uid, account.pw_gid)
    port = free_port()
    log = reachable / "serve.log"
    env = {
        **os.environ,
        "WCP360_CONFIG_DIR": str(etc),
        "WCP360_DATA_DIR": str(data),
        "PYTHONPATH": f"{SRC}:{SITE_PACKAGES}",
    }
    env.pop("WCP360_ADMIN_PASSWORD", None)
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(SYSTEM_PYTHON), "-m", "wcp360.cli", "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        while True:  # readiness, not a deadline: the server answers or exits
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                continue
        for pid in [process.pid, *_children(process.pid)]:
            status = _status(pid)
            assert status["Uid"].split() == [str(account.pw_uid)] * 4, (pid, status["Uid"])
            assert status["Gid"].split() == [str(account.pw_gid)] * 4
            assert status["Groups"] == ""
            for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(status[capabilities], 16) == 0, (pid, capabilities, status[capabilities])
            assert status["NoNewPrivs"] == "1"
        # What it made after the drop is its own.
        assert os.stat(data / "wcp360.db").st_uid == account.pw_uid
    finally:
        process.terminate()
        process.wait()
    started = [p.read_text() for p in (data / "log").iterdir() if p.is_file() and "service_start" in p.read_text()]
    assert started and "dropped from root" in started[-1]


def test_production_refuses_to_serve_as_root_without_its_user(reachable: Path) -> None:
    etc = reachable / "etc"
    etc.mkdir(mode=0o700)
    (etc / "wcp360.yml").write_text("mode: production\nuser: wtnosuchuser\n")
    (etc / "wcp360.yml").chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "wcp360.cli", "serve", "--listen", f"127.0.0.1:{free_port()}"],
        env={**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(reachable / "data")},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "refusing to serve as root: no user 'wtnosuchuser'" in result.stderr, result.stderr


def test_the_service_user_cannot_read_what_the_panel_must_not(service_user: str, tmp_path: Path) -> None:
    account = service_account(service_user)
    forbidden = [
        "/etc/shadow",
        *glob.glob("/var/lib/postgresql/*/main/PG_VERSION"),
        *glob.glob("/var/lib/mysql/mysql/*")[:1],
    ]
    agent_state = tmp_path / "agent-state"
    agent_state.mkdir(mode=0o700)
    (agent_state / "tenants.json").write_text("{}")
    config = tmp_path / "etc"
    config.mkdir(mode=0o700)
    (config / "security.yml").write_text("secret: x\n")
    forbidden += [str(agent_state / "tenants.json"), str(config / "security.yml")]
    assert len(forbidden) >= 4, forbidden  # the database files exist on this machine
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, as the panel would be
        os.close(read)
        drop_to(account)
        opened = []
        for path in forbidden:
            try:
                with open(path, "rb"):
                    opened.append(path)
            except PermissionError:
                pass
        os.write(write, "\n".join(opened).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        opened = answer.read()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert opened == "", f"the panel's user could open: {opened}"
