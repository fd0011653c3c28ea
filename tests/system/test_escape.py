"""The escape corpus of issue 14, for every runtime class: each attack is made from inside a
tenant's jail as the tenant would make it, and must be refused, leaving the host and the other
tenant untouched. The probe (escape_probe.py) uses the raw system calls, so no library's own
checks stand in for the jail's."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dropping import searchable
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from tests.system.test_supervise import wait_until
from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.system.host import HostAgent
from wcp360.system.protocol import JobOutcome, ProcessSpec, ProcessStart, TenantCreate, TenantDelete, TenantRun
from wcp360.system.syscalls import RUNTIME_CLASSES, RuntimeClass

PROBE = (Path(__file__).parent / "escape_probe.py").read_text()
# Each attack and what refusing it looks like; any errno but 0 holds (EPERM from seccomp, EACCES
# from Landlock, ENOSYS for clone3, whatever the kernel answers first).
REFUSED = [
    "ptrace_attach", "process_vm_readv", "mount", "umount", "pivot_root", "chroot", "unshare_user",
    "unshare_mount", "unshare_net", "setns", "clone_newuser", "clone3", "raw_socket", "packet_socket",
    "keyctl", "add_key", "io_uring_setup", "bpf", "perf_event_open", "userfaultfd", "init_module",
    "kexec_load", "setuid_root", "personality",
]  # fmt: skip
SECRET_ARGUMENT = "second-tenant-secret-argument"


@pytest.fixture
def tenants(tmp_path: Path) -> Iterator[tuple[HostAgent, str, str, Path]]:
    root = tmp_path
    config = TenantsConfig(
        home_root=root / "www", archive_dir=root / "archives", uid_min=TEST_UID_MIN, uid_max=TEST_UID_MAX
    )
    host = HostAgent(config, FirewallConfig(), root / "state")
    first, second = (f"wte{uuid.uuid4().hex[:8]}" for _ in range(2))
    for name in (first, second):
        host.create(TenantCreate(tenant=name, limits=TenantLimits(processes=64, memory=256 * 1024**2)))
    with searchable(root / "www"):
        # The second tenant is busy: a process with a secret on its command line, and a Unix socket.
        spec = ProcessSpec(
            name="busy",
            runtime="node",  # a class that may listen (static may not)
            argv=["python3", "-c", "import os, socket, sys; s = socket.socket(socket.AF_UNIX); "
                  "s.bind(os.environ['SOCKET']); s.listen(); print('ready', flush=True); s.accept()",
                  SECRET_ARGUMENT],
        )  # fmt: skip
        started = host.run(ProcessStart(tenant=second, process=spec))
        wait_until(lambda: Path(started.socket).exists())  # type: ignore[union-attr]
        yield host, first, second, root
        host.close()
    for name in (first, second):
        host.delete(TenantDelete(tenant=name))


def run(
    host: HostAgent, tenant: str, *argv: str, runtime: RuntimeClass = "static", network: bool = False
) -> JobOutcome:
    return host.run_in_jail(TenantRun(tenant=tenant, argv=list(argv), runtime=runtime, network=network, timeout=120))


@pytest.mark.parametrize("network", [False, True], ids=["isolated", "network"])
@pytest.mark.parametrize("runtime", RUNTIME_CLASSES)
def test_every_way_out_is_refused(
    tenants: tuple[HostAgent, str, str, Path], runtime: RuntimeClass, network: bool
) -> None:
    host, first, _, _ = tenants
    with socket.socket(socket.AF_UNIX) as listening:  # a host service on an abstract Unix socket
        name = f"wcp360-escape-{uuid.uuid4().hex}"
        listening.bind("\0" + name)
        listening.listen()
        result = run(host, first, "python3", "-c", PROBE, name, runtime=runtime, network=network)
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    escaped = [attack for attack in REFUSED if found[attack] == 0]
    assert not escaped, f"{runtime}: {escaped}"
    assert found["abstract_socket"] != 0  # Landlock's scope (ABI 6), or another network namespace
    assert not found["sys_visible"]
    assert len(found["pids"]) <= 3  # the jail's init, the probe and its fork's leftovers: nothing else
    # Only the jail's own: bubblewrap's init and the probe; nothing of the host or the other tenant.
    assert all(line.startswith(("/usr/bin/bwrap ", "python3 ")) for line in found["command_lines"])
    assert not any(SECRET_ARGUMENT in line for line in found["command_lines"])


def test_another_tenants_socket_and_processes_are_out_of_reach(tenants: tuple[HostAgent, str, str, Path]) -> None:
    host, first, second, root = tenants
    theirs = root / "www" / second / "run" / "busy.sock"
    assert theirs.exists()
    attempt = f"import socket; socket.socket(socket.AF_UNIX).connect('{theirs}')"
    for network in (False, True):
        refused = run(host, first, "python3", "-c", attempt, network=network)
        assert refused.exit_code != 0 and "FileNotFoundError" in refused.stderr, refused.stderr
    signal_them = "kill -TERM -1; echo $?"  # every process this uid may signal: only its own jail's
    run(host, first, "sh", "-c", signal_them)
    assert theirs.exists() and any(host.cgroups.members(second))  # type: ignore[union-attr]


def test_a_setuid_binary_gains_nothing(tenants: tuple[HostAgent, str, str, Path]) -> None:
    host, first, _, _ = tenants
    su = "/usr/bin/su"
    assert os.stat(su).st_mode & 0o4000
    result = run(host, first, "sh", "-c", f"{su} root -c 'id -u' </dev/null; id -u")
    uid = host._state(first)[0].uid  # type: ignore[index]
    assert result.stdout.split() == [str(uid)]  # su printed nothing: it never became root


def test_a_memory_hog_dies_in_its_own_cgroup_and_the_host_goes_on(tenants: tuple[HostAgent, str, str, Path]) -> None:
    host, first, second, _ = tenants
    hog = run(host, first, "python3", "-c", "x = bytearray(1024 ** 3); print('survived')")
    assert hog.exit_code != 0 and "survived" not in hog.stdout
    assert run(host, first, "true").exit_code == 0  # the tenant's next job runs
    assert any(host.cgroups.members(second))  # type: ignore[union-attr] - the neighbour never noticed


def test_php_ffi_reaches_no_forbidden_system_call(tenants: tuple[HostAgent, str, str, Path]) -> None:
    """PHP's FFI gives a script libc itself: the php class's filter holds below it."""
    host, first, _, _ = tenants
    script = (
        '$c = FFI::cdef("int unshare(int); int mount(const char*, const char*, const char*, unsigned long, '
        'const void*); long syscall(long, ...);", "libc.so.6");'
        "echo $c->unshare(0x10000000), ' ', $c->mount('none', '/tmp', 'tmpfs', 0, null), ' ',"
        " $c->syscall(425, 1, null), ' ', $c->syscall(250, 0, -3, 0), PHP_EOL;"
    )
    result = run(host, first, "php", "-d", "ffi.enable=1", "-r", script, runtime="php")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["-1", "-1", "-1", "-1"]


def test_node_cannot_leave_either(tenants: tuple[HostAgent, str, str, Path]) -> None:
    host, first, second, root = tenants
    script = (
        "const cp = require('child_process'); const fs = require('fs'); const out = {};"
        "try { cp.execFileSync('unshare', ['-r', 'true'], {stdio: 'ignore'}); out.unshare = 'ran'; }"
        " catch (e) { out.unshare = 'refused'; }"
        f"try {{ fs.readFileSync('{root}/www/{second}/run/busy.sock'); out.read = 'read'; }}"
        " catch (e) { out.read = e.code; }"
        "try { fs.writeFileSync('/usr/x', 'x'); out.write = 'wrote'; } catch (e) { out.write = e.code; }"
        "console.log(JSON.stringify(out));"
    )
    result = run(host, first, "node", "-e", script, runtime="node")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"unshare": "refused", "read": "ENOENT", "write": "EROFS"}
