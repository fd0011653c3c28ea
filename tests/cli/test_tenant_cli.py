"""`wcp360 tenant ...` as the host administrator: the same service and events as the API, one
line and a non-zero exit for bad input, and nothing changed by it."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from tests.cli.test_admin_cli import wcp360
from tests.conftest import TEST_SECURITY_YML, write_files
from tests.helpers import STRONG, dev_wcp360_yml

NAME = f"wtcli{os.getpid() % 100000}"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return admin_env(tmp_path, dev_wcp360_yml(tmp_path))


def admin_env(tmp_path: Path, wcp360_yml: str) -> dict[str, str]:
    """The CLI's environment on this configuration, with a reseller `shopowner` to own tenants."""
    config_dir = write_files(tmp_path / "etc", {"wcp360.yml": wcp360_yml, "security.yml": TEST_SECURITY_YML})
    (tmp_path / "data").mkdir(mode=0o700)
    environment = {**os.environ, "WCP360_CONFIG_DIR": str(config_dir), "WCP360_DATA_DIR": str(tmp_path / "data")}
    created = wcp360(
        environment, "admin", "create-user", "--username", "shopowner", "--email", "s@example.test",
        "--roles", "reseller", "--password", "-", stdin=STRONG + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return environment


def test_the_whole_life_of_a_tenant(env: dict[str, str], tmp_path: Path) -> None:
    created = wcp360(env, "tenant", "create", NAME, "--owner", "shopowner", "--processes", "32", "--format", "json")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert tenant["limits"]["processes"] == 32 and pwd.getpwnam(NAME).pw_uid == tenant["uid"]
    listed = json.loads(wcp360(env, "tenant", "list", "--format", "json").stdout)
    assert [t["name"] for t in listed] == [NAME]
    assert "limits: disk" in wcp360(env, "tenant", "show", NAME).stdout
    assert "suspended" in wcp360(env, "tenant", "suspend", NAME).stdout
    assert "active" in wcp360(env, "tenant", "resume", NAME).stdout
    assert (
        '"memory": 268435456' in wcp360(env, "tenant", "limits", NAME, "--memory", "256MiB", "--format", "json").stdout
    )
    refused = wcp360(env, "tenant", "delete", NAME, "--confirm", f"{NAME}x")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and (tmp_path / "srv" / "www" / NAME).is_dir()
    deleted = wcp360(env, "tenant", "delete", NAME, "--confirm", NAME)
    assert deleted.returncode == 0, deleted.stderr
    assert not (tmp_path / "srv" / "www" / NAME).exists()
    audit = wcp360(env, "audit", "search", "--action", "tenant_create", "--format", "json")
    assert NAME in audit.stdout


@pytest.mark.parametrize("name", ["root", "x;id", "../x", "Big"])
def test_bad_names_are_one_line_and_change_nothing(env: dict[str, str], tmp_path: Path, name: str) -> None:
    result = wcp360(env, "tenant", "create", name, "--owner", "shopowner")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "srv" / "www").exists() or not any((tmp_path / "srv" / "www").iterdir())


def test_an_unknown_tenant_is_one_line(env: dict[str, str]) -> None:
    result = wcp360(env, "tenant", "suspend", "wtnosuch")
    assert result.returncode == 1 and "no tenant named 'wtnosuch'" in result.stderr


def test_processes_need_the_agent_process(env: dict[str, str]) -> None:
    """Without `wcp360 agent` a process started by this short-lived command would die with it:
    refused in one line; the listing works (in-process, nothing running)."""
    assert wcp360(env, "tenant", "create", NAME, "--owner", "shopowner").returncode == 0
    refused = wcp360(env, "tenant", "process", "start", NAME, "web", "--", "sleep", "1")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "wcp360 agent" in refused.stderr
    bad = wcp360(env, "tenant", "process", "start", NAME, "php", "--runtime", "php", "--", "sh")
    assert bad.returncode == 2 and "takes no argv" in bad.stderr
    listed = wcp360(env, "tenant", "process", "list", NAME)
    assert listed.returncode == 0 and "usage: cpu" in listed.stdout
    assert wcp360(env, "tenant", "delete", NAME, "--confirm", NAME).returncode == 0


def test_a_tenants_databases_from_the_cli(env: dict[str, str]) -> None:
    assert wcp360(env, "tenant", "create", NAME, "--owner", "shopowner").returncode == 0
    made = wcp360(env, "db", "create", NAME, "shop", "--engine", "postgresql", "--format", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["database"] == f"{NAME}_shop" and json.loads(made.stdout)["password"]
    listed = wcp360(env, "db", "list", NAME, "--format", "json")
    assert [d["name"] for d in json.loads(listed.stdout)] == ["shop"] and "password" not in listed.stdout
    assert "shown once" in wcp360(env, "db", "rotate", NAME, "shop", "--engine", "postgresql").stdout
    hostile = wcp360(env, "db", "create", NAME, "shop;drop", "--engine", "postgresql")
    assert hostile.returncode == 1 and hostile.stderr.count("\n") == 1
    refused = wcp360(env, "db", "drop", NAME, "shop", "--engine", "postgresql", "--confirm", "other")
    assert refused.returncode == 1 and "shop" in wcp360(env, "db", "list", NAME).stdout
    dropped = wcp360(env, "db", "drop", NAME, "shop", "--engine", "postgresql", "--confirm", "shop")
    assert dropped.returncode == 0 and "dropped" in dropped.stdout
    assert wcp360(env, "tenant", "delete", NAME, "--confirm", NAME).returncode == 0
