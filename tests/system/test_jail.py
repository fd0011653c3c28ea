"""Tenants' jobs in their jails (bubblewrap as the tenant, placed in its cgroups before exec):
what one tenant's command can reach of the host and of another tenant, attacked for real."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dropping import searchable
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from wcp360.config.server import FirewallConfig, TenantLimits, TenantNetworkConfig, TenantsConfig
from wcp360.system.host import AgentFailure, HostAgent
from wcp360.system.protocol import JobOutcome, TenantCreate, TenantDelete, TenantRun, TenantSuspend
from wcp360.system.syscalls import RuntimeClass


@pytest.fixture
def tenants(tmp_path: Path) -> Iterator[tuple[HostAgent, str, str]]:
    config = TenantsConfig(
        home_root=tmp_path / "www", archive_dir=tmp_path / "archives", uid_min=TEST_UID_MIN, uid_max=TEST_UID_MAX
    )
    host = HostAgent(config, FirewallConfig(), tmp_path / "state")
    first, second = (f"wtj{uuid.uuid4().hex[:8]}" for _ in range(2))
    limits = TenantLimits(processes=32, memory=256 * 1024**2)
    for name in (first, second):
        host.create(TenantCreate(tenant=name, limits=limits))
    (tmp_path / "www" / second / "public" / "secret.txt").write_text("second's secret")
    with searchable(tmp_path / "www"):  # the homes' parents traversable by the tenants, as /srv is
        yield host, first, second
    for name in (first, second):
        host.delete(TenantDelete(tenant=name))


def run(
    host: HostAgent, tenant: str, *argv: str, timeout: int = 60, network: bool = False, runtime: RuntimeClass = "static"
) -> JobOutcome:
    call = TenantRun(tenant=tenant, argv=list(argv), timeout=timeout, network=network, runtime=runtime)
    return host.run_in_jail(call)


def test_the_job_runs_as_the_tenant_with_nothing_to_gain(tenants: tuple[HostAgent, str, str]) -> None:
    host, first, _ = tenants
    uid = host._state(first)[0].uid  # type: ignore[index]
    result = run(host, first, "sh", "-c", "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == str(uid)
    assert "CapEff:\t0000000000000000" in result.stdout and "CapBnd:\t0000000000000000" in result.stdout
    assert "NoNewPrivs:\t1" in result.stdout


def test_another_tenants_files_are_not_there(tenants: tuple[HostAgent, str, str], tmp_path: Path) -> None:
    host, first, second = tenants
    secret = tmp_path / "www" / second / "public" / "secret.txt"
    attempts = [
        f"cat {secret}",  # by path
        f"ln -s {secret} link && cat link",  # by symlink
        f"ln {secret} hard",  # by hard link
        f"cat ../{second}/public/secret.txt",  # by ..
        "cat /proc/1/root" + str(secret),  # through /proc/PID/root
        "set -- /proc/[0-9]*; test $# -le 3",  # only the jail's own processes: its init and this shell
    ]
    for attempt in attempts[:-1]:
        result = run(host, first, "sh", "-c", attempt)
        assert result.exit_code != 0 and "second's secret" not in result.stdout, attempt
    assert run(host, first, "sh", "-c", attempts[-1]).exit_code == 0
    assert secret.read_text() == "second's secret"


def test_the_system_is_read_only_and_secrets_unreadable(tenants: tuple[HostAgent, str, str]) -> None:
    host, first, _ = tenants
    for attempt in ("touch /usr/x", "touch /etc/x", "cat /etc/shadow", "touch /bin/x"):
        assert run(host, first, "sh", "-c", attempt).exit_code != 0, attempt
    own = run(host, first, "sh", "-c", "echo mine > public/index.html && cat public/index.html && touch /tmp/t")
    assert own.exit_code == 0 and own.stdout == "mine\n"


def test_no_network_reaches_the_hosts_loopback(tenants: tuple[HostAgent, str, str]) -> None:
    host, first, _ = tenants
    with socket.socket() as service:
        service.bind(("127.0.0.1", 0))
        service.listen()
        port = service.getsockname()[1]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        isolated = run(host, first, "python3", "-c", probe)
        # Two layers: Landlock refuses the connect (EACCES) before the empty namespace would.
        assert isolated.exit_code != 0 and "Permission denied" in isolated.stderr
        # The namespace on its own: the host's sockets are not even visible.
        listing = run(host, first, "cat", "/proc/net/tcp", "/proc/net/tcp6")
        assert listing.exit_code == 0 and f":{port:04X} " not in listing.stdout


def test_with_network_a_jail_connects_out_only_to_allowed_ports_and_never_listens(
    tenants: tuple[HostAgent, str, str],
) -> None:
    host, first, _ = tenants
    with socket.socket() as allowed, socket.socket() as other:
        for service in (allowed, other):
            service.bind(("127.0.0.1", 0))
            service.listen()
        port, other_port = allowed.getsockname()[1], other.getsockname()[1]
        host.tenants = host.tenants.model_copy(update={"network": TenantNetworkConfig(allow_tcp_ports=[port])})
        probe = (
            "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5); "
            "print('connected')"
        )
        assert run(host, first, "python3", "-c", probe, str(port), network=True).stdout == "connected\n"
        refused = run(host, first, "python3", "-c", probe, str(other_port), network=True)
        assert refused.exit_code != 0 and "Permission denied" in refused.stderr  # Landlock: not an allowed port
        host.tenants = host.tenants.model_copy(update={"network": TenantNetworkConfig(allow_tcp_ports=[])})
        assert "Permission denied" in run(host, first, "python3", "-c", probe, str(port), network=True).stderr
        host.tenants = host.tenants.model_copy(update={"network": TenantNetworkConfig(allow_all_tcp_ports=True)})
        assert run(host, first, "python3", "-c", probe, str(other_port), network=True).stdout == "connected\n"
    listen = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()"
    # The static class may not bind at all (seccomp: EPERM); node may, but Landlock refuses TCP
    # (EACCES): tenants serve on Unix sockets.
    assert "Operation not permitted" in run(host, first, "python3", "-c", listen, network=True).stderr
    refused = run(host, first, "python3", "-c", listen, network=True, runtime="node")
    assert refused.exit_code != 0 and "Permission denied" in refused.stderr


def test_a_fork_bomb_in_the_jail_stops_at_the_tenants_pids_max(tenants: tuple[HostAgent, str, str]) -> None:
    host, first, _ = tenants
    bomb = (
        "import os\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        print(n, flush=True); os._exit(0)\n    if pid == 0:\n        os.read(os.pipe()[0], 1)\n    n += 1\n"
    )
    result = run(host, first, "python3", "-c", bomb, timeout=60)
    forked = int(result.stdout.strip())
    assert 0 < forked < 32, result  # pids.max 32 counts bubblewrap and the job itself too


def test_nothing_outlives_its_job_and_a_timeout_ends_everything(tenants: tuple[HostAgent, str, str]) -> None:
    host, first, _ = tenants
    assert host.cgroups is not None
    left = run(host, first, "sh", "-c", "sleep 1000 & echo started")
    assert left.stdout == "started\n"
    while host.cgroups.members(first):  # the PID namespace's init is gone: the kernel ends the rest
        pass
    slow = run(host, first, "sleep", "1000", timeout=1)
    assert slow.timed_out
    while host.cgroups.members(first):
        pass


def test_a_suspended_tenant_runs_nothing(tenants: tuple[HostAgent, str, str]) -> None:
    host, first, _ = tenants
    host.suspend(TenantSuspend(tenant=first))
    with pytest.raises(AgentFailure) as refused:
        run(host, first, "true")
    assert refused.value.code == "conflict"


def test_dev_holds_five_harmless_devices_and_no_terminal(tenants: tuple[HostAgent, str, str]) -> None:
    host, first, _ = tenants
    listing = run(host, first, "sh", "-c", "ls /dev; echo data > /dev/null; head -c 4 /dev/urandom | wc -c")
    assert listing.exit_code == 0, listing.stderr
    assert listing.stdout.split() == [
        "fd",
        "full",
        "null",
        "random",
        "stderr",
        "stdin",
        "stdout",
        "urandom",
        "zero",
        "4",
    ]
    assert run(host, first, "sh", "-c", "echo x > /dev/tty").exit_code != 0  # no terminal to write into
