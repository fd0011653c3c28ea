"""`wcp360 install`: the installed layout of seed 000 §4 and the systemd units of seed 001 §1.

| path                         | owner            | mode | why                                          |
|------------------------------|------------------|------|----------------------------------------------|
| config dir (/etc/wcp360)     | root             | 0700 | secrets; read by serve before it drops root  |
| data dir (/var/lib/wcp360)   | wcp360           | 0700 | the panel's database, keys, modules          |
| log dir                      | wcp360           | 0700 | the audit trail                              |
| agent socket dir (/run/wcp360) | root:wcp360    | 0750 | the panel reaches the agent; nobody else     |
| agent state (/var/lib/wcp360-agent) | root      | 0700 | tenant limits as the host enforces them, the jails' helper |
| tenants.home_root (/srv/www) | root             | 0755 | tenants cannot rename or replace each other's homes |
| tenants.archive_dir          | root             | 0700 | deleted tenants' homes                       |

Idempotent: every run sets owners and modes again (and gives the service user back any file root
left in its directories), so it also repairs.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from wcp360.config import Config
from wcp360.system.accounts import add_service_user


def _service_user(config: Config) -> Iterator[str]:
    name = config.server.user
    try:
        pwd.getpwnam(name)
        yield f"user {name}: exists"
    except KeyError:
        add_service_user(name, config.data_dir)
        yield f"user {name}: created (system user, no login shell)"


def _directory(path: Path, uid: int, gid: int, mode: int, adopt_contents: bool = False) -> str:
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or not stat.S_ISDIR(os.lstat(path).st_mode):
        raise OSError(f"{path} is not a directory (a symlink?): refusing to take it over")
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    if adopt_contents:
        for root, directories, files in os.walk(path):  # os.walk does not follow symlinks
            for name in (*directories, *files):
                os.lchown(os.path.join(root, name), uid, gid)
    return f"{path}: {pwd.getpwuid(uid).pw_name}:{grp.getgrgid(gid).gr_name} {mode:04o}"


def _units(config: Config, source: Path, target: Path) -> Iterator[str]:
    executable = shutil.which("wcp360") or str(Path(sys.argv[0]).resolve())
    replacements = {
        "/opt/wcp360/bin/wcp360": executable,
        "--config-dir /etc/wcp360": f"--config-dir {config.config_dir}",
        "/var/lib/wcp360-agent": str(config.server.agent.state_dir),
        "/var/lib/wcp360": str(config.data_dir),
        "/var/log/wcp360": str(config.log_dir),
        "/run/wcp360": str(config.server.agent.socket.parent),
        "/srv/www": str(config.server.tenants.home_root),
        "/var/backups/wcp360": str(config.server.tenants.archive_dir),
        "User=wcp360": f"User={config.server.user}",
        "Group=wcp360": f"Group={config.server.user}",
    }
    target.mkdir(parents=True, exist_ok=True)
    for unit in sorted(source.glob("*.service")):
        text = unit.read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        path = target / unit.name
        path.write_text(text)
        os.chmod(path, 0o644)
        yield f"{path}: written"


def _jail_helper(config: Config) -> str:
    """The jails' helper built now, so the first tenant process does not wait for a compiler (and
    a host without one is told at install time; doctor WCP-JAIL-002 says it too)."""
    from wcp360.system.jail_exec import HelperUnavailable, ensure_helper

    try:
        return f"jail helper: {ensure_helper(config.server.agent.state_dir / 'bin')}"
    except HelperUnavailable as exc:
        return f"jail helper: NOT BUILT: {exc}"


def install_layout(config: Config, units_target: Path, units_source: Path) -> Iterator[str]:
    yield from _service_user(config)
    user = pwd.getpwnam(config.server.user)
    uid, gid = user.pw_uid, user.pw_gid
    tenants = config.server.tenants
    yield _directory(config.config_dir, 0, 0, 0o700)
    yield _directory(config.data_dir, uid, gid, 0o700, adopt_contents=True)
    yield _directory(config.log_dir, uid, gid, 0o700, adopt_contents=True)
    yield _directory(config.server.agent.socket.parent, 0, gid, 0o750)
    yield _directory(config.server.agent.state_dir, 0, 0, 0o700)
    yield _directory(tenants.home_root, 0, 0, 0o755)
    yield _directory(tenants.archive_dir, 0, 0, 0o700)
    yield _jail_helper(config)
    yield from _units(config, units_source, units_target)
    yield "next: systemctl daemon-reload && systemctl enable --now wcp360-agent wcp360"
