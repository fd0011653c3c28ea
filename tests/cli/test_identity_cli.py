"""`wcp360 admin link-identity | unlink-identity` and the sign-in column of `list-users`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.cli.test_admin_cli import wcp360
from tests.conftest import TEST_SECURITY_YML, write_files
from tests.helpers import STRONG


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    security = yaml.safe_load(TEST_SECURITY_YML)
    # Linking contacts nobody: a directory on a closed loopback port is enough here.
    ldap = {"server": "ldap://127.0.0.1:9", "start_tls": False, "bind_dn": "cn=svc,dc=t", "bind_password": "x",
            "user_base": "ou=people,dc=t"}  # fmt: skip
    security["auth"]["providers"] = [{"type": "local"}, {"type": "ldap", "enabled": True, "config": ldap}]
    config_dir = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "security.yml": yaml.safe_dump(security)})
    (tmp_path / "data").mkdir(mode=0o700)
    return {**os.environ, "WCP360_CONFIG_DIR": str(config_dir), "WCP360_DATA_DIR": str(tmp_path / "data")}


def test_link_list_and_unlink(env: dict[str, str]) -> None:
    created = wcp360(env, "admin", "create-user", "--username", "dana", "--email", "dana@example.test",
                     "--roles", "viewer", "--password", "-", stdin=STRONG + "\n")  # fmt: skip
    assert created.returncode == 0, created.stderr
    subject = "5c96fad2-7fa6-1041-9339-0d4d4c2238a1"
    linked = wcp360(env, "admin", "link-identity", "--username", "dana", "--provider", "ldap", "--subject", subject)
    assert linked.returncode == 0, linked.stderr
    listed = json.loads(wcp360(env, "admin", "list-users", "--format", "json").stdout)
    assert [u["sign_in"] for u in listed] == [["local", "ldap"]]
    assert "local,ldap" in wcp360(env, "admin", "list-users", "--format", "csv").stdout
    again = wcp360(env, "admin", "link-identity", "--username", "dana", "--provider", "ldap", "--subject", subject)
    assert again.returncode != 0 and "already linked" in again.stderr
    assert wcp360(env, "admin", "unlink-identity", "--username", "dana", "--provider", "ldap").returncode == 0
    listed = json.loads(wcp360(env, "admin", "list-users", "--format", "json").stdout)
    assert [u["sign_in"] for u in listed] == [["local"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--provider", "google", "--subject", "x"), "no enabled identity provider"),
        (("--provider", "ldap", "--subject", "evil\x1b]0;owned\x07"), "printable"),
        (("--provider", "ldap", "--subject", " "), "printable"),
    ],
)
def test_bad_links_get_one_line_and_change_nothing(env: dict[str, str], args: tuple[str, ...], message: str) -> None:
    wcp360(env, "admin", "create-user", "--username", "erin", "--email", "erin@example.test",
           "--roles", "viewer", "--password", "-", stdin=STRONG + "\n")  # fmt: skip
    refused = wcp360(env, "admin", "link-identity", "--username", "erin", *args)
    assert refused.returncode != 0 and message in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "\x1b" not in refused.stderr
    listed = json.loads(wcp360(env, "admin", "list-users", "--format", "json").stdout)
    assert [u["sign_in"] for u in listed] == [["local"]]
