"""Per-module limits: an administrator raises one vetted module's limits, bound to its digest, so
the defaults stay tight. Other bytes under the same name, and other users' modules, keep the
defaults; every limit error names the key that set it; every run with its own limits says so in
its audit event."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from fastapi.testclient import TestClient

from tests.conftest import CapturingSink, runtime_for, write_files
from tests.helpers import signed_in
from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.config.errors import ConfigError
from wcp360.runtime import Runtime

WASM = {"Content-Type": "application/wasm"}
BIG_TABLE = bytes(wasmtime.wat2wasm('(module (table 5000 funcref) (func (export "_start")))'))
OTHER_BIG_TABLE = bytes(wasmtime.wat2wasm('(module (table 5001 funcref) (func (export "_start")))'))
# Counts down from 1,000,000: about four million instructions.
SPIN = bytes(
    wasmtime.wat2wasm(
        '(module (func (export "_start") (local i32) (local.set 0 (i32.const 1000000))'
        " (loop $l (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br_if $l (local.get 0)))))"
    )
)


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@pytest.fixture
def limited(config_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Runtime]]:
    sandbox = f"""sandbox:
  precompile: false
  workers: 1
  resource_limits:
    max_table_size: 1000
    max_fuel: 100000
  module_capabilities:
    "alice/big":
      digest: "sha256:{digest(BIG_TABLE)}"
      resource_limits:
        max_table_size: 6000
    "alice/spin":
      digest: "sha256:{digest(SPIN)}"
      resource_limits:
        max_fuel: 50000000
    "alice/tight":
      digest: "sha256:{digest(SPIN)}"
      resource_limits:
        max_fuel: 1000
"""
    write_files(config_dir, {"sandbox.yml": sandbox})
    with (
        runtime_for(config_dir, tmp_path / "limits-data", request) as rt,
        TestClient(create_app(rt), raise_server_exceptions=False) as client,
    ):
        yield client, rt


def _upload(client: TestClient, headers: dict[str, str], raw: bytes, name: str) -> tuple[int, dict[str, str]]:
    response = client.post(f"/api/v1/modules?name={name}", content=raw, headers={**headers, **WASM})
    body: dict[str, str] = response.json()
    return response.status_code, body


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_raised_limits_reach_exactly_the_vetted_bytes(
    limited: tuple[TestClient, Runtime], audit_events: CapturingSink
) -> None:
    client, rt = limited
    alice = signed_in(client, rt, "alice", ["developer"])
    mallory = signed_in(client, rt, "mallory", ["developer"])

    status, module = _upload(client, alice.headers, BIG_TABLE, "big")
    assert status == 201 and module["status"] == "active"
    run = client.post(f"/api/v1/modules/{module['id']}/execute", json={}, headers=alice.headers).json()
    assert run["outcome"] == "ok", run
    (event,) = [e for e in audit_events.of("module_execute") if e.details["run_id"] == run["run_id"]]
    assert event.details["grant"] == "alice/big" and event.details["own_limits"] == ["max_table_size"]

    # Other bytes under the vetted name, and the same bytes from another account: the defaults.
    status, refused = _upload(client, alice.headers, OTHER_BIG_TABLE, "big")
    assert status == 422 and "(sandbox.yml resource_limits.max_table_size)" in refused["detail"], refused
    status, refused = _upload(client, mallory.headers, BIG_TABLE, "big")
    assert status == 422 and "(sandbox.yml resource_limits.max_table_size)" in refused["detail"], refused


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_limit_error_names_the_key_that_set_it(limited: tuple[TestClient, Runtime]) -> None:
    client, rt = limited
    alice = signed_in(client, rt, "alice", ["developer"])
    outcomes = {}
    for name in ("spin", "tight", "elsewhere"):
        status, module = _upload(client, alice.headers, SPIN, name)
        assert status == 201, module
        run = client.post(f"/api/v1/modules/{module['id']}/execute", json={}, headers=alice.headers).json()
        outcomes[name] = (run["outcome"], run["message"])
    assert outcomes["spin"][0] == "ok"  # the raised budget
    assert outcomes["tight"] == (
        "out_of_fuel",
        "instruction budget of 1000 fuel units exhausted "
        "(sandbox.yml module_capabilities[alice/tight].resource_limits.max_fuel)",
    )
    assert outcomes["elsewhere"] == (
        "out_of_fuel",
        "instruction budget of 100000 fuel units exhausted (sandbox.yml resource_limits.max_fuel)",
    )


def test_own_limits_without_a_digest_are_a_config_error(tmp_path: Path) -> None:
    sandbox = 'sandbox:\n  module_capabilities:\n    "alice/big":\n      resource_limits:\n        max_memory: "1GB"\n'
    etc = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "sandbox.yml": sandbox})
    with pytest.raises(ConfigError) as error:
        load_config(etc, tmp_path / "data")
    assert "sandbox.yml:3" in str(error.value) and "digest" in str(error.value)
