"""Values written by outsiders reach the admin's terminal as text: no Rich markup error, no raw
escape sequence, in every table, CSV and JSON the CLI prints (and in its one-line errors)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.cli.test_admin_cli import wcp360
from tests.conftest import TEST_SECURITY_YML, write_files
from tests.helpers import HOST, make_user
from wcp360.api.app import create_app
from wcp360.audit.setup import trail_scope
from wcp360.cli.output import table, terminal_safe
from wcp360.config import load_config
from wcp360.runtime import Runtime

HOSTILE = [
    "[/x]",
    "[bold red]pwned[/]",
    "\x1b]0;owned\x07",
    "\x1b[2J\x1b[H",
    "\x9b31m",  # C1 CSI
    "\u202egnp.exe",  # right-to-left override
    "a\rb\nc",
]
RAW_CONTROLS = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) != "\n"] + ["\u202e"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config_dir = write_files(
        tmp_path / "etc",
        {
            "wcp360.yml": "mode: dev\n",
            "security.yml": TEST_SECURITY_YML,
            "rate_limit.yml": "rate_limiting:\n  enabled: true\n  global: {requests_per_minute: 60, burst: 0}\n",
        },
    )
    return {**os.environ, "WCP360_CONFIG_DIR": str(config_dir), "WCP360_DATA_DIR": str(tmp_path / "data")}


def _clean(text: str) -> None:
    assert not any(c in text for c in RAW_CONTROLS), repr(text)


def test_every_table_survives_hostile_values(env: dict[str, str]) -> None:
    config = load_config(env=env)
    rt = Runtime.open(config)
    try:
        with trail_scope(config, rt.db):
            make_user(rt, "markup", ["viewer"])
            rt.users.update(HOST, rt.users.find_id("markup"), email="[/x]@example.com")
            for i, value in enumerate(HOSTILE):
                rt.defense.bans.block(None, f"203.0.113.{i + 1}", timedelta(hours=1), value)
            # An unauthenticated request refused with 429, audited with its hostile path.
            with TestClient(create_app(rt), raise_server_exceptions=False) as web:
                web.get("/healthz")
                for path in ("/api/v1/[/x]", "/api/v1/%1b]0;owned%07", "/api/v1/%9b31m"):
                    assert web.get(path).status_code == 429
    finally:
        rt.close()
    for args in (
        ("admin", "list-users"),
        ("admin", "list-users", "--format", "csv"),
        ("admin", "list-users", "--format", "json"),
        ("audit", "search", "--format", "table"),
        ("audit", "search", "--format", "json"),
        ("audit", "tail", "-n", "100"),
        ("ids", "blocks"),
        ("ids", "blocks", "--format", "json"),
    ):
        result = wcp360(env, *args)
        assert result.returncode == 0, (args, result.stderr)
        _clean(result.stdout)
    assert "[/x]" in wcp360(env, "audit", "search").stdout  # shown as text, not swallowed as markup
    assert "\\x1b" in wcp360(env, "ids", "blocks").stdout


def test_an_error_line_carries_no_escape(env: dict[str, str]) -> None:
    result = wcp360(env, "admin", "disable-user", "--username", "\x1b]0;owned\x07")
    assert result.returncode != 0
    _clean(result.stderr)
    assert result.stderr.count("\n") == 1


@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_tables_render_any_text_inertly(cells: list[str]) -> None:
    rendered = table([f"c{i}" for i in range(len(cells))], [cells], width=400)
    _clean(rendered.replace("\n", ""))
    for cell in cells:
        assert not any(c in terminal_safe(cell) for c in RAW_CONTROLS)
