"""sqlmap (Debian's) against the tenant-database endpoints of a real `wcp360 serve`: every
parameter a client controls (the JSON body's name and engine, the path's engine and name, the
drop confirmation) at level 3, risk 2, on MariaDB and PostgreSQL alike. Run as root (tenants are
Linux users; the in-process agent reaches the servers' admin sockets):

    .venv/bin/python scripts/sqlmap_databases.py

Prints one line per target and sqlmap's verdict; exits 1 if sqlmap calls anything injectable.
The server's defences that would hide an injection from sqlmap (rate limits, IDS bans) are off
for the run, so every payload reaches the code under test. Result of the last run: docs/databases.md.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import wcp360_server  # noqa: E402

PASSWORD = "Quiet!Harbour#2026x"
FILES = {
    "security.yml": "auth:\n  two_factor:\n    required_roles: []\n",
    "rate_limit.yml": "rate_limiting:\n  enabled: false\n",
    "ids.yml": "intrusion_detection:\n  enabled: false\n",
}


def request(port: int, token: str, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else None


def sqlmap(
    port: int, token: str, label: str, url: str, method: str, data: str | None, output: Path, *extra: str
) -> bool:
    """True when sqlmap found nothing injectable."""
    command = [
        "sqlmap", "-u", url, "--method", method, "--batch", "--level", "3", "--risk", "2", "--flush-session",
        "--output-dir", str(output), "-H", f"Authorization: Bearer {token}", "--disable-coloring",
        "--skip-waf", "--timeout", "30", "--retries", "1",
    ]  # fmt: skip
    if data is not None:
        command += ["--data", data, "-H", "Content-Type: application/json"]
    command += extra
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    text = run.stdout + run.stderr
    injectable = "is vulnerable" in text or "sqlmap identified the following injection point" in text
    verdict = "INJECTABLE" if injectable else "nothing injectable"
    tested = text.count("testing '")
    print(f"{label:60} {verdict} ({tested} techniques tried, exit {run.returncode})", flush=True)
    if tested == 0:
        print(
            "    " + "\n    ".join(line for line in text.splitlines() if "[CRITICAL]" in line or "[WARNING]" in line),
            flush=True,
        )
    return not injectable


def main() -> int:
    if shutil.which("sqlmap") is None:
        print("sqlmap is not installed (apt install sqlmap)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        root.chmod(0o755)
        files = {
            **FILES,
            "wcp360.yml": f"mode: dev\ntenants:\n  home_root: {root / 'www'}\n  archive_dir: {root / 'archives'}\n"
            "  uid_min: 43000\n  uid_max: 43999\n",
        }
        with wcp360_server(root, files, "reseller", PASSWORD, roles="reseller") as (port, token):
            name = f"sq{uuid.uuid4().hex[:8]}"
            status, tenant = request(port, token, "POST", "/api/v1/tenants", {"name": name})
            assert status == 201, tenant
            tenant_id = tenant["id"]  # type: ignore[index]
            base = f"http://127.0.0.1:{port}/api/v1/tenants/{tenant_id}/databases"
            clean = True
            for engine in ("mariadb", "postgresql"):
                status, made = request(port, token, "POST", f"/api/v1/tenants/{tenant_id}/databases",
                                       {"engine": engine, "name": "shop"})  # fmt: skip
                assert status == 201, made
                targets = [
                    (f"{engine}: POST body name", base, "POST", json.dumps({"engine": engine, "name": "probe*"})),
                    (f"{engine}: POST body engine", base, "POST", '{"engine": "' + engine + '*", "name": "probe"}'),
                    (f"{engine}: rotate, path name", f"{base}/{engine}/shop*/rotate", "POST", None),
                    (f"{engine}: rotate, path engine", f"{base}/{engine}*/shop/rotate", "POST", None),
                ]
                for label, url, method, data in targets:
                    clean = sqlmap(port, token, label, url, method, data, root / "sqlmap") and clean
                # The drop's confirmation: a query parameter, named (sqlmap's marker is for bodies and paths);
                # `--text-only` because every problem+json carries its own request id.
                drop = f"{base}/{engine}/shop?confirm=nope"
                label = f"{engine}: drop, confirm"
                clean = (
                    sqlmap(port, token, label, drop, "DELETE", None, root / "sqlmap", "-p", "confirm", "--text-only")
                    and clean
                )
            _, listed = request(port, token, "GET", f"/api/v1/tenants/{tenant_id}/databases")
            print(f"after the run the tenant has: {[d['database'] for d in listed]}")  # type: ignore[union-attr]
            request(port, token, "DELETE", f"/api/v1/tenants/{tenant_id}?confirm={name}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
