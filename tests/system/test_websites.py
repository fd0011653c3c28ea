"""Tenants' websites through the agent with the real nginx, certificates from the real Pebble:
HTTPS with the issued certificate, HTTP redirected, HSTS, symlinks between tenants refused,
a broken configuration refused whole while the others keep serving, suspended sites at 503."""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.acme_server import Pebble, free_port, pebble
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.config.websites import AcmeConfig, WebsitesConfig
from wcp360.system.host import AgentFailure, HostAgent
from wcp360.system.protocol import (
    SiteCreate,
    SiteDelete,
    SiteHost,
    SiteSpec,
    TenantCreate,
    TenantDelete,
    TenantResume,
    TenantSuspend,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="websites are served by the agent as root")


@dataclass
class Web:
    host: HostAgent
    pebble: Pebble
    http_port: int
    https_port: int
    roots: Path  # Pebble's issuing root, to verify the sites' certificates
    first: str
    second: str

    def client(self, **kwargs: object) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.roots))
        return httpx.Client(verify=context, timeout=30, **kwargs)  # type: ignore[arg-type]

    def https(self, domain: str, path: str = "/") -> httpx.Response:
        """GET over TLS with SNI and certificate checks for `domain`, sent to 127.0.0.1."""
        transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(self.roots)))
        with httpx.Client(transport=transport, timeout=30) as client:
            return client.get(
                f"https://127.0.0.1:{self.https_port}{path}",
                headers={"Host": domain},
                extensions={"sni_hostname": domain},
            )

    def http(self, domain: str, path: str = "/") -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            return client.get(f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": domain})


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    # Beneath /var/tmp, not pytest's 0700 directory: nginx's workers (www-data) must pass through.
    base = Path(tempfile.mkdtemp(prefix="wcp360-web-", dir="/var/tmp"))
    os.chmod(base, 0o755)  # noqa: S103 - traversable, as /srv/www is
    http_port, https_port = free_port(), free_port()
    with pebble(base / "pebble", http_port, https_port) as acme:
        websites = WebsitesConfig(
            listen_addresses=["127.0.0.1"],
            http_port=http_port,
            https_port=https_port,
            acme=AcmeConfig(directory_url=acme.directory_url, ca_bundle=acme.ca_bundle, email="ops@example.test"),
        )
        config = TenantsConfig(
            home_root=base / "www",
            archive_dir=base / "archives",
            uid_min=TEST_UID_MIN,
            uid_max=TEST_UID_MAX,
            websites=websites,
        )
        host = HostAgent(config, FirewallConfig(), base / "state")
        roots = base / "pebble-roots.pem"
        roots.write_bytes(acme.issued_roots())
        first, second = (f"wts{uuid.uuid4().hex[:8]}" for _ in range(2))
        for name in (first, second):
            host.create(TenantCreate(tenant=name, limits=TenantLimits()))
        try:
            yield Web(host, acme, http_port, https_port, roots, first, second)
        finally:
            for name in (first, second):
                with contextlib.suppress(AgentFailure):
                    host.delete(TenantDelete(tenant=name))
            host.websites.nginx.stop()
            host.close()
    shutil.rmtree(base, ignore_errors=True)


def put(web: Web, tenant: str, relative: str, content: bytes) -> Path:
    """A file in the tenant's public/, as the tenant would leave it (its owner, group-readable)."""
    home = web.host.tenants.home_root / tenant
    path = home / "public" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    info = os.stat(home)
    os.chown(path, info.st_uid, os.stat(home / "public").st_gid)
    os.chmod(path, 0o640)
    return path


def create_site(web: Web, tenant: str, name: str, domains: list[str], **spec: object) -> SiteHost:
    made = web.host.run(SiteCreate(tenant=tenant, site=SiteSpec(name=name, domains=domains, **spec)))  # type: ignore[arg-type]
    assert isinstance(made, SiteHost)
    return made


def test_static_site_over_https_with_a_pebble_certificate(web: Web) -> None:
    domain = f"{web.first}.example.test"
    put(web, web.first, "www/index.html", b"<h1>hello from the first tenant</h1>")
    site = create_site(web, web.first, "www", [domain.upper() + "."])
    assert site.domains == [domain]  # one spelling: lower case, no trailing dot
    assert site.certificate.status == "valid", site.certificate.error
    assert "Pebble" in (site.certificate.issuer or "")
    answer = web.https(domain, "/index.html")
    assert answer.status_code == 200 and b"hello from the first tenant" in answer.content
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "server" not in answer.headers or answer.headers["server"] == "nginx"  # server_tokens off: no version
    redirect = web.http(domain, "/index.html?a=1")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://{domain}/index.html?a=1"


def test_a_symlink_to_another_tenants_file_is_not_served(web: Web) -> None:
    secret = put(web, web.second, "private/secret.txt", b"the second tenant's secret")
    own = put(web, web.first, "links/own.txt", b"my own file")
    link_dir = web.host.tenants.home_root / web.first / "public" / "links"
    (link_dir / "theirs.txt").symlink_to(secret)
    (link_dir / "mine.txt").symlink_to(own)
    (link_dir / "passwd").symlink_to("/etc/passwd")
    home = os.stat(web.host.tenants.home_root / web.first)
    for link in ("theirs.txt", "mine.txt", "passwd"):
        os.lchown(link_dir / link, home.st_uid, home.st_gid)  # the tenant made them
    domain = f"links.{web.first}.example.test"
    create_site(web, web.first, "links", [domain])
    assert web.https(domain, "/mine.txt").content == b"my own file"  # its own link: followed
    for link in ("/theirs.txt", "/passwd"):
        answer = web.https(domain, link)
        assert answer.status_code in {403, 404}, link
        assert b"secret" not in answer.content and b"root:" not in answer.content


def test_dotfiles_are_never_served_and_unknown_types_are_not_sniffed(web: Web) -> None:
    put(web, web.first, "dots/.env", b"DB_PASSWORD=hunter2")
    put(web, web.first, "dots/.git/config", b"[core]")
    put(web, web.first, "dots/page.unknownext", b"<script>alert(1)</script>")
    domain = f"dots.{web.first}.example.test"
    create_site(web, web.first, "dots", [domain])
    for path in ("/.env", "/.git/config"):
        assert web.https(domain, path).status_code == 404
    typed = web.https(domain, "/page.unknownext")
    assert typed.headers["content-type"] == "application/octet-stream"
    assert web.https(domain, "/").status_code in {403, 404}  # no directory listing


def test_suspended_tenants_sites_answer_503_and_come_back(web: Web) -> None:
    domain = f"pause.{web.second}.example.test"
    put(web, web.second, "pause/index.html", b"open")
    create_site(web, web.second, "pause", [domain])
    assert web.https(domain, "/index.html").status_code == 200
    web.host.run(TenantSuspend(tenant=web.second))
    try:
        answer = web.https(domain, "/index.html")
        assert answer.status_code == 503 and b"open" not in answer.content
        assert "strict-transport-security" in answer.headers
    finally:
        web.host.run(TenantResume(tenant=web.second))
    assert web.https(domain, "/index.html").content == b"open"


def test_a_domain_belongs_to_one_site_and_bad_names_are_refused(web: Web) -> None:
    domain = f"taken.{web.first}.example.test"
    create_site(web, web.first, "taken", [domain])
    before = sorted((web.host.websites.root / "current").resolve().joinpath("sites").iterdir())
    for spelling in (domain, domain.upper(), f"{domain}."):
        with pytest.raises(AgentFailure) as refused:
            create_site(web, web.second, "steal", [spelling])
        assert refused.value.code == "conflict"
    for bad in ("localhost", "127.0.0.1", "*.example.test", "a..b.test", "-x.test", "ex ample.test",
                "x.test;\n}", 'x.test" return 200', "a" * 64 + ".test", "x.123"):  # fmt: skip
        with pytest.raises(AgentFailure) as refused:
            create_site(web, web.second, "bad", [bad])
        assert refused.value.code == "invalid", bad
    with pytest.raises(AgentFailure):  # the same site name twice
        create_site(web, web.first, "taken", [f"other.{web.first}.example.test"])
    after = sorted((web.host.websites.root / "current").resolve().joinpath("sites").iterdir())
    assert [p.name for p in after] == [p.name for p in before]  # nothing changed


def test_a_broken_configuration_is_refused_whole_and_the_others_keep_serving(web: Web) -> None:
    domain = f"steady.{web.first}.example.test"
    put(web, web.first, "steady/index.html", b"steady")
    create_site(web, web.first, "steady", [domain])
    chain = web.host.websites.root / "certs" / f"{web.first}.steady" / "fullchain.pem"
    good = chain.read_bytes()
    serving = web.host.websites.nginx.serving()
    chain.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    try:
        with pytest.raises(AgentFailure) as refused:
            create_site(web, web.second, "next", [f"next.{web.second}.example.test"])
        assert f"site {web.first}.steady, line" in refused.value.message
        assert web.host.websites.nginx.serving() == serving  # the running generation is untouched
        assert web.https(domain, "/index.html").content == b"steady"
        assert not any(site.name == "next" for site in web.host.websites.listing(web.host._existing(web.second)[0]))
    finally:
        chain.write_bytes(good)


def test_deleting_a_site_revokes_its_certificate(web: Web) -> None:
    domain = f"gone.{web.second}.example.test"
    create_site(web, web.second, "gone", [domain])
    assert web.https(domain).status_code in {403, 404}
    deleted = web.host.run(SiteDelete(tenant=web.second, name="gone"))
    assert isinstance(deleted, SiteHost) and deleted.revoked is True
    assert not (web.host.websites.root / "certs" / f"{web.second}.gone").exists()
    with pytest.raises(httpx.ConnectError):  # no certificate for the name any more: refused in the handshake
        web.https(domain)
