"""`wcp360 doctor` against the real host: what works is ok, what is broken fails with exit 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cli.test_admin_cli import wcp360
from tests.conftest import TEST_SECURITY_YML, write_files
from wcp360.config import load_config
from wcp360.runtime import Runtime
from wcp360.workloads.engine.confine import landlock_abi


def _env(tmp_path: Path, files: dict[str, str]) -> dict[str, str]:
    etc = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "security.yml": TEST_SECURITY_YML, **files})
    (tmp_path / "data").mkdir(mode=0o700, exist_ok=True)
    return {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(tmp_path / "data")}


def _mariadb_passwordless() -> list[str]:
    from wcp360.config.server import MariaDBEngine
    from wcp360.system.databases import MariaDB

    return MariaDB(MariaDBEngine()).passwordless()


def _checks(env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]]]:
    result = wcp360(env, "doctor", "--format", "json")
    return result.returncode, {c["name"]: c for c in json.loads(result.stdout)}


def test_a_healthy_host(tmp_path: Path) -> None:
    env = _env(tmp_path, {})
    Runtime.open(load_config(Path(env["WCP360_CONFIG_DIR"]), Path(env["WCP360_DATA_DIR"]))).close()
    code, checks = _checks(env)
    assert code == 0, checks
    assert checks["database"]["status"] == "ok" and "schema" in checks["database"]["detail"]
    assert checks["seccomp"]["status"] == "ok" and checks["no_new_privs"]["status"] == "ok"
    assert checks["landlock"]["status"] == ("ok" if landlock_abi() else "warn")
    assert checks["firewall"]["status"] == "warn"  # opt-in, and said so
    assert "not used: memory://" in checks["redis (rate limits)"]["detail"]  # a line, not silence
    table = wcp360(env, "doctor")
    assert table.returncode == 0 and "landlock" in table.stdout
    # The jails' layers, each reported (this machine has them all: root, bubblewrap, a compiler,
    # Landlock ABI 6+, libseccomp, php-fpm from test-deps).
    for name in ("tenant jails", "jail helper", "jail landlock", "jail seccomp", "php-fpm"):
        assert checks[name]["status"] == "ok", checks[name]
    # This machine's MariaDB root has an empty password (TOOLCHAIN/env): said, as a warning.
    empty = _mariadb_passwordless()
    mariadb = checks["mariadb accounts"]
    assert mariadb["status"] == ("warn" if empty else "ok"), mariadb
    assert all(account in mariadb["detail"] for account in empty)
    assert checks["postgresql pg_hba"]["status"] in ("ok", "warn")  # ok once the agent's block is in
    # Websites: nginx from test-deps; scanning uploads is opt-in, and said so.
    assert checks["nginx"]["status"] == "ok" and checks["upload scanning"]["status"] == "warn"
    assert checks["site certificates"]["status"] in ("ok", "warn")  # warn: the agent's state is root's


def test_broken_dependencies_fail(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        {
            "rate_limit.yml": 'rate_limiting:\n  storage: "redis://127.0.0.1:1/0"\n',
            "wcp360.yml": "mode: dev\nfirewall:\n  enabled: true\n  netns: wcp360-doctor-no-such-netns\n"
            "tenants:\n  websites:\n    nginx: /nonexistent/nginx\n"
            "    uploads: {scan: {enabled: true, clamd_socket: /nonexistent/clamd.sock}}\n",
        },
    )
    code, checks = _checks(env)
    assert code == 1
    assert checks["database"]["status"] == "fail" and "does not exist" in checks["database"]["detail"]
    assert not (tmp_path / "data" / "wcp360.db").exists()  # the doctor did not create it
    assert checks["redis (rate limits)"]["status"] == "fail"
    assert checks["firewall"]["status"] == "fail"
    assert checks["nginx"]["status"] == "fail" and checks["upload scanning"]["status"] == "fail"
    # Everything else was still checked.
    assert checks["seccomp"]["status"] == "ok"
