"""config_change events: every start compares the effective configuration with the last one and
records each changed key path with its old and new value, secrets never included."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CapturingSink, write_files
from wcp360.audit.config_changes import record_config_changes
from wcp360.config import load_config


def test_changes_are_recorded_key_by_key(tmp_path: Path, audit_events: CapturingSink) -> None:
    etc = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "tls.yml": "tls:\n  min_version: '1.3'\n"})
    (tmp_path / "data").mkdir()

    def start() -> list[str]:
        return record_config_changes(load_config(etc, tmp_path / "data", env={}))

    assert start() == ["tls.yml", "wcp360.yml"]  # the first start: recorded as such
    first = audit_events.of("config_change")[-1]
    assert first.details["first_start"] is True
    assert start() == []  # nothing changed, nothing recorded
    (etc / "tls.yml").write_text("tls:\n  min_version: '1.2'\n")
    (etc / "wcp360.yml").write_text("mode: dev\nlisten: 127.0.0.1:9090\n")
    (etc / "security.yml").write_text('auth:\n  jwt:\n    secret: "a-new-secret-that-is-long-enough-0123456789"\n')
    assert start() == ["security.yml", "tls.yml", "wcp360.yml"]
    events = {e.resource_id: e.details for e in audit_events.of("config_change")[-3:]}
    assert events["tls.yml"]["changes"] == [{"path": "tls.min_version", "was": "1.3", "now": "1.2"}]
    assert {"path": "server.listen", "was": "127.0.0.1:8080", "now": "127.0.0.1:9090"} in events["wcp360.yml"][
        "changes"
    ]
    secret_change = [c for c in events["security.yml"]["changes"] if c["path"] == "auth.jwt.secret"]
    assert secret_change and "a-new-secret" not in str(secret_change)
    assert start() == []
    assert len(audit_events.of("config_change")) == 4
