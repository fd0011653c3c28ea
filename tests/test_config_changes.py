"""config_change events are recorded when config files differ from the last start."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CapturingSink, write_files
from wcp360.config import load_config
from wcp360.config.changes import record_config_changes


def test_changes_are_recorded_once(tmp_path: Path, audit_events: CapturingSink) -> None:
    etc = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "tls.yml": "tls:\n  min_version: '1.3'\n"})
    config = load_config(etc, tmp_path / "data", env={})
    config.data_dir.mkdir(parents=True)
    assert record_config_changes(config) == ["tls.yml", "wcp360.yml"]
    assert record_config_changes(config) == []
    (etc / "tls.yml").write_text("tls:\n  min_version: '1.2'\n")
    (etc / "wcp360.yml").unlink()
    assert record_config_changes(config) == ["tls.yml", "wcp360.yml"]
    last = audit_events.of("config_change")[-1]
    assert last.details["files"]["wcp360.yml"] == "removed" and last.details["first_start"] is False
    assert len(audit_events.of("config_change")) == 2
