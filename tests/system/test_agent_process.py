"""`wcp360 agent` as its own root process, and the panel reaching it through its socket: the verbs
run in the agent, and their events land on the same verified trail as the panel's."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_admin_cli import wcp360
from tests.dropping import service_user
from tests.helpers import HOST, TEST_UID_MAX, TEST_UID_MIN, make_user
from wcp360.config import load_config
from wcp360.runtime import Runtime
from wcp360.system import accounts
from wcp360.system.client import SocketAgent


@pytest.fixture
def installation() -> Iterator[tuple[dict[str, str], Path]]:
    root = Path(tempfile.mkdtemp(prefix="wcp360-agent-", dir="/tmp"))
    root.chmod(0o755)
    etc = root / "etc"
    etc.mkdir(mode=0o700)
    with service_user() as user:
        (etc / "wcp360.yml").write_text(
            f"mode: dev\nuser: {user}\n"
            f"agent:\n  mode: socket\n  socket: {root / 'run' / 'agent.sock'}\n  state_dir: {root / 'agent-state'}\n"
            f"tenants:\n  home_root: {root / 'www'}\n  archive_dir: {root / 'archives'}\n"
            f"  uid_min: {TEST_UID_MIN}\n  uid_max: {TEST_UID_MAX}\n"
        )
        (etc / "wcp360.yml").chmod(0o600)
        yield {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(root / "data")}, root
    # A test cut short leaves its tenants' users behind: homes here are outside pytest's
    # directory, so the suite's own clean-up would not see them.
    for entry in pwd.getpwall():
        if entry.pw_gecos == "WCP360 tenant" and entry.pw_dir.startswith(str(root)):
            accounts.kill_all(entry.pw_uid)
            accounts.remove_user(entry.pw_name)
    shutil.rmtree(root)


def test_the_panel_creates_tenants_through_the_agent_process(installation: tuple[dict[str, str], Path]) -> None:
    env, root = installation
    config = load_config(Path(env["WCP360_CONFIG_DIR"]), Path(env["WCP360_DATA_DIR"]))
    rt = Runtime.open(config)  # the panel's state exists before the agent writes to its trail
    agent = subprocess.Popen(
        [sys.executable, "-m", "wcp360.cli", "agent"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert agent.stdout is not None
        ready = agent.stdout.readline().decode()  # printed once the socket listens
        assert "listening on" in ready, agent.stderr.read().decode() if agent.stderr else ""
        assert isinstance(rt.agent, SocketAgent)
        from wcp360.audit.setup import trail_scope

        with trail_scope(config, rt.db):
            make_user(rt, "owner", ["reseller"])
            name = f"wt{uuid.uuid4().hex[:8]}"
            tenant = rt.tenants.create(HOST, name, owner="owner")
            assert pwd.getpwnam(name).pw_uid == tenant.uid
            rt.tenants.suspend(HOST, uuid.UUID(tenant.id))
            rt.tenants.resume(HOST, uuid.UUID(tenant.id))
            rt.tenants.delete(HOST, uuid.UUID(tenant.id), confirm=name)
            assert not (root / "www" / name).exists()
    finally:
        rt.close()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait() == 0
    trail = "".join(p.read_text() for p in (root / "data" / "log").glob("audit.log*"))
    for action in ("agent_start", "agent_tenant_create", "agent_tenant_suspend", "agent_tenant_delete", "agent_stop"):
        assert f'"action":"{action}"' in trail.replace(" ", ""), action
    assert '"channel":"agent"' in trail.replace(" ", "")
    verified = wcp360(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _start_agent(env: dict[str, str]) -> subprocess.Popen[bytes]:
    agent = subprocess.Popen(
        [sys.executable, "-m", "wcp360.cli", "agent"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert agent.stdout is not None
    ready = agent.stdout.readline().decode()  # printed once the socket listens
    assert "listening on" in ready, agent.stderr.read().decode() if agent.stderr else ""
    return agent


def _running(env: dict[str, str], tenant: str) -> dict[str, Any]:
    """The tenant's one process once it runs (its jail has started); the bound only turns a hang
    into a failure."""
    give_up = time.monotonic() + 300
    while time.monotonic() < give_up:
        listed = json.loads(wcp360(env, "tenant", "process", "list", tenant, "--format", "json").stdout)
        process: dict[str, Any] = listed["processes"][0]
        if process["status"] == "running":
            return process
    raise AssertionError(f"{tenant}'s process never ran: {process}")


def _stop_agent(agent: subprocess.Popen[bytes]) -> None:
    agent.send_signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_the_cli_runs_processes_that_outlive_it_and_survive_the_agents_restart(
    installation: tuple[dict[str, str], Path],
) -> None:
    env, root = installation
    config = load_config(Path(env["WCP360_CONFIG_DIR"]), Path(env["WCP360_DATA_DIR"]))
    rt = Runtime.open(config)
    make_user(rt, "owner", ["reseller"])
    rt.close()
    name = f"wt{uuid.uuid4().hex[:8]}"
    agent = _start_agent(env)
    try:
        assert wcp360(env, "tenant", "create", name, "--owner", "owner").returncode == 0
        started = wcp360(env, "tenant", "process", "start", name, "web", "--", "sleep", "1000")
        assert started.returncode == 0 and "starting" in started.stdout, started.stderr
        listed = _running(env, name)
        first_pid = listed["pid"]
        _stop_agent(agent)  # the agent stopping stops the tenant's processes with it
        assert not Path(f"/proc/{first_pid}").exists()
        agent = _start_agent(env)  # and starting again brings back what was running
        assert _running(env, name)["pid"] != first_pid
        assert "removed" in wcp360(env, "tenant", "process", "remove", name, "web").stdout
        assert wcp360(env, "tenant", "delete", name, "--confirm", name).returncode == 0
    finally:
        _stop_agent(agent)
    assert not (root / "www" / name).exists()
