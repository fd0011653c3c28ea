"""The installed layout (`wcp360 install`), the units' exposure scores, and the doctor's report."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_admin_cli import wcp360
from wcp360.doctor import CATALOGUE, listening_sockets, unit_exposure
from wcp360.system.cgroups import read_layout

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def test_units_exposure_scores() -> None:
    # The panel must be "OK" (2.0 or lower); the seed's directive list alone scores 6.6 (MEDIUM).
    assert (panel := unit_exposure(PACKAGING / "wcp360.service")) is not None and panel <= 2.0, panel
    # The agent is root by design (it makes users, owns homes, runs nftables): as low as that allows.
    assert (agent := unit_exposure(PACKAGING / "wcp360-agent.service")) is not None and agent <= 2.5, agent
    panel_text = (PACKAGING / "wcp360.service").read_text()
    for directive in (
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "ProtectControlGroups=true",
        "ProtectKernelModules=true",
        "ProtectKernelTunables=true",
        "RestrictNamespaces=true",
        "LockPersonality=true",
    ):
        assert directive in panel_text
    # The one seed directive the panel cannot take (its workers' JIT) is the agent's.
    assert "MemoryDenyWriteExecute=true" not in panel_text
    assert "MemoryDenyWriteExecute=true" in (PACKAGING / "wcp360-agent.service").read_text()


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, str]]:
    user = f"wtinst{uuid.uuid4().hex[:6]}"
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    (etc / "wcp360.yml").write_text(
        f"mode: dev\nuser: {user}\n"
        f"paths:\n  log_dir: {tmp_path / 'log'}\n"
        f"agent:\n  socket: {tmp_path / 'run' / 'agent.sock'}\n  state_dir: {tmp_path / 'agent-state'}\n"
        f"tenants:\n  home_root: {tmp_path / 'srv' / 'www'}\n  archive_dir: {tmp_path / 'archives'}\n"
    )
    (etc / "wcp360.yml").chmod(0o600)
    env = {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(tmp_path / "data")}
    yield env, tmp_path, user
    subprocess.run(["userdel", user], check=False, capture_output=True)
    subprocess.run(["groupdel", user], check=False, capture_output=True)


def test_install_makes_the_seed_layout_and_is_idempotent(layout: tuple[dict[str, str], Path, str]) -> None:
    env, tmp_path, user = layout
    units = tmp_path / "units"
    first = wcp360(env, "install", "--units-dir", str(units))
    assert first.returncode == 0, first.stderr
    assert "jail helper: /" in first.stdout  # built now, not at the first tenant's process
    account = pwd.getpwnam(user)
    assert account.pw_shell == "/usr/sbin/nologin" and account.pw_uid < 1000  # a system user
    expected = {
        "etc": (0, 0o700),
        "data": (account.pw_uid, 0o700),
        "log": (account.pw_uid, 0o700),
        "run": (0, 0o750),
        "agent-state": (0, 0o700),
        "srv/www": (0, 0o755),
        "archives": (0, 0o700),
    }
    for relative, (uid, mode) in expected.items():
        info = os.lstat(tmp_path / relative)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, mode), relative
    assert os.lstat(tmp_path / "run").st_gid == account.pw_gid
    panel = (units / "wcp360.service").read_text()
    assert f"User={user}" in panel and f"--data-dir {tmp_path / 'data'}" in panel
    assert f"ReadWritePaths={tmp_path / 'data'} {tmp_path / 'log'}" in panel
    assert stat.S_IMODE(os.stat(units / "wcp360-agent.service").st_mode) == 0o644
    # A file root left in the service user's directory is given back; a second run changes nothing else.
    stray = tmp_path / "data" / "left-by-root"
    stray.write_text("x")
    second = wcp360(env, "install", "--units-dir", str(units))
    assert second.returncode == 0 and "exists" in second.stdout
    assert os.lstat(stray).st_uid == account.pw_uid
    assert (units / "wcp360.service").read_text() == panel


def test_install_refuses_a_symlinked_directory(layout: tuple[dict[str, str], Path, str]) -> None:
    env, tmp_path, _ = layout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "www").symlink_to(elsewhere)
    result = wcp360(env, "install", "--units-dir", str(tmp_path / "units"))
    assert result.returncode != 0 and "symlink" in result.stderr
    assert stat.S_IMODE(os.lstat(elsewhere).st_mode) != 0o755 or os.lstat(elsewhere).st_uid == 0


def test_doctor_json_has_stable_ids_severities_and_remedies(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    (etc / "wcp360.yml").write_text("mode: dev\n")
    (tmp_path / "data").mkdir(mode=0o700)
    env = {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(tmp_path / "data")}
    result = wcp360(env, "doctor", "--format", "json")
    checks = json.loads(result.stdout)
    assert result.returncode == 1  # no database yet: a failure, and the exit status says so
    for found in checks:
        assert set(found) == {"id", "name", "status", "detail", "severity", "remedy"}
        assert found["status"] in ("ok", "warn", "fail")
        if found["id"] != "WCP-GEN-000":
            assert found["id"] in CATALOGUE
        if found["status"] != "ok":
            assert found["remedy"] and found["severity"] != "info"
    by_id = {c["id"]: c for c in checks}
    # This machine's cgroups are hybrid: the doctor must say so, not claim v2.
    layout = read_layout()
    if "memory" not in layout.v2_controllers and "memory" in layout.v1:
        assert by_id["WCP-KRN-001"]["status"] == "warn" and "hybrid" in by_id["WCP-KRN-001"]["detail"]
    assert by_id["WCP-CFG-002"]["status"] == "ok"
    assert by_id["WCP-AGT-001"]["status"] == "warn"  # no agent here: in-process, said so
    strict = wcp360(env, "doctor", "--strict")
    assert strict.returncode == 1


def test_cgroup_layouts_are_read_as_they_are() -> None:
    hybrid = (
        "cgroup2 /nonexistent/unified cgroup2 rw 0 0\n"
        "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
        "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n"
    )
    layout = read_layout(hybrid)
    assert layout.v2_controllers == frozenset()
    assert layout.v1 == {"memory": Path("/sys/fs/cgroup/memory"), "pids": Path("/sys/fs/cgroup/pids")}


def test_listening_sockets_are_found_beyond_loopback() -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    tcp = header + (
        "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n"  # 0.0.0.0:2024
        "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 2\n"  # 127.0.0.1:8080
        "   2: 0F00020A:01BB 0100020A:C350 01 00000000:00000000 00:00000000 00000000 0 0 3\n"  # established
        "   3: 0F00020A:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4\n"  # 10.2.0.15:443
    )
    tcp6 = header + (
        "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000 0 0 5\n"  # ::1:22
        "   1: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000 0 0 6\n"  # ::ffff:127.0.0.1:8081
    )
    assert listening_sockets([tcp, tcp6]) == [("0.0.0.0", 2024), ("10.2.0.15", 443)]  # noqa: S104


def _others_may_read(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o004) and all(p.stat().st_mode & 0o001 for p in path.parents)


def test_doctor_says_whether_the_service_user_can_read_the_code(tmp_path: Path) -> None:
    import sys

    from tests.dropping import service_user
    from wcp360.config import load_config
    from wcp360.doctor import run_checks

    with service_user() as user:
        etc = tmp_path / "etc"
        etc.mkdir(mode=0o700)
        (etc / "wcp360.yml").write_text(f"mode: dev\nuser: {user}\n")
        (tmp_path / "data").mkdir(mode=0o700)
        found = {c.id: c for c in run_checks(load_config(etc, tmp_path / "data"))}["WCP-USR-002"]
    interpreter = Path(os.path.realpath(sys.executable))
    import wcp360

    readable = _others_may_read(interpreter) and _others_may_read(Path(wcp360.__file__).resolve())
    assert found.status == ("ok" if readable else "fail"), found
    if not readable:
        assert found.remedy and "/opt/wcp360" in found.remedy
