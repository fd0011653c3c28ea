"""Capability grants name exactly the code they trust: `owner/name` (optionally pinned to a digest),
or a bare name for administrators' modules only. Another user's module of the same name gets
nothing (the attack: a second developer's same-named reader read the granted directory)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import CapturingSink, runtime_for, write_files
from tests.helpers import Account, signed_in
from tests.workloads.test_execution_api import upload
from wcp360.api.app import create_app
from wcp360.cli.main import app as cli
from wcp360.config import load_config
from wcp360.config.warnings import config_warnings
from wcp360.runtime import Runtime

WASI = "wasi_snapshot_preview1"
# Opens secret.txt in the first preopen and exits with the WASI errno (0: it could read it).
READER = (
    f'(module (import "{WASI}" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32)'
    f' (result i32))) (import "{WASI}" "proc_exit" (func $exit (param i32)))'
    ' (memory (export "memory") 1) (data (i32.const 100) "secret.txt")'
    " (func (export \"_start\") (call $exit (call $open (i32.const 3) (i32.const 0) (i32.const 100)"
    " (i32.const 10) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))))"
)
OTHER_READER = READER.replace("(memory (export", "(global i32 (i32.const 7)) (memory (export")


@pytest.fixture
def granted(config_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Runtime]]:
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "secret.txt").write_text("the granted directory")
    pinned = hashlib.sha256(bytes(wasmtime.wat2wasm(READER))).hexdigest()
    sandbox = f"""sandbox:
  precompile: false
  workers: 1
  module_capabilities:
    "alice/reader":
      file_access: true
      allowed_paths: ["{vault}"]
    "alice/pinned":
      digest: "sha256:{pinned}"
      file_access: true
      allowed_paths: ["{vault}"]
    "legacy":
      file_access: true
      allowed_paths: ["{vault}"]
"""
    write_files(config_dir, {"sandbox.yml": sandbox})
    with (
        runtime_for(config_dir, tmp_path / "grant-data", request) as rt,
        TestClient(create_app(rt), raise_server_exceptions=False) as client,
    ):
        yield client, rt


def _run(client: TestClient, account: Account, source: str, name: str) -> dict[str, object]:
    module_id = upload(client, account, source, name)
    response = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=account.headers)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def _read_it(result: dict[str, object]) -> bool:
    return (result["outcome"] == "exit" and result["exit_code"] == 0) or result["outcome"] == "ok"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_grant_never_reaches_another_users_module_of_the_same_name(
    granted: tuple[TestClient, Runtime], audit_events: CapturingSink
) -> None:
    client, rt = granted
    alice = signed_in(client, rt, "alice", ["developer"])
    mallory = signed_in(client, rt, "mallory", ["developer"])
    assert _read_it(_run(client, alice, READER, "reader"))
    stolen = _run(client, mallory, READER, "reader")
    assert not _read_it(stolen) and stolen["outcome"] == "capability_denied"
    grants = [e.details.get("grant") for e in audit_events.of("module_execute")]
    assert grants == ["alice/reader", None]  # the run that used a grant names it


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_pinned_grant_covers_only_those_bytes(granted: tuple[TestClient, Runtime]) -> None:
    client, rt = granted
    alice = signed_in(client, rt, "alice", ["developer"])
    assert _read_it(_run(client, alice, READER, "pinned"))
    assert not _read_it(_run(client, alice, OTHER_READER, "pinned"))  # a new version needs a new say


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_name_only_grant_applies_to_administrators_modules_only(granted: tuple[TestClient, Runtime]) -> None:
    client, rt = granted
    root = signed_in(client, rt, "boss", ["admin"])
    dev = signed_in(client, rt, "dev", ["developer"])
    assert _read_it(_run(client, root, READER, "legacy"))
    assert not _read_it(_run(client, dev, READER, "legacy"))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_seed_shape_loads_with_a_warning_naming_file_key_and_line(
    granted: tuple[TestClient, Runtime], config_dir: Path
) -> None:
    _, rt = granted
    (warning,) = config_warnings(rt.config)
    assert str(warning).startswith("sandbox.yml:12: sandbox.module_capabilities.legacy:")
    assert "owned by an admin" in str(warning)
    result = CliRunner().invoke(cli, ["config", "validate"], env={"WCP360_CONFIG_DIR": str(config_dir)})
    assert result.exit_code == 0 and "warning: sandbox.yml:12:" in result.stderr


@pytest.mark.parametrize("key", ["a/b/c", "Alice/x", "/x", "x/", "a b"])
def test_malformed_grant_keys_are_config_errors(tmp_path: Path, key: str) -> None:
    from wcp360.config.errors import ConfigError

    sandbox = f'sandbox:\n  module_capabilities:\n    "{key}":\n      file_access: true\n'
    etc = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "sandbox.yml": sandbox})
    with pytest.raises(ConfigError) as error:
        load_config(etc, tmp_path / "data")
    assert "sandbox.yml:2" in str(error.value) and "module_capabilities" in str(error.value)
