"""Websites: static file throughput through the generated vhost beside nginx's default
configuration on the same file, and a site's creation to its first HTTPS answer with Pebble.

    .venv/bin/python benchmarks/bench_websites.py [--seconds 5] [--rounds 3] [--sites 5]   # as root

Throughput: wrk (2 threads, 32 connections, keep-alive) over HTTPS for one 16 KiB file, in
rounds alternating the two servers:
- generated: the agent's nginx with the site as WCP360 renders it (TLS from tls.yml, HSTS and
  the other headers, limit_req/limit_conn zones, disable_symlinks if_not_owner, its access log),
  the rate limit raised out of the way (the benchmark is one client address);
- default: a second nginx with Debian's default nginx.conf and `sites-available/default`, TLS
  added on the same port kind with the same certificate, same document root, same file.
wrk reaches both by the site's name (SNI) through an /etc/hosts of its own (a private mount
namespace: the host's file is not touched). Client and servers share this machine's cores.

Latency: `SiteCreate` (the record, nginx applies, the ACME order against Pebble with HTTP-01
answered by nginx, the certificate written, nginx applies again) until the first HTTPS answer
verified against Pebble's root; the ACME part is timed inside the issuer.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' Pebble
from tests.acme_server import free_port, pebble

from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.config.websites import AcmeConfig, WebsitesConfig
from wcp360.system.host import HostAgent
from wcp360.system.protocol import SiteCreate, SiteSpec, TenantCreate, TenantDelete

DOMAIN = "bench.wcp360.test"
FILE = "file.bin"

DEBIAN_DEFAULT = """user www-data;
worker_processes auto;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ worker_connections 768; }}
http {{
    sendfile on;
    tcp_nopush on;
    {cache}
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {run}/access.log;
    gzip on;
    client_body_temp_path {run}/body; proxy_temp_path {run}/proxy; fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi; scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl default_server;
        ssl_certificate {chain};
        ssl_certificate_key {key};
        root {root};
        index index.html index.htm index.nginx-debian.html;
        server_name _;
        location / {{ try_files $uri $uri/ =404; }}
    }}
}}
"""


def wrk(url: str, hosts: Path, seconds: int) -> float:
    script = f"mount --bind {hosts} /etc/hosts && exec wrk -t2 -c32 -d{seconds}s {url}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=True)
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    assert found and not errors, done.stdout
    return float(found[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sites", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wcp360-bench-web-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    http_port, https_port, default_port = free_port(), free_port(), free_port()
    with pebble(base / "pebble", http_port, https_port) as acme:
        websites = WebsitesConfig(
            listen_addresses=["127.0.0.1"], http_port=http_port, https_port=https_port,
            requests_per_second=100_000, request_burst=100_000, connections_per_address=10_000,
            acme=AcmeConfig(directory_url=acme.directory_url, ca_bundle=acme.ca_bundle),
        )  # fmt: skip
        config = TenantsConfig(home_root=base / "www", archive_dir=base / "archives", websites=websites)
        host = HostAgent(config, FirewallConfig(), base / "state")
        roots = base / "roots.pem"
        roots.write_bytes(acme.issued_roots())
        tenant = f"bw{uuid.uuid4().hex[:8]}"
        host.create(TenantCreate(tenant=tenant, limits=TenantLimits()))
        pids: list[Path] = []
        try:
            site = host.run(SiteCreate(tenant=tenant, site=SiteSpec(name="bench", domains=[DOMAIN])))
            root = Path(site.document_root)  # type: ignore[union-attr]
            (root / FILE).write_bytes(os.urandom(16 * 1024))
            home = os.stat(base / "www" / tenant)
            os.chown(root / FILE, home.st_uid, os.stat(root).st_gid)
            os.chmod(root / FILE, 0o640)
            chain, key = (str(p) for p in host.websites._certificate_files(f"{tenant}.bench") or ("", ""))
            # Debian's default, and the same with the open-file cache the generated vhost has (its
            # hardening's remaining cost shows beside the second).
            cached_port = free_port()
            pids = []
            for name, port, cache in (
                ("default", default_port, ""),
                ("cached", cached_port, "open_file_cache max=10000 inactive=60s; open_file_cache_valid 10s;"),
            ):
                run = base / name
                run.mkdir()
                os.chown(run, 33, 33)  # www-data writes its temp paths and log there
                (run / "nginx.conf").write_text(
                    DEBIAN_DEFAULT.format(run=run, port=port, chain=chain, key=key, root=root, cache=cache)
                )
                subprocess.run(["nginx", "-c", str(run / "nginx.conf")], check=True)
                pids.append(run / "nginx.pid")
            hosts = base / "hosts"
            hosts.write_text(f"127.0.0.1 localhost {DOMAIN}\n")
            rates: dict[str, list[float]] = {"default": [], "default + open_file_cache": [], "generated": []}
            for _ in range(args.rounds):
                for label, port in zip(rates, (default_port, cached_port, https_port), strict=True):
                    rates[label].append(wrk(f"https://{DOMAIN}:{port}/{FILE}", hosts, args.seconds))
            print(f"static 16 KiB over HTTPS, wrk -t2 -c32, {args.rounds} x {args.seconds} s")
            for label, rounds in rates.items():
                rounds_text = ", ".join(f"{r:,.0f}" for r in rounds)
                print(f"  {label}: {statistics.median(rounds):,.0f} req/s  (rounds {rounds_text})")
            ours = statistics.median(rates["generated"])
            print(f"  generated / default: {ours / statistics.median(rates['default']):.3f}")
            cached = statistics.median(rates["default + open_file_cache"])
            print(f"  generated / default + open_file_cache: {ours / cached:.3f}")

            issuing: list[float] = []
            issue = host.websites.issuer.issue

            def timed(names: list[str]) -> object:
                began = time.perf_counter()
                try:
                    return issue(names)
                finally:
                    issuing.append(time.perf_counter() - began)

            host.websites.issuer.issue = timed  # type: ignore[method-assign]
            context = ssl.create_default_context(cafile=str(roots))
            totals = []
            for number in range(args.sites):
                domain = f"s{number}.{DOMAIN}"
                began = time.perf_counter()
                host.run(SiteCreate(tenant=tenant, site=SiteSpec(name=f"s{number}", domains=[domain])))
                transport = httpx.HTTPTransport(verify=context)
                with httpx.Client(transport=transport) as client:
                    answer = client.get(
                        f"https://127.0.0.1:{https_port}/",
                        headers={"Host": domain},
                        extensions={"sni_hostname": domain},
                    )
                totals.append(time.perf_counter() - began)
                assert answer.status_code in {403, 404}, answer.status_code
            print(f"site create -> first HTTPS answer (Pebble, HTTP-01 through nginx), {args.sites} sites")
            print(f"  median {statistics.median(totals) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms")
            print(f"  of which ACME (order, challenge, finalise): median {statistics.median(issuing) * 1000:.0f} ms")
        finally:
            for pid in pids:
                if pid.exists():
                    os.kill(int(pid.read_text()), signal.SIGQUIT)
            host.delete(TenantDelete(tenant=tenant))
            host.websites.nginx.stop()
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
