"""The trail as the server and the CLI use it: API actions, redaction, reading back, metrics, CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.conftest import problem_of
from tests.helpers import STRONG, Account, signed_in
from wcp360 import audit
from wcp360.api.app import create_app
from wcp360.audit import Trail
from wcp360.audit.append_only import is_append_only, set_append_only
from wcp360.audit.setup import audit_file, trail_scope
from wcp360.cli.main import app as cli
from wcp360.runtime import Runtime
from wcp360.store.models import AuditLog
from wcp360.store.scope import SYSTEM


@pytest.fixture
def trail(rt: Runtime) -> Iterator[Trail]:
    with trail_scope(rt.config, rt.db, forward=True) as live:
        yield live


@pytest.fixture
def log_path(rt: Runtime) -> Path:
    directory, name, _ = audit_file(rt.config)
    return directory / name


def events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if '"checkpoint":true' not in line]


@pytest.fixture
def admin(client: TestClient, rt: Runtime, trail: Trail) -> Account:
    return signed_in(client, rt, "auditor", ["admin"])


def test_api_actions_are_recorded_with_request_context(
    client: TestClient, rt: Runtime, trail: Trail, log_path: Path
) -> None:
    client.post(
        "/api/v1/auth/login",
        json={"username": "ghost", "password": "Wrong!Passw0rd#1"},
        headers={"User-Agent": "curl/8", "X-Request-ID": "req-12345678"},
    )
    failure = [e for e in events(log_path) if e["action"] == "login_failure"][-1]
    assert failure["outcome"] == "failure" and failure["ip_address"] == "testclient"
    assert failure["user_agent"] == "curl/8" and failure["request_id"] == "req-12345678"
    assert set(failure) >= {
        "ts",
        "seq",
        "actor_id",
        "action",
        "resource_type",
        "resource_id",
        "ip_address",
        "user_agent",
        "outcome",
        "request_id",
        "details",
        "prev",
        "chain",
    }
    # The seed's analysis command works on the file as written.
    assert sum("login_failure" in line for line in log_path.read_text().splitlines()) == 1


def test_sensitive_fields_are_redacted_at_any_depth(rt: Runtime, trail: Trail, log_path: Path) -> None:
    audit.record(
        "config_change",
        actor_id="host",
        details={
            "password": "hunter2",
            "nested": {"api_token": "wcp_x", "list": [{"client_secret": "s3"}]},
            "public_key_id": "abc",
            "ok": "visible",
        },
    )
    text = log_path.read_text()
    assert "hunter2" not in text and "wcp_x" not in text and 's3"' not in text
    recorded = events(log_path)[-1]["details"]
    assert recorded == {
        "password": "[redacted]",
        "nested": {"api_token": "[redacted]", "list": [{"client_secret": "[redacted]"}]},
        "public_key_id": "[redacted]",
        "ok": "visible",
    }


def test_module_events_carry_module_id_at_top_level(rt: Runtime, trail: Trail, log_path: Path) -> None:
    audit.record("module_execute", actor_id="u", resource_type="module", resource_id="m-42")
    assert events(log_path)[-1]["module_id"] == "m-42"


def test_audit_api_pages_newest_first(client: TestClient, rt: Runtime, admin: Account) -> None:
    for _ in range(3):
        client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x"})
    first = client.get("/api/v1/audit?action=login_failure&limit=2", headers=admin.headers).json()
    seqs = [e["seq"] for e in first["items"]]
    assert len(seqs) == 2 and seqs[0] > seqs[1] and first["next_before_seq"] == seqs[1]
    rest = client.get(f"/api/v1/audit?action=login_failure&limit=2&before_seq={seqs[1]}", headers=admin.headers).json()
    assert len(rest["items"]) == 1 and rest["next_before_seq"] is None
    assert client.get("/api/v1/audit?since=yesterday", headers=admin.headers).status_code == 422


def test_audit_api_needs_audit_read(client: TestClient, rt: Runtime, trail: Trail, log_path: Path) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    denied = client.get("/api/v1/audit", headers=dev.headers)
    assert denied.status_code == 403
    last = events(log_path)[-1]
    assert last["action"] == "permission_denied" and last["details"]["permission"] == "audit:read"  # type: ignore[index]


def test_metrics_need_a_token_or_an_allowed_address(client: TestClient, rt: Runtime, admin: Account) -> None:
    assert client.get("/metrics").status_code == 401
    body = client.get("/metrics", headers=admin.headers).text
    for name in (
        "authentication_failures_total",
        "authorization_denials_total",
        "suspicious_modules_detected_total",
        "rate_limit_violations_total",
        "sandbox_violations_total",
        "audit_events_total",
        "audit_write_failures_total",
        "http_request_duration_seconds_bucket",
    ):
        assert name in body, name
    assert 'route="/api/v1/auth/me"' in body or 'route="/api/v1/auth/2fa/confirm"' in body
    server = rt.config.server.model_copy(
        update={"metrics": rt.config.server.metrics.model_validate({"allow_from": ["127.0.0.0/8"]})}
    )
    rt.config = rt.config.model_copy(update={"server": server})
    with TestClient(create_app(rt), client=("127.0.0.1", 40000)) as scraper:
        assert scraper.get("/metrics").status_code == 200
    with TestClient(create_app(rt), client=("192.0.2.7", 40000)) as outsider:
        assert problem_of(outsider.get("/metrics"))["status"] == 401


def test_database_copy_follows_the_file(client: TestClient, rt: Runtime, admin: Account, log_path: Path) -> None:
    client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x"})
    last_seq = events(log_path)[-1]["seq"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with rt.db.transaction(SYSTEM) as s:
            if s.scalar(select(func.max(AuditLog.seq))) == last_seq:
                break
        time.sleep(0.1)
    with rt.db.transaction(SYSTEM) as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) == last_seq


def cli_env(rt: Runtime) -> dict[str, str]:
    return {
        "WCP360_CONFIG_DIR": str(rt.config.config_dir),
        "WCP360_DATA_DIR": str(rt.config.data_dir),
        "WCP360_TEST_DB_PASSWORD": "app-password-for-tests",
    }


def test_cli_verify_export_key_and_tampering(rt: Runtime, tmp_path: Path, log_path: Path) -> None:
    runner = CliRunner()
    env = cli_env(rt)
    for name in ("cli1", "cli2"):
        result = runner.invoke(
            cli,
            [
                "admin",
                "create-user",
                "--username",
                name,
                "--email",
                f"{name}@t.test",
                "--roles",
                "viewer",
                "--password",
                "-",
            ],
            input=STRONG + "\n",
            env=env,
        )
        assert result.exit_code == 0, result.output
    ok = runner.invoke(cli, ["audit", "verify"], env=env)
    assert ok.exit_code == 0 and ok.stdout.startswith("OK: 2 events")
    exported = runner.invoke(cli, ["audit", "export-key"], env=env).stdout
    (tmp_path / "trusted.pem").write_text(exported)
    assert runner.invoke(cli, ["audit", "verify", "--pubkey", str(tmp_path / "trusted.pem")], env=env).exit_code == 0
    searched = runner.invoke(cli, ["audit", "search", "--action", "user_create", "--format", "json"], env=env)
    assert [e["details"]["username"] for e in json.loads(searched.stdout)] == ["cli1", "cli2"]
    tailed = runner.invoke(cli, ["audit", "tail", "-n", "1"], env=env)
    assert json.loads(tailed.stdout)["seq"] == 2
    # As root an attacker can lift `chattr +a` first; the chain still gives the edit away.
    set_append_only(log_path, False)
    log_path.write_text(log_path.read_text().replace('"username":"cli1"', '"username":"evil"'))
    bad = runner.invoke(cli, ["audit", "verify"], env=env)
    assert bad.exit_code == 1 and "FAILED: seq 1" in bad.stderr and "modified" in bad.stderr


def test_key_rotation_keeps_old_checkpoints_verifiable(rt: Runtime, tmp_path: Path) -> None:
    runner = CliRunner()
    env = cli_env(rt)
    runner.invoke(
        cli,
        ["admin", "create-user", "--username", "before", "--email", "b@t.test", "--roles", "viewer", "--password", "-"],
        input=STRONG + "\n",
        env=env,
    )
    old_keys = runner.invoke(cli, ["audit", "export-key"], env=env).stdout
    rotated = runner.invoke(cli, ["audit", "rotate-key"], env=env)
    assert rotated.exit_code == 0, rotated.output
    runner.invoke(
        cli,
        ["admin", "create-user", "--username", "after", "--email", "a@t.test", "--roles", "viewer", "--password", "-"],
        input=STRONG + "\n",
        env=env,
    )
    all_keys = runner.invoke(cli, ["audit", "export-key"], env=env).stdout
    assert all_keys.count("BEGIN PUBLIC KEY") == 2
    (tmp_path / "all.pem").write_text(all_keys)
    (tmp_path / "old.pem").write_text(old_keys)
    assert runner.invoke(cli, ["audit", "verify", "--pubkey", str(tmp_path / "all.pem")], env=env).exit_code == 0
    only_old = runner.invoke(cli, ["audit", "verify", "--pubkey", str(tmp_path / "old.pem")], env=env)
    assert only_old.exit_code == 1 and "unknown key" in only_old.stderr


def test_audit_files_are_append_only_where_allowed(tmp_path: Path) -> None:
    from wcp360.audit.logfile import AuditLogFile
    from wcp360.audit.signing import SigningKeys

    log = AuditLogFile(tmp_path / "log", SigningKeys(tmp_path / "keys"), 10**6, 5, True, 100, append_only=True)
    log.append([{"ts": "2026-01-01T00:00:00.000000Z", "action": "x", "outcome": "success", "details": {}}], True)
    log.close()
    log_path = tmp_path / "log" / "audit.log"
    if not log.append_only_active:
        # Degraded, and the trail says so (no CAP_LINUX_IMMUTABLE or no filesystem support).
        assert any(e["action"] == "audit_append_only_unavailable" for e in events(log_path))
        return
    assert is_append_only(log_path)
    with open(log_path, "ab") as handle:  # appending still works
        handle.write(b"")
    for attempt in (
        lambda: log_path.write_text("wiped"),
        lambda: log_path.unlink(),
        lambda: log_path.rename(log_path.with_suffix(".moved")),
    ):
        with pytest.raises(PermissionError):
            attempt()
