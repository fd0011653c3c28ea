"""Tenants' supervised processes for real: a php-fpm pool and a Node app serving from inside their
jails, restarts with backoff, logs rotated and written safely into a directory the tenant
controls, suspension and the agent's own restart."""

from __future__ import annotations

import http.client
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.dropping import searchable
from tests.fastcgi import request as fastcgi
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from wcp360.config.server import FirewallConfig, ProcessesConfig, TenantLimits, TenantsConfig
from wcp360.system.host import AgentFailure, HostAgent
from wcp360.system.protocol import (
    ProcessControl,
    ProcessList,
    ProcessSpec,
    ProcessStart,
    ProcessState,
    TenantCreate,
    TenantDelete,
    TenantResume,
    TenantSuspend,
)

NODE_APP = """
const http = require('http');
const fs = require('fs');
try { fs.unlinkSync(process.env.SOCKET); } catch (e) {}
http.createServer((req, res) => {
  let other = 'unreadable';
  try { other = fs.readFileSync(process.argv[2], 'utf8'); } catch (e) {}
  res.end(JSON.stringify({uid: process.getuid(), url: req.url, other}));
}).listen(process.env.SOCKET, () => console.log('listening'));
process.on('SIGTERM', () => { console.log('bye'); process.exit(0); });
"""

PHP_PAGE = """<?php
header('Content-Type: text/plain');
echo 'uid=', posix_geteuid(), "\\n";
echo 'other=', @file_get_contents($_GET['other'] ?? '/nonexistent') === false ? 'unreadable' : 'READ', "\\n";
$_SESSION = [];
"""


def wait_until(condition: Callable[[], bool]) -> None:
    """Readiness, not a deadline: polls until true. The bound only turns a hang into a failure;
    nothing here takes a second on any machine that runs the suite."""
    give_up = time.monotonic() + 300
    while not condition():
        assert time.monotonic() < give_up, "never became true"
        time.sleep(0.02)


def text(path: Path) -> str:
    """The file's text, or nothing yet (the agent makes a log with the process's first output)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


class Tenants:
    def __init__(self, root: Path, processes: ProcessesConfig) -> None:
        config = TenantsConfig(
            home_root=root / "www",
            archive_dir=root / "archives",
            uid_min=TEST_UID_MIN,
            uid_max=TEST_UID_MAX,
            processes=processes,
        )
        self.root, self.config = root, config
        self.host = HostAgent(config, FirewallConfig(), root / "state")
        self.names = [f"wsp{uuid.uuid4().hex[:8]}" for _ in range(2)]
        for name in self.names:
            self.host.create(TenantCreate(tenant=name, limits=TenantLimits(processes=128, memory=512 * 1024**2)))

    def home(self, name: str) -> Path:
        return self.root / "www" / name

    def uid(self, name: str) -> int:
        return self.home(name).stat().st_uid

    def start(self, tenant: str, **spec: object) -> ProcessState:
        started = self.host.run(ProcessStart(tenant=tenant, process=ProcessSpec.model_validate(spec)))
        assert isinstance(started, ProcessState)
        return started

    def state(self, tenant: str, name: str) -> ProcessState:
        listing = self.host.process_list(ProcessList(tenant=tenant))
        return next(p for p in listing.processes if p.name == name)


@pytest.fixture
def tenants(tmp_path: Path) -> Iterator[Tenants]:
    processes = ProcessesConfig(
        restart_delay=timedelta(milliseconds=10),
        restart_max_delay=timedelta(milliseconds=40),
        max_quick_exits=4,
        log_max_size=4096,
        log_keep=2,
    )
    made = Tenants(tmp_path, processes)
    with searchable(tmp_path / "www"):
        yield made
    made.host.close()
    for name in made.names:
        made.host.delete(TenantDelete(tenant=name))


def test_a_php_fpm_pool_serves_as_the_tenant_and_reads_nothing_of_another(tenants: Tenants) -> None:
    first, second = tenants.names
    page = tenants.home(first) / "public" / "index.php"
    page.write_text(PHP_PAGE)
    os.chown(page, tenants.uid(first), tenants.uid(first))
    secret = tenants.home(second) / "public" / "secret.txt"
    secret.write_text("second's secret")
    state = tenants.start(first, name="php", runtime="php")
    wait_until(lambda: Path(state.socket).exists())
    out, _ = fastcgi(state.socket, str(page), query=f"other={secret}")
    assert f"uid={tenants.uid(first)}" in out.decode()
    assert "other=unreadable" in out.decode()
    running = tenants.state(first, "php")
    assert running.status == "running" and running.pid is not None
    usage = tenants.host.process_list(ProcessList(tenant=first)).usage
    assert usage.pids is not None and usage.pids >= 2  # the master and bubblewrap at least
    assert usage.memory_bytes is not None and usage.memory_bytes > 0
    tenants.host.process_control(ProcessControl(tenant=first, name="php", action="stop"))
    assert tenants.state(first, "php").status == "stopped"
    assert "NOTICE: fpm is running" in (tenants.home(first) / "logs" / "php.log").read_text()


def test_a_node_app_serves_on_its_unix_socket_from_its_jail(tenants: Tenants) -> None:
    first, second = tenants.names
    app = tenants.home(first) / "app.js"
    app.write_text(NODE_APP)
    secret = tenants.home(second) / "public" / "secret.txt"
    secret.write_text("second's secret")
    state = tenants.start(first, name="web", runtime="node", argv=["node", "app.js", str(secret)])
    wait_until(lambda: Path(state.socket).exists())
    answer = _http_over_unix(state.socket, "/hello")
    assert answer == {"uid": tenants.uid(first), "url": "/hello", "other": "unreadable"}
    tenants.host.process_control(ProcessControl(tenant=first, name="web", action="restart"))
    wait_until(lambda: "listening" in text(tenants.home(first) / "logs" / "web.log").split("bye", 1)[-1])
    wait_until(lambda: Path(state.socket).exists())
    assert _http_over_unix(state.socket, "/again")["url"] == "/again"
    log = (tenants.home(first) / "logs" / "web.log").read_text()
    assert "bye" in log  # asked with SIGTERM, and it answered


def test_a_process_that_keeps_exiting_backs_off_then_is_left_failed(tenants: Tenants) -> None:
    first, _ = tenants.names
    tenants.start(first, name="crash", runtime="static", argv=["sh", "-c", "echo tick; exit 3"])
    wait_until(lambda: tenants.state(first, "crash").status == "failed")
    state = tenants.state(first, "crash")
    assert state.last_exit == 3 and state.restarts == 3  # four quick exits: started, then three again
    log = (tenants.home(first) / "logs" / "crash.log").read_text()
    assert log.count("tick") == 4 and "left failed" in log
    again = tenants.host.process_control(ProcessControl(tenant=first, name="crash", action="start"))
    assert again.status in {"starting", "running", "backoff", "failed"}


def test_output_is_rotated_at_the_configured_size(tenants: Tenants) -> None:
    first, _ = tenants.names
    chatter = "i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exec sleep 1000"
    tenants.start(first, name="chatty", runtime="static", argv=["sh", "-c", chatter])
    logs = tenants.home(first) / "logs"
    wait_until(lambda: "line-399-" in text(logs / "chatty.log"))
    names = sorted(p.name for p in logs.iterdir() if p.name.startswith("chatty"))
    assert names == ["chatty.log", "chatty.log.1", "chatty.log.2"]  # log_keep: 2
    assert all(p.stat().st_size <= 4096 for p in logs.iterdir())
    assert all(p.stat().st_uid == tenants.uid(first) for p in logs.iterdir())


def test_a_planted_link_in_logs_is_never_written_through(tenants: Tenants, tmp_path: Path) -> None:
    first, _ = tenants.names
    logs = tenants.home(first) / "logs"
    victim = tmp_path / "root-owned.txt"
    victim.write_text("untouched\n")
    (logs / "one.log").symlink_to(victim)
    hard_victim = tenants.home(first) / "rootfile"  # in the home's filesystem: a hard link is possible
    hard_victim.write_text("untouched\n")
    os.link(hard_victim, logs / "two.log")  # root's file with a second name the tenant controls
    for name in ("one", "two"):
        tenants.start(first, name=name, runtime="static", argv=["sh", "-c", "echo written; exec sleep 1000"])
    wait_until(lambda: "written" in text(logs / "one.log") and "written" in text(logs / "two.log"))
    assert victim.read_text() == "untouched\n" and hard_victim.read_text() == "untouched\n"
    assert not (logs / "one.log").is_symlink() and (logs / "two.log").stat().st_nlink == 1
    assert hard_victim.stat().st_uid == 0


def test_suspension_stops_everything_and_resume_brings_it_back(tenants: Tenants) -> None:
    first, _ = tenants.names
    tenants.start(first, name="sleeper", runtime="static", argv=["sleep", "1000"])
    wait_until(lambda: tenants.state(first, "sleeper").pid is not None)
    assert tenants.host.cgroups is not None
    tenants.host.suspend(TenantSuspend(tenant=first))
    assert tenants.state(first, "sleeper").status == "stopped"
    wait_until(lambda: not tenants.host.cgroups.members(first))  # type: ignore[union-attr]
    with pytest.raises(AgentFailure) as refused:
        tenants.host.process_control(ProcessControl(tenant=first, name="sleeper", action="start"))
    assert refused.value.code == "conflict"
    tenants.host.resume(TenantResume(tenant=first))
    wait_until(lambda: tenants.state(first, "sleeper").pid is not None)


def test_an_agent_that_restarts_starts_again_what_was_running(tenants: Tenants, tmp_path: Path) -> None:
    first, _ = tenants.names
    tenants.start(first, name="kept", runtime="static", argv=["sleep", "1000"])
    tenants.start(first, name="halted", runtime="static", argv=["sleep", "1000"])
    tenants.host.process_control(ProcessControl(tenant=first, name="halted", action="stop"))
    tenants.host.close()  # the agent stopping
    successor = HostAgent(tenants.config, FirewallConfig(), tmp_path / "state")
    try:
        successor.revive_all()
        def listing() -> dict[str, ProcessState]:
            return {p.name: p for p in successor.process_list(ProcessList(tenant=first)).processes}

        wait_until(lambda: listing()["kept"].status == "running")
        assert listing()["halted"].status == "stopped"
    finally:
        successor.close()


def test_refusals(tenants: Tenants) -> None:
    first, _ = tenants.names
    for too_many in range(tenants.config.processes.max_per_tenant):
        tenants.start(first, name=f"p{too_many}", runtime="static", argv=["sleep", "1000"])
    with pytest.raises(AgentFailure) as refused:
        tenants.start(first, name="onemore", runtime="static", argv=["true"])
    assert refused.value.code == "conflict" and "max_per_tenant" in refused.value.message
    with pytest.raises(AgentFailure) as missing:
        tenants.host.run(ProcessControl(tenant=first, name="nosuch", action="stop"))
    assert missing.value.code == "not_found"
    with pytest.raises(ValueError, match="takes no argv"):
        ProcessSpec(name="php", runtime="php", argv=["sh"])
    with pytest.raises(ValueError, match="needs argv"):
        ProcessSpec(name="web", runtime="node")


def _http_over_unix(path: str, url: str) -> dict[str, object]:
    import json

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(path)

    connection = UnixConnection("localhost", timeout=30)
    try:
        connection.request("GET", url)
        answer: dict[str, object] = json.loads(connection.getresponse().read())
        return answer
    finally:
        connection.close()


def test_every_process_of_a_jail_is_in_every_group_that_limits_it(tenants: Tenants) -> None:
    first, _ = tenants.names
    cgroups = tenants.host.cgroups
    assert cgroups is not None
    tenants.start(first, name="tree", runtime="static", argv=["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    placed = cgroups.placed_in(first)
    assert {"pids", "memory", "cpu", "v2"} <= set(placed)  # this machine: v1 controllers, v2 for kill/PSI

    def each_group() -> list[set[int]]:
        return [{int(p) for p in (path / "cgroup.procs").read_text().split()} for path in placed.values()]

    # bubblewrap, its init, the shell and its two sleeps: in every group alike, none missing.
    wait_until(lambda: all(len(members) == 5 for members in each_group()))
    assert len({frozenset(members) for members in each_group()}) == 1
