"""`tenants.websites` in `wcp360.yml`: tenants' sites served by nginx, their certificates (ACME)
and uploads into them (seed 000 §3, seed 001 §2, §6, §7). The protocol floor and ciphers are
`tls.yml`'s, for the sites as for the panel."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field

from wcp360.config.base import ByteSize, ConfigPath, Duration, Section

Port = Annotated[int, Field(ge=1, le=65535)]


class AcmeConfig(Section):
    enabled: bool = True
    directory_url: str = Field(default="https://acme-v02.api.letsencrypt.org/directory", pattern=r"^https://")
    email: str | None = None
    # The CA bundle that verifies the ACME server's own TLS (a test CA such as Pebble's); None:
    # the system's.
    ca_bundle: ConfigPath | None = None
    # A certificate is renewed this long before it expires (Let's Encrypt's advice: 30 days of 90).
    renew_before: Duration = timedelta(days=30)
    # A failed issuance is tried again after this, doubling up to retry_max_delay.
    retry_delay: Duration = timedelta(minutes=5)
    retry_max_delay: Duration = timedelta(hours=6)
    # How long one order may take (challenge validation, finalisation).
    timeout: Duration = timedelta(seconds=90)


class ScanConfig(Section):
    """A malware scan of every uploaded file by ClamAV's clamd; when on and clamd does not answer,
    uploads are refused (fail closed)."""

    enabled: bool = False
    clamd_socket: ConfigPath = Path("/run/clamav/clamd.ctl")


class UploadsConfig(Section):
    # The upload as sent (a file or a compressed archive).
    max_size: ByteSize = 64 * 1024**2
    # An archive's entries and their unpacked bytes: both declared (refused before unpacking)
    # and counted while unpacking (a header that lies is caught): zip bombs stop here.
    max_entries: int = Field(default=10_000, ge=1, le=1_000_000)
    max_unpacked: ByteSize = 512 * 1024**2
    scan: ScanConfig = ScanConfig()


class WebsitesConfig(Section):
    enabled: bool = True
    nginx: ConfigPath = Path("/usr/sbin/nginx")
    # nginx's workers run as this user and read tenants' public/ through this group.
    nginx_user: str = Field(default="www-data", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    # Sites are public: every address, unless the host has others for other services.
    listen_addresses: list[str] = ["0.0.0.0", "[::]"]  # noqa: S104
    http_port: Port = 80
    https_port: Port = 443
    # The panel's own hostname: served by nginx, proxied to the panel's listener, with its own
    # certificate; no tenant may take it.
    panel_hostname: str | None = None
    max_sites_per_tenant: int = Field(default=20, ge=0, le=1000)
    max_domains_per_site: int = Field(default=10, ge=1, le=100)
    client_max_body_size: ByteSize = 16 * 1024**2
    # Per site and client address (nginx limit_req / limit_conn).
    requests_per_second: int = Field(default=20, ge=1, le=100_000)
    request_burst: int = Field(default=40, ge=0, le=100_000)
    connections_per_address: int = Field(default=32, ge=1, le=100_000)
    hsts_max_age: Duration = timedelta(days=730)
    # Compress text responses from this size on (smaller ones gain nothing).
    gzip_min_length: ByteSize = 1024
    # nginx's logs (each site's access and error log, its own error log) are rotated by the
    # agent's sweep (every five minutes) past this size, this many kept.
    log_max_size: ByteSize = 64 * 1024**2
    log_keep: int = Field(default=5, ge=1, le=100)
    # DNS resolvers nginx asks for OCSP responders (stapling is on only with one).
    resolvers: list[str] = []
    acme: AcmeConfig = AcmeConfig()
    uploads: UploadsConfig = UploadsConfig()
