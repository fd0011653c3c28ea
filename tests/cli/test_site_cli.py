"""`wcp360 site ...` as the host administrator: create, upload, show, delete through the real
nginx; bad input is one line, a non-zero exit, and changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_admin_cli import wcp360
from tests.cli.test_tenant_cli import admin_env
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from tests.pki import free_port

NAME = f"wtsite{os.getpid() % 100000}"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    web = Path(tempfile.mkdtemp(prefix="wcp360-web-", dir="/var/tmp"))
    os.chmod(web, 0o755)  # noqa: S103 - traversable, as /srv/www is
    wcp360_yml = (
        f"mode: dev\ntenants:\n  home_root: {web / 'www'}\n  archive_dir: {web / 'archives'}\n"
        f"  uid_min: {TEST_UID_MIN}\n  uid_max: {TEST_UID_MAX}\n"
        f"  websites:\n    listen_addresses: ['127.0.0.1']\n    http_port: {free_port()}\n"
        f"    https_port: {free_port()}\n    acme: {{enabled: false}}\n"
    )
    yield admin_env(tmp_path, wcp360_yml)
    pid = tmp_path / "data" / "agent" / "web" / "run" / "nginx.pid"
    if pid.exists():
        os.kill(int(pid.read_text()), signal.SIGQUIT)
    shutil.rmtree(web, ignore_errors=True)


def test_a_site_from_the_cli(env: dict[str, str], tmp_path: Path) -> None:
    assert wcp360(env, "tenant", "create", NAME, "--owner", "shopowner").returncode == 0
    try:
        made = wcp360(env, "site", "create", NAME, "www", f"Bücher.{NAME}.test", "--format", "json")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)[0]["domains"] == [f"xn--bcher-kva.{NAME}.test"]
        archive = tmp_path / "site.zip"
        with zipfile.ZipFile(archive, "w") as out:
            out.writestr("index.html", "<h1>hi</h1>")
        uploaded = wcp360(env, "site", "upload", NAME, "www", str(archive))
        assert uploaded.returncode == 0 and uploaded.stdout.startswith("1 files"), uploaded.stderr
        shown = wcp360(env, "site", "show", NAME, "www")
        assert "self_signed" in shown.stdout and "xn--bcher-kva" in shown.stdout
        for argv in (
            ("site", "create", NAME, "bad", "not a domain"),
            ("site", "create", NAME, "other", f"xn--bcher-kva.{NAME}.test"),  # taken
            ("site", "create", NAME, "x\x1b[2J", f"x.{NAME}.test"),  # an escape for the admin's terminal
            ("site", "upload", NAME, "www", str(archive), "--path", "../.."),
            ("site", "delete", NAME, "www", "--confirm", "nope"),
        ):
            refused = wcp360(env, *argv)
            assert refused.returncode != 0 and refused.stderr.count("\n") == 1, (argv, refused.stderr)
            assert "\x1b" not in refused.stderr
        listed = json.loads(wcp360(env, "site", "list", NAME, "--format", "json").stdout)
        assert [site["name"] for site in listed] == ["www"]
        deleted = wcp360(env, "site", "delete", NAME, "www", "--confirm", "www")
        assert deleted.returncode == 0 and "deleted" in deleted.stdout
    finally:
        assert wcp360(env, "tenant", "delete", NAME, "--confirm", NAME).returncode == 0
