"""GET /api/v1/auth/me (JWT verify + session lookup + policy) beside a bare endpoint, same server, same run.

    uv run python benchmarks/bench_auth_me.py [--requests 4000] [--rounds 5] [--clients 1 4]

The server is real uvicorn in its own process on 127.0.0.1 with the embedded SQLite default.
Rounds alternate bare and /me so drift on a shared machine hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import free_port, load, medians, start_server, wait_ready, write_config

PASSWORD = "Quiet!Harbour#2026x"


def serve(port: int, data_dir: str) -> None:
    import uvicorn

    from wcp360.api.app import create_app
    from wcp360.config import load_config
    from wcp360.logs import configure_logging
    from wcp360.runtime import Runtime

    configure_logging("warning")
    rt = Runtime.open(load_config(Path(data_dir) / "etc", Path(data_dir) / "data", env={}))
    app = create_app(rt)

    @app.get("/bench/bare")
    def bare() -> dict[str, Any]:
        # The same stack (middleware, sync route in the threadpool), none of the auth work.
        return {"status": "ok"}

    @app.get("/bench/bare-async")
    async def bare_async() -> dict[str, Any]:
        # The floor: the same stack without the threadpool hop (/me takes none on SQLite).
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, server_header=False)


def prepare(data_dir: str) -> str:
    from wcp360.logs import configure_logging

    configure_logging("warning")
    from wcp360.authz import Principal
    from wcp360.config import load_config
    from wcp360.runtime import Runtime

    write_config(Path(data_dir) / "etc", {})
    rt = Runtime.open(load_config(Path(data_dir) / "etc", Path(data_dir) / "data", env={}))
    rt.users.create(Principal.host_admin(), "bench", "bench@example.test", PASSWORD, ["developer"])
    token = rt.auth.login("bench", PASSWORD).access_token
    rt.close()
    return token


def argon2_hash_ms(samples: int = 15) -> float:
    from wcp360.config.security import Argon2Config
    from wcp360.identity.passwords import PasswordHasher

    hasher = PasswordHasher(Argon2Config())
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        hasher.hash(PASSWORD)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        token = prepare(data_dir)
        port = free_port()
        server = start_server(serve, port, data_dir)
        try:
            wait_ready(port)
            auth = {"Authorization": f"Bearer {token}"}
            report: dict[str, Any] = {"argon2_hash_ms": round(argon2_hash_ms(), 2), "runs": []}
            for clients in args.clients:
                load(port, "/bench/bare", {}, 500, clients, "warmup")
                load(port, "/bench/bare-async", {}, 500, clients, "warmup")
                load(port, "/api/v1/auth/me", auth, 500, clients, "warmup")
                results: dict[str, list[Any]] = {"bare": [], "bare_async": [], "me": []}
                for _ in range(args.rounds):
                    results["bare"].append(load(port, "/bench/bare", {}, args.requests, clients, "bare"))
                    results["bare_async"].append(load(port, "/bench/bare-async", {}, args.requests, clients, "async"))
                    results["me"].append(load(port, "/api/v1/auth/me", auth, args.requests, clients, "me"))
                row: dict[str, Any] = {"clients": clients}
                for name, rounds in results.items():
                    row.update({f"{name}_{key}": value for key, value in medians(rounds).items()})
                for base in ("bare", "bare_async"):
                    row[f"p50_ratio_vs_{base}"] = round(row["me_p50_ms"] / row[f"{base}_p50_ms"], 2)
                    row[f"p99_ratio_vs_{base}"] = round(row["me_p99_ms"] / row[f"{base}_p99_ms"], 2)
                    row[f"throughput_ratio_vs_{base}"] = round(row[f"{base}_rps"] / row["me_rps"], 2)
                report["runs"].append(row)
            print(json.dumps(report, indent=2))
        finally:
            server.terminate()
            server.join(10)


if __name__ == "__main__":
    main()
