"""Run Debian's testssl.sh against a site and the panel's hostname as the agent serves them.

As root: `.venv/bin/python scripts/testssl_sites.py` (a few minutes). It starts the agent's
nginx on loopback ports in a temporary directory, with a tenant, a static site and the panel's
hostname proxied to a small HTTP server standing in for the panel; certificates are self-signed
(testssl.sh judges protocols, ciphers and headers, not trust). It prints what testssl.sh found
and fails (exit 1) on a protocol below TLS 1.2, a weak or non-forward-secret cipher, or a
missing HSTS header. Nothing leaves loopback.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.config.websites import AcmeConfig, WebsitesConfig
from wcp360.system.host import HostAgent
from wcp360.system.protocol import SiteCreate, SiteSpec, TenantCreate, TenantDelete

BAD_PROTOCOLS = {"SSLv2", "SSLv3", "TLS1", "TLS1_1"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def testssl(name: str, port: int, out: Path) -> list[dict[str, str]]:
    report = out / f"{name}.json"
    subprocess.run(
        ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--ip", "127.0.0.1",
         "-p", "-s", "-f", "-h", "-S", "--jsonfile", str(report), f"{name}:{port}"],
        check=False, capture_output=True, timeout=1800,
    )  # fmt: skip
    findings: list[dict[str, str]] = json.loads(report.read_text())
    return findings


def judge(findings: list[dict[str, str]]) -> list[str]:
    """The problems testssl.sh reported, in our terms."""
    problems = []
    for finding in findings:
        key, text, severity = finding["id"], finding["finding"], finding["severity"]
        if key in BAD_PROTOCOLS and "not offered" not in text:
            problems.append(f"{key}: {text}")
        weak = key.startswith("cipherlist_") and key != "cipherlist_STRONG"  # AVERAGE: CBC, no AEAD
        if weak and "not offered" not in text:
            problems.append(f"{key}: {text}")
        if key in {"HSTS_time", "PFS"} and severity != "OK":
            problems.append(f"{key}: {text}")
    for required in ("HSTS_time", "PFS"):
        if not any(f["id"] == required for f in findings):
            problems.append(f"{required}: not reported")
    return problems


def summary(findings: list[dict[str, str]]) -> list[str]:
    wanted = ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "cipherlist_NULL", "cipherlist_aNULL",
              "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE",
              "cipherlist_STRONG", "PFS", "PFS_ciphers", "PFS_ECDHE_curves", "ALPN_HTTP2", "HSTS_time",
              "banner_server", "sessionresumption_ticket")  # fmt: skip
    return [f"{f['id']}: {f['finding']}" for f in findings if f["id"] in wanted]


def main() -> int:
    if os.geteuid() != 0:
        print("testssl_sites: run as root (the agent's nginx, a tenant)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="wcp360-testssl-", dir="/var/tmp"))
    os.chmod(base, 0o755)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

    panel = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=panel.serve_forever, daemon=True).start()
    https_port = free_port()
    websites = WebsitesConfig(
        listen_addresses=["127.0.0.1"], http_port=free_port(), https_port=https_port,
        panel_hostname="panel.wcp360.test", acme=AcmeConfig(enabled=False),
    )  # fmt: skip
    config = TenantsConfig(home_root=base / "www", archive_dir=base / "archives", websites=websites)
    host = HostAgent(config, FirewallConfig(), base / "state", panel_upstream=f"127.0.0.1:{panel.server_port}")
    tenant = f"tls{uuid.uuid4().hex[:8]}"
    failed = False
    try:
        host.create(TenantCreate(tenant=tenant, limits=TenantLimits()))
        host.run(SiteCreate(tenant=tenant, site=SiteSpec(name="www", domains=["site.wcp360.test"])))
        host.websites.renew_due()  # the panel's hostname gets its certificate
        for name in ("site.wcp360.test", "panel.wcp360.test"):
            findings = testssl(name, https_port, base)
            if os.environ.get("TESTSSL_DEBUG"):
                shutil.copy(base / f"{name}.json", f"/tmp/{name}.json")
            print(f"## {name}")
            for line in summary(findings):
                print(f"- {line}")
            problems = judge(findings)
            for problem in problems:
                print(f"PROBLEM {problem}")
            failed = failed or bool(problems)
    finally:
        try:
            host.delete(TenantDelete(tenant=tenant))
        finally:
            host.websites.nginx.stop()
            panel.shutdown()
            shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
