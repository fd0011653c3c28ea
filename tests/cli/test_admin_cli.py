"""`wcp360 admin`, `config` and `db` as the host administrator runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import TEST_SECURITY_YML, write_files
from tests.helpers import STRONG
from wcp360.cli.main import app


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config_dir = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "security.yml": TEST_SECURITY_YML})
    (tmp_path / "data").mkdir(mode=0o700)  # an installation exists: the CLI never invents one
    return {**os.environ, "WCP360_CONFIG_DIR": str(config_dir), "WCP360_DATA_DIR": str(tmp_path / "data")}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def wcp360(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    """Run the CLI in-process (each real process pays ~2 s of imports here); see run_process."""
    result = CliRunner().invoke(app, list(args), input=stdin, env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def run_process(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "wcp360.cli", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    return Result(done.returncode, done.stdout, done.stderr)


def users(env: dict[str, str]) -> list[dict[str, object]]:
    result = wcp360(env, "admin", "list-users", "--format", "json")
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, object]] = json.loads(result.stdout)
    return listed


def test_create_with_password_from_stdin_and_list(env: dict[str, str], tmp_path: Path) -> None:
    created = run_process(
        env,
        "admin",
        "create-user",
        "--username",
        "admin",
        "--password",
        "-",
        "--email",
        "admin@company.com",
        "--roles",
        "admin",
        stdin=STRONG + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created user admin" in created.stdout
    assert STRONG not in created.stdout + created.stderr
    listed = users(env)
    assert [(u["username"], u["roles"]) for u in listed] == [("admin", ["admin"])]
    table = wcp360(env, "admin", "list-users", "--format", "table").stdout
    assert "admin@company.com" in table and "┃" in table
    csv_out = wcp360(env, "admin", "list-users", "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("username,email,roles") and csv_out[1].startswith("admin,admin@company.com,admin")
    # The action reached the audit file, without the password.
    audit_log = (tmp_path / "data" / "log" / "audit.log").read_text()
    assert '"action":"user_create"' in audit_log and '"channel":"cli"' in audit_log and STRONG not in audit_log


def test_seed_command_shapes(env: dict[str, str]) -> None:
    assert (
        wcp360(
            env,
            "admin",
            "create-user",
            "--username",
            "developer1",
            "--password",
            "DevPassword123!x",
            "--email",
            "dev1@company.com",
            "--roles",
            "developer",
        ).returncode
        == 0
    )
    updated = wcp360(env, "admin", "update-user", "--username", "developer1", "--add-roles", "operator")
    assert updated.returncode == 0 and "developer, operator" in updated.stdout
    removed = wcp360(env, "admin", "update-user", "--username", "developer1", "--remove-roles", "developer")
    assert "roles operator" in removed.stdout
    assert wcp360(env, "admin", "disable-user", "--username", "developer1").returncode == 0
    assert users(env)[0]["status"] == "disabled"
    assert wcp360(env, "admin", "enable-user", "--username", "developer1").returncode == 0
    assert (
        wcp360(
            env, "admin", "reset-password", "--username", "developer1", "--password", "-", stdin="N3w!Password#xyz\n"
        ).returncode
        == 0
    )
    assert wcp360(env, "admin", "reset-2fa", "--username", "developer1").returncode == 0


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (
            ["--username", "x1", "--email", "x1@t.test", "--roles", "wizard", "--password", "-"],
            STRONG,
            "unknown role(s): wizard",
        ),
        (
            ["--username", "x1", "--email", "x1@t.test", "--roles", "viewer", "--password", "-"],
            "password",
            "password must be at least 12",
        ),
        (["--username", "x 1", "--email", "x1@t.test", "--roles", "viewer", "--password", "-"], STRONG, "username"),
        (["--username", "x1", "--email", "bad", "--roles", "viewer", "--password", "-"], STRONG, "invalid email"),
        (["--username", "x1", "--email", "x1@t.test", "--roles", "viewer", "--password", "-"], "", "no password"),
        (["--username", "x1", "--email", "x1@t.test", "--roles", "viewer"], None, "--password -"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(
    env: dict[str, str], args: list[str], stdin: str | None, fragment: str
) -> None:
    result = wcp360(env, "admin", "create-user", *args, stdin=stdin)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert users(env) == []


def test_unknown_user_is_one_line(env: dict[str, str]) -> None:
    result = run_process(env, "admin", "disable-user", "--username", "ghost")
    assert result.returncode == 1 and result.stderr.strip() == "error: no user named 'ghost'"


def test_config_validate_and_show_redacts(tmp_path: Path) -> None:
    secret = "a-very-long-and-very-real-jwt-secret-value-123456"
    etc = write_files(tmp_path / "etc", {"security.yml": f'auth:\n  jwt:\n    secret: "{secret}"\n'})
    env = {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(tmp_path / "data")}
    ok = wcp360(env, "config", "validate")
    assert ok.returncode == 0 and "config OK (production mode" in ok.stdout
    shown = wcp360(env, "config", "show")
    assert shown.returncode == 0 and secret not in shown.stdout
    assert json.loads(shown.stdout)["auth"]["jwt"]["secret"] == "**********"
    (etc / "security.yml").chmod(0o644)
    bad = wcp360(env, "config", "validate")
    assert bad.returncode == 2 and "readable by group/others" in bad.stderr


def test_broken_config_is_one_line_with_file_key_and_line(tmp_path: Path) -> None:
    etc = write_files(tmp_path / "etc", {"rbac.yml": "roles:\n  admin:\n    permisions: []\n"})
    env = {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(tmp_path / "data")}
    result = run_process(env, "admin", "list-users")
    assert result.returncode == 2
    expected = "error: rbac.yml:3: roles.admin.permisions: unknown key (did you mean 'permissions'?)"
    assert result.stderr.strip() == expected


def test_db_upgrade_is_idempotent(env: dict[str, str]) -> None:
    for _ in range(2):
        result = wcp360(env, "db", "upgrade")
        assert result.returncode == 0, result.stderr


def test_a_missing_data_directory_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    # The first hour: without WCP360_DATA_DIR the CLI used to make a new production install under
    # /var/lib/wcp360, list an empty table and exit 0.
    config_dir = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "security.yml": TEST_SECURITY_YML})
    missing = tmp_path / "nowhere" / "data"
    env = {**os.environ, "WCP360_CONFIG_DIR": str(config_dir), "WCP360_DATA_DIR": str(missing)}
    for args in (("admin", "list-users"), ("audit", "search"), ("ids", "blocks"), ("doctor",)):
        result = run_process(env, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and str(missing) in result.stderr and "dev.py cli" in result.stderr
    assert not (tmp_path / "nowhere").exists()
    # Setting WCP360 up is explicit.
    assert run_process(env, "db", "upgrade").returncode == 0 and missing.is_dir()
    assert run_process(env, "admin", "list-users").returncode == 0


def test_config_validate_lists_every_problem_with_lines_and_suggestions(tmp_path: Path) -> None:
    etc = write_files(
        tmp_path / "etc",
        {
            "wcp360.yml": "listn: x\nmode: dev\nhttp:\n  max_body_sise: 5\nscheduler:\n  tick: soon\n",
            "sandbox.yml": "sandbox:\n  workrs: 2\n  resource_limits:\n    max_memroy: 5\n",
        },
    )
    result = wcp360({**os.environ, "WCP360_CONFIG_DIR": str(etc)}, "config", "validate")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines == [
        "error: wcp360.yml:1: listn: unknown key (did you mean 'listen'?)",
        "error: wcp360.yml:4: http.max_body_sise: unknown key (did you mean 'max_body_size'?)",
        "error: wcp360.yml:6: scheduler.tick: invalid duration 'soon': expected a number and a unit "
        "(ms, s, m, h, d, w, y) (got 'soon')",
        "error: sandbox.yml:2: sandbox.workrs: unknown key (did you mean 'workers'?)",
        "error: sandbox.yml:4: sandbox.resource_limits.max_memroy: unknown key (did you mean 'max_memory'?)",
    ]
