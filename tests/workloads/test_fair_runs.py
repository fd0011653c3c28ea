"""One account cannot stall another's runs or the API: runs in flight are counted per account over
every credential, a run waits for a worker on the event loop (bounded, then 503), and a free worker
goes to the account served longest ago. Runs are held open by a local gate server (the module waits
in an outbound request until the test opens the gate), so nothing here depends on timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import problem_of, truncate_all, write_files
from tests.helpers import Account, bearer, signed_in
from tests.workloads.test_execution_api import HELLO, upload
from tests.workloads.test_outbound import fetcher
from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.runtime import Runtime


class Gate(BaseHTTPRequestHandler):
    opened = threading.Event()
    arrived = threading.Semaphore(0)

    def do_GET(self) -> None:
        Gate.arrived.release()
        Gate.opened.wait(60)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def gate() -> Iterator[str]:
    Gate.opened, Gate.arrived = threading.Event(), threading.Semaphore(0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Gate.opened.set()
    server.shutdown()


def arrivals(count: int) -> None:
    """Wait until `count` runs are inside the gate (each holds its worker)."""
    for _ in range(count):
        assert Gate.arrived.acquire(timeout=120), "a run never reached the gate"


def make_runtime(config_dir: Path, tmp_path: Path, gate: str, workers: int, per_user: int, wait: str) -> Runtime:
    sandbox = f"""sandbox:
  precompile: false
  workers: {workers}
  max_concurrent_runs_per_user: {per_user}
  max_worker_wait: "{wait}"
  module_capabilities:
    "flood/blocker":
      network_access: true
      allowed_hosts: ["{gate}"]
"""
    write_files(config_dir, {"sandbox.yml": sandbox})
    return Runtime.open(load_config(config_dir, tmp_path / "fair-data"))


def two_accounts(
    client: TestClient, rt: Runtime, gate: str, with_totp: bool = False
) -> tuple[Account, Account, str, str]:
    """The flood (with a module held open at the gate) and its victim (with a trivial module)."""
    flood = signed_in(client, rt, "flood", ["developer"], with_totp=with_totp)
    victim = signed_in(client, rt, "victim", ["developer"])
    blocker = upload(client, flood, fetcher(f"{gate}/hold"), "blocker")
    return flood, victim, blocker, upload(client, victim, HELLO, "hello")


def token(client: TestClient, account: Account) -> str:
    scopes = ["modules:read", "modules:execute"]
    response = client.post("/api/v1/auth/api-tokens", json={"name": "t", "scopes": scopes}, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def execute(client: TestClient, module_id: str, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/api/v1/modules/{module_id}/execute", json=body, headers=headers)


@contextmanager
def serving(
    request: pytest.FixtureRequest, config_dir: Path, tmp_path: Path, gate: str, **limits: Any
) -> Iterator[tuple[TestClient, Runtime]]:
    rt = make_runtime(config_dir, tmp_path, gate, **limits)
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            yield client, rt
    finally:
        Gate.opened.set()
        rt.close()
        if rt.db.is_postgres:
            truncate_all(request.getfixturevalue("pg_database"))


@pytest.fixture
def limited(
    request: pytest.FixtureRequest, config_dir: Path, tmp_path: Path, gate: str
) -> Iterator[tuple[TestClient, Runtime]]:
    with serving(request, config_dir, tmp_path, gate, workers=3, per_user=2, wait="60s") as served:
        yield served


def test_the_per_account_limit_counts_every_credential_and_others_run_on(
    limited: tuple[TestClient, Runtime], gate: str
) -> None:
    client, rt = limited
    flood, victim, blocker, hello = two_accounts(client, rt, gate, with_totp=True)
    first, second = token(client, flood), token(client, flood)
    with ThreadPoolExecutor(4) as pool:
        held = [
            pool.submit(execute, client, blocker, flood.headers),
            pool.submit(execute, client, blocker, bearer(first)),
        ]
        arrivals(2)
        # A third credential of the same account: over the limit, refused at once, naming the key.
        refused = execute(client, blocker, bearer(second))
        assert refused.status_code == 429 and refused.headers["retry-after"]
        problem = problem_of(refused)
        assert problem["type"].endswith("run-limit") and "max_concurrent_runs_per_user" in problem["detail"]
        # Queued runs count too.
        assert execute(client, blocker, bearer(second), **{"async": True}).status_code == 202
        # Another account runs, signs in and reads while the flood holds its runs.
        assert execute(client, hello, victim.headers).json()["outcome"] == "ok"
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/auth/me", headers=victim.headers).status_code == 200
        assert client.get("/api/v1/modules", headers=victim.headers).status_code == 200
        assert client.post("/api/v1/auth/login", json={"username": "victim", "password": "nope"}).status_code == 401
        Gate.opened.set()
        assert [f.result().status_code for f in held] == [200, 200]


@pytest.fixture
def one_worker(
    request: pytest.FixtureRequest, config_dir: Path, tmp_path: Path, gate: str
) -> Iterator[tuple[TestClient, Runtime]]:
    with serving(request, config_dir, tmp_path, gate, workers=1, per_user=4, wait="1s") as served:
        yield served


def test_waiting_for_a_worker_is_bounded_and_names_the_key(one_worker: tuple[TestClient, Runtime], gate: str) -> None:
    client, rt = one_worker
    flood, victim, blocker, hello = two_accounts(client, rt, gate)
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(execute, client, blocker, flood.headers)
        arrivals(1)
        busy = execute(client, hello, victim.headers)
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert "max_worker_wait" in problem_of(busy)["detail"]
        Gate.opened.set()
        assert held.result().status_code == 200
    # Nothing leaked: the worker serves the next run.
    assert execute(client, hello, victim.headers).json()["outcome"] == "ok"


@pytest.fixture
def patient(
    request: pytest.FixtureRequest, config_dir: Path, tmp_path: Path, gate: str
) -> Iterator[tuple[TestClient, Runtime]]:
    with serving(request, config_dir, tmp_path, gate, workers=1, per_user=4, wait="120s") as served:
        yield served


def test_a_free_worker_goes_to_the_account_served_longest_ago(
    patient: tuple[TestClient, Runtime], gate: str
) -> None:
    client, rt = patient
    flood, victim, blocker, hello = two_accounts(client, rt, gate)
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(execute, client, blocker, flood.headers)
        arrivals(1)
        queued = [execute(client, blocker, flood.headers, **{"async": True}).json()["run_id"] for _ in range(3)]
        waiting_victim: Future[Any] = pool.submit(execute, client, hello, victim.headers)
        give_up = time.monotonic() + 120  # a safety bound against a hang, not a timing assumption
        while rt.executor.pool.waiting < 4:  # readiness: all four wait for the worker
            assert time.monotonic() < give_up, "the runs never queued for the worker"
            time.sleep(0.01)
        Gate.opened.set()
        victim_run = waiting_victim.result().json()
        assert held.result().status_code == 200
    runs = {r["run_id"]: r for r in client.get("/api/v1/runs?limit=50", headers=flood.headers).json()["items"]}
    for run_id in queued:
        while runs[run_id]["status"] != "finished":
            runs[run_id] = client.get(f"/api/v1/runs/{run_id}", headers=flood.headers).json()
    # The victim arrived after three queued flood runs, yet ran before all of them.
    assert all(victim_run["finished_at"] < runs[run_id]["finished_at"] for run_id in queued)
