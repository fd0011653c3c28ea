"""Tenants' websites through the agent with the real nginx, certificates from the real Pebble:
HTTPS with the issued certificate, HTTP redirected, HSTS, symlinks between tenants refused,
a broken configuration refused whole while the others keep serving, suspended sites at 503."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import io
import os
import pwd
import shutil
import socket
import ssl
import stat
import tarfile
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.acme_server import Pebble, pebble
from tests.clamd_server import EICAR, clamd_server
from tests.conftest import CapturingSink
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from tests.pki import free_port, make_ca, make_leaf
from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.config.tls import ClientAuth, TlsConfig
from wcp360.config.websites import AcmeConfig, ScanConfig, UploadsConfig, WebsitesConfig
from wcp360.system.host import AgentFailure, HostAgent
from wcp360.system.protocol import (
    JobOutcome,
    ProcessSpec,
    ProcessStart,
    ProcessState,
    SiteCreate,
    SiteDelete,
    SiteHost,
    SiteSpec,
    SiteUpload,
    TenantCreate,
    TenantDelete,
    TenantResume,
    TenantRun,
    TenantSuspend,
    UploadOutcome,
)

UPLOADS = UploadsConfig(max_size=4 * 1024**2, max_entries=50, max_unpacked=8 * 1024**2)


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

    def https(self, domain: str, path: str = "/", headers: dict[str, str] | None = None) -> httpx.Response:
        """GET over TLS with SNI and certificate checks for `domain`, sent to 127.0.0.1."""
        transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(self.roots)))
        with httpx.Client(transport=transport, timeout=30) as client:
            return client.get(
                f"https://127.0.0.1:{self.https_port}{path}",
                headers={"Host": domain, **(headers or {})},
                extensions={"sni_hostname": domain},
            )

    def certificate(self, domain: str) -> bytes:
        """The certificate nginx presents for `domain` (verified against Pebble's root)."""
        context = ssl.create_default_context(cafile=str(self.roots))
        with (
            socket.create_connection(("127.0.0.1", self.https_port)) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(True)
        assert der is not None
        return der

    def http(self, domain: str, path: str = "/") -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            return client.get(f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": domain})


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    # Beneath /var/tmp, not pytest's 0700 directory: nginx's workers (www-data) must pass through.
    base = Path(tempfile.mkdtemp(prefix="wcp360-web-", dir="/var/tmp"))
    os.chmod(base, 0o755)  # noqa: S103 - traversable, as /srv/www is
    http_port, https_port = free_port(), free_port()
    with pebble(base / "pebble", http_port, https_port) as acme, clamd_server(base / "clamd") as scanner:
        websites = WebsitesConfig(
            listen_addresses=["127.0.0.1"],
            http_port=http_port,
            https_port=https_port,
            acme=AcmeConfig(directory_url=acme.directory_url, ca_bundle=acme.ca_bundle, email="ops@example.test"),
            uploads=UPLOADS.model_copy(update={"scan": ScanConfig(enabled=True, clamd_socket=scanner)}),
        )
        config = TenantsConfig(
            home_root=base / "www",
            archive_dir=base / "archives",
            uid_min=TEST_UID_MIN,
            uid_max=TEST_UID_MAX,
            websites=websites,
        )
        spool = base / "spool"
        spool.mkdir(mode=0o700)
        host = HostAgent(config, FirewallConfig(), base / "state", upload_spool=spool)
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


PHP_PAGE = b"""<?php
header('Content-Type: text/plain');
echo 'php as uid ', posix_getuid(), ' https=', $_SERVER['HTTPS'] ?? 'off', ' q=', $_GET['q'] ?? '';
"""

NODE_APP = """
const http = require('http');
const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`node ${req.url} via ${req.headers['x-forwarded-proto']} for ${req.headers['x-forwarded-for']}`);
});
server.listen({path: process.env.SOCKET, readableAll: true, writableAll: true});
"""


def wait_until(condition: Callable[[], bool]) -> None:
    """Readiness, not a deadline: the bound only turns a hang into a failure."""
    give_up = time.monotonic() + 300
    while not condition():
        assert time.monotonic() < give_up, "never became true"
        time.sleep(0.02)


def test_php_and_proxy_sites_are_served_by_the_tenants_jailed_processes(web: Web) -> None:
    home = web.host.tenants.home_root / web.first
    put(web, web.first, "shop/index.php", PHP_PAGE)
    php = web.host.run(ProcessStart(tenant=web.first, process=ProcessSpec(name="php", runtime="php")))
    assert isinstance(php, ProcessState)
    wait_until(lambda: Path(php.socket).exists())
    domain = f"shop.{web.first}.example.test"
    create_site(web, web.first, "shop", [domain], kind="php", process="php", root="shop")
    answer = web.https(domain, "/index.php?q=books")
    assert answer.status_code == 200, answer.text
    assert answer.text == f"php as uid {os.stat(home).st_uid} https=on q=books"
    assert "content-encoding" not in answer.headers  # never compressed: BREACH
    assert web.https(domain, "/missing.php").status_code == 404  # nothing passed to php-fpm for it

    (home / "app.js").write_text(NODE_APP)
    os.chown(home / "app.js", os.stat(home).st_uid, os.stat(home).st_gid)
    spec = ProcessSpec(name="app", runtime="node", argv=["node", "app.js"])
    app = web.host.run(ProcessStart(tenant=web.first, process=spec))
    assert isinstance(app, ProcessState)
    wait_until(lambda: Path(app.socket).exists())
    domain = f"app.{web.first}.example.test"
    create_site(web, web.first, "app", [domain], kind="proxy", process="app")
    answer = web.https(domain, "/orders", headers={"X-Forwarded-For": "6.6.6.6"})
    assert answer.text == "node /orders via https for 127.0.0.1"  # the client's claim replaced, not passed on
    # The other tenant cannot reach the first one's sockets: run/ lets nginx's group pass only.
    outcome = web.host.run(TenantRun(tenant=web.second, argv=["sh", "-c", f"ls {home}/run; cat {php.socket}"]))
    assert isinstance(outcome, JobOutcome) and outcome.exit_code != 0


def upload(
    web: Web, tenant: str, site: str, content: bytes, kind: str, path: str = "", host: HostAgent | None = None
) -> UploadOutcome:
    """As the panel does it: the bytes in the spool, then the agent's verb naming them."""
    agent = host or web.host
    assert agent.upload_spool is not None
    staged = f"upload-{uuid.uuid4().hex}"
    (agent.upload_spool / staged).write_bytes(content)
    done = agent.run(SiteUpload(tenant=tenant, name=site, staged=staged, format=kind, path=path))  # type: ignore[arg-type]
    assert isinstance(done, UploadOutcome)
    assert not (agent.upload_spool / staged).exists()
    return done


def zipped(entries: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o100644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def tarred(members: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            data = contents.get(member.name, b"")
            member.size = len(data) if member.isreg() else 0
            archive.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def tree(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_mode, p.lstat().st_size) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def files_site(web: Web) -> Path:
    create_site(web, web.second, "files", [f"files.{web.second}.example.test"])
    return web.host.tenants.home_root / web.second / "public" / "files"


def test_uploads_land_as_the_tenants_files_without_exec_bits(web: Web, files_site: Path) -> None:
    domain = f"files.{web.second}.example.test"
    done = upload(web, web.second, "files", b"<p>uploaded</p>", "file", "pages/one.html")
    assert (done.files, done.scanned) == (1, True)
    archive = zipped({"css/site.css": b"body{}", "run.sh": b"#!/bin/sh\nid\n", "docs/": b""},
                     {"run.sh": 0o100755, "docs/": 0o40755})  # fmt: skip
    done = upload(web, web.second, "files", archive, "zip", "assets")
    assert (done.files, done.directories, done.stripped_exec) == (2, 1, 1)
    tenant_uid = os.stat(web.host.tenants.home_root / web.second).st_uid
    for path in (files_site / "pages" / "one.html", files_site / "assets" / "run.sh"):
        info = path.stat()
        assert info.st_uid == tenant_uid and info.st_mode & 0o7777 == 0o640
    assert web.https(domain, "/pages/one.html").content == b"<p>uploaded</p>"
    assert web.https(domain, "/assets/css/site.css").content == b"body{}"
    members = [tarfile.TarInfo("a/b.txt"), tarfile.TarInfo("./c.txt")]
    assert upload(web, web.second, "files", tarred(members, {"a/b.txt": b"b", "./c.txt": b"c"}), "tar").files == 2
    assert (files_site / "c.txt").read_bytes() == b"c"


def test_an_upload_replaces_a_planted_link_and_never_writes_through_it(web: Web, files_site: Path) -> None:
    victim = web.host.tenants.home_root / web.first / "public" / "victim.txt"
    victim.write_bytes(b"the first tenant's file")
    (files_site / "planted.txt").symlink_to(victim)
    upload(web, web.second, "files", b"replaced", "file", "planted.txt")
    assert victim.read_bytes() == b"the first tenant's file"
    assert not (files_site / "planted.txt").is_symlink()
    assert (files_site / "planted.txt").read_bytes() == b"replaced"


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


def lying_zip() -> bytes:
    """A zip whose central directory says its one file inflates to 100 bytes; it inflates to 1 MiB."""
    data = bytearray(zipped({"small.txt": b"\0" * 1024**2}))
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    return bytes(data)


BAD_UPLOADS = {
    "zip slip": (zipped({"../../../escape.txt": b"x"}), "zip", "leave the document root"),
    "absolute": (zipped({"/etc/cron.d/evil": b"x"}), "zip", "absolute"),
    "backslash": (zipped({"..\\..\\evil": b"x"}), "zip", "backslash"),
    "terminal escape": (zipped({"a\x1b[2J.txt": b"x"}), "zip", "control characters"),
    "zip symlink": (zipped({"link": b"/etc/passwd"}, {"link": 0o120777}), "zip", "link"),
    "tar symlink": (tarred([link("l", "/etc/passwd")], {}), "tar", "link"),
    "tar hard link": (tarred([link("h", "/etc/shadow", tarfile.LNKTYPE)], {}), "tar", "link"),
    "tar dotdot": (tarred([tarfile.TarInfo("x/../../y")], {"x/../../y": b"y"}), "tar", "leave"),
    "device": (tarred([link("dev", "", tarfile.CHRTYPE)], {}), "tar", "special"),
    "twice": (zipped({"a.txt": b"1", "./a.txt": b"2"}), "zip", "twice"),
    "file then dir": (zipped({"a": b"1", "a/b": b"2"}), "zip", "is a file"),
    "zip bomb": (zipped({"bomb.txt": b"\0" * (64 * 1024**2)}), "zip", "max_unpacked"),
    "lying header": (lying_zip(), "zip", "damaged"),
    "too many": (zipped({f"f{i}": b"" for i in range(60)}), "zip", "max_entries"),
    "not a zip": (b"plain text", "zip", "not a zip"),
    "eicar": (zipped({"ok.txt": b"fine", "docs/readme.txt": b"hi " + EICAR}), "zip", "malware"),
    "eicar file": (EICAR, "file", "malware"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
def test_bad_uploads_are_refused_and_change_nothing(web: Web, files_site: Path, case: str) -> None:
    content, kind, reason = BAD_UPLOADS[case]
    before = tree(web.host.tenants.home_root / web.second)
    with pytest.raises(AgentFailure) as refused:
        upload(web, web.second, "files", content, kind, "incoming" if kind != "file" else "x.txt")
    assert reason in refused.value.message
    assert refused.value.code == ("infected" if reason == "malware" else "invalid")
    assert tree(web.host.tenants.home_root / web.second) == before
    assert not list(web.host.upload_spool.iterdir())  # type: ignore[union-attr]


def test_with_the_scanner_down_uploads_are_refused(web: Web, files_site: Path) -> None:
    down = UPLOADS.model_copy(update={"scan": ScanConfig(enabled=True, clamd_socket=Path("/nonexistent/clamd.sock"))})
    config = web.host.tenants.model_copy(
        update={"websites": web.host.tenants.websites.model_copy(update={"uploads": down})}
    )
    agent = HostAgent(config, FirewallConfig(), web.host.state_dir, upload_spool=web.host.upload_spool)
    with pytest.raises(AgentFailure) as refused:
        upload(web, web.second, "files", b"harmless", "file", "later.txt", host=agent)
    assert refused.value.code == "unsupported" and "did not answer" in refused.value.message
    assert not (files_site / "later.txt").exists()


def test_certificates_are_renewed_before_expiry_and_failures_back_off(web: Web) -> None:
    domain = f"renew.{web.first}.example.test"
    first = create_site(web, web.first, "renew", [domain])
    assert first.certificate.status == "valid" and first.certificate.not_after
    expires = dt.datetime.fromisoformat(first.certificate.not_after)
    settings = web.host.tenants.websites.acme
    assert web.host.websites.renew_due(expires - settings.renew_before - dt.timedelta(days=1)) == []  # not yet
    served = web.certificate(domain)
    renewed = web.host.websites.renew_due(expires - settings.renew_before + dt.timedelta(days=1))
    assert ("renew", True) in [(o.site, o.ok) for o in renewed]  # (every site of this module is due)
    now_served = web.certificate(domain)
    assert now_served != served  # nginx serves the new certificate

    # A CA that does not answer: the site waits (port 80 answers 503, nothing in clear), the
    # agent retries with a doubling delay, and succeeds once the CA is back.
    down = web.host.tenants.websites.model_copy(
        update={"acme": settings.model_copy(update={"directory_url": "https://127.0.0.1:9/dir"})}
    )
    broken = HostAgent(
        web.host.tenants.model_copy(update={"websites": down}), FirewallConfig(), web.host.state_dir,
        upload_spool=web.host.upload_spool,
    )  # fmt: skip
    waiting = broken.run(
        SiteCreate(tenant=web.second, site=SiteSpec(name="later", domains=[f"later.{web.second}.test"]))
    )
    assert isinstance(waiting, SiteHost) and waiting.certificate.status == "failed"
    assert "127.0.0.1" in (waiting.certificate.error or "") and waiting.certificate.failures == 1
    assert web.http(f"later.{web.second}.test").status_code == 503
    first_retry = dt.datetime.fromisoformat(waiting.certificate.next_attempt or "")
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=4) < first_retry - now <= settings.retry_delay
    assert broken.websites.renew_due(now) == []  # backing off
    again = broken.websites.renew_due(first_retry + dt.timedelta(seconds=1))
    assert [(o.site, o.ok) for o in again] == [("later", False)]
    state = broken.websites.find(broken._existing(web.second)[0], "later").certificate
    assert state.failures == 2
    assert dt.datetime.fromisoformat(state.next_attempt or "") - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=9)
    recovered = web.host.websites.renew_due(
        dt.datetime.fromisoformat(state.next_attempt or "") + dt.timedelta(seconds=1)
    )
    assert ("later", True) in [(o.site, o.ok) for o in recovered]
    assert web.http(f"later.{web.second}.test").status_code == 301


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"panel {self.path} for {self.headers['X-Forwarded-For']} via {self.headers['X-Forwarded-Proto']}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


def test_the_panel_hostname_is_proxied_with_its_own_certificate_and_client_certificates(
    web: Web, tmp_path: Path
) -> None:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    ca_path, ca_key, ca = make_ca(tmp_path, "clients-ca")
    client_cert, client_key = make_leaf(tmp_path, "operator", ca_key, ca, client=True)
    panel = "panel.wcp360.test"
    websites = web.host.tenants.websites.model_copy(update={"panel_hostname": panel})
    tls = TlsConfig(client_auth=ClientAuth(enabled=True, ca_file=ca_path))
    agent = HostAgent(
        web.host.tenants.model_copy(update={"websites": websites}), FirewallConfig(), web.host.state_dir,
        tls=tls, panel_upstream=f"127.0.0.1:{upstream.server_port}",
    )  # fmt: skip
    try:
        with pytest.raises(AgentFailure) as taken:  # no tenant may take the panel's name
            agent.run(SiteCreate(tenant=web.first, site=SiteSpec(name="steal", domains=[panel.upper()])))
        assert taken.value.code == "conflict"
        outcomes = agent.websites.renew_due()
        assert ("_panel", True) in [(o.site, o.ok) for o in outcomes]
        assert web.http(panel, "/x").headers["location"] == f"https://{panel}/x"
        refused = web.https(panel, "/api")  # no client certificate
        assert refused.status_code == 400 and "strict-transport-security" in refused.headers
        context = ssl.create_default_context(cafile=str(web.roots))
        context.load_cert_chain(client_cert, client_key)
        with httpx.Client(transport=httpx.HTTPTransport(verify=context), timeout=30) as client:
            answer = client.get(
                f"https://127.0.0.1:{web.https_port}/api/v1/me",
                headers={"Host": panel, "X-Forwarded-For": "6.6.6.6"},
                extensions={"sni_hostname": panel},
            )
        assert answer.status_code == 200 and answer.text == "panel /api/v1/me for 127.0.0.1 via https"
    finally:
        web.host.websites.apply()  # back to the sites alone
        upstream.shutdown()


def test_a_cached_file_swapped_for_a_link_never_serves_the_links_target(web: Web) -> None:
    """nginx caches open files (open_file_cache) for throughput: a file replaced by a link to
    another tenant's file is served as it was until the cache checks again, then refused; the
    link's target is never served on the way."""
    secret = put(web, web.second, "private/swap-secret.txt", b"the second tenant's secret")
    page = put(web, web.first, "swap/page.txt", b"the first tenant's page")
    domain = f"swap.{web.first}.example.test"
    create_site(web, web.first, "swap", [domain])
    assert web.https(domain, "/page.txt").content == b"the first tenant's page"  # now cached
    page.unlink()
    page.symlink_to(secret)
    home = os.stat(web.host.tenants.home_root / web.first)
    os.lchown(page, home.st_uid, home.st_gid)
    seen: set[int] = set()

    def refused() -> bool:
        answer = web.https(domain, "/page.txt")
        assert b"secret" not in answer.content
        seen.add(answer.status_code)
        return answer.status_code in {403, 404}

    wait_until(refused)  # within open_file_cache_valid
    assert seen <= {200, 403, 404}


def test_text_is_compressed_above_the_minimum_and_binary_never(web: Web) -> None:
    put(web, web.first, "zip/big.css", b"body { color: red; }\n" * 200)
    put(web, web.first, "zip/small.css", b"a{}")
    put(web, web.first, "zip/blob.bin", b"\0" * 5000)
    domain = f"zip.{web.first}.example.test"
    create_site(web, web.first, "zip", [domain])
    assert web.https(domain, "/big.css").headers.get("content-encoding") == "gzip"
    assert "content-encoding" not in web.https(domain, "/small.css").headers
    assert "content-encoding" not in web.https(domain, "/blob.bin").headers


def test_the_agents_sweep_audits_and_alerts_a_failed_issuance(web: Web, audit_events: CapturingSink) -> None:
    """The sweep `wcp360 agent` runs (at its start, then every few minutes): each outcome is an
    audit event, each failure an alert."""
    from wcp360.cli.agent_cmd import _renew_certificates
    from wcp360.system.dispatch import Dispatcher

    down = web.host.tenants.websites.acme.model_copy(update={"directory_url": "https://127.0.0.1:9/dir"})
    websites = web.host.tenants.websites.model_copy(update={"acme": down})
    broken = HostAgent(web.host.tenants.model_copy(update={"websites": websites}), FirewallConfig(), web.host.state_dir)
    broken.run(SiteCreate(tenant=web.first, site=SiteSpec(name="alerted", domains=[f"alerted.{web.first}.test"])))
    alerts: list[tuple[str, str, dict[str, object]]] = []
    stop = threading.Event()
    stop.set()  # one sweep, then stop
    # Due at once: its first failure's retry time, moved to the past.
    records = broken.websites._records(web.first)
    records["alerted"]["certificate"]["next_attempt"] = None  # type: ignore[index]
    broken.websites._save(web.first, records)
    _renew_certificates(broken, Dispatcher(broken), lambda *alert: alerts.append(alert), stop)
    assert [(rule, subject) for rule, subject, _ in alerts] == [("certificate_renewal", f"{web.first}/alerted")]
    failed = [e for e in audit_events.of("agent_certificate_renew") if e.outcome == "failure"]
    assert failed and failed[0].details["site"] == "alerted" and "127.0.0.1" in str(failed[0].details["reason"])
    web.host.run(SiteDelete(tenant=web.first, name="alerted"))


def test_a_home_made_before_websites_is_opened_to_nginx_only(web: Web) -> None:
    """Homes made before this version are 0750 with the tenant's group: a site's creation gives
    nginx's group passage (0710), nothing more."""
    home = web.host.tenants.home_root / web.second
    info = os.stat(home)
    os.chown(home, info.st_uid, pwd.getpwuid(info.st_uid).pw_gid)
    os.chmod(home, 0o750)  # noqa: S103 - the mode homes had before websites
    put(web, web.second, "older/index.html", b"older home")
    create_site(web, web.second, "older", [f"older.{web.second}.example.test"])
    after = os.stat(home)
    assert (after.st_gid, stat.S_IMODE(after.st_mode)) == (pwd.getpwnam("www-data").pw_gid, 0o710)
    assert web.https(f"older.{web.second}.example.test", "/index.html").content == b"older home"


def test_site_logs_are_rotated_past_their_size_and_nginx_writes_anew(web: Web) -> None:
    domain = f"logs.{web.first}.example.test"
    put(web, web.first, "logs/index.html", b"logged")
    create_site(web, web.first, "logs", [domain])
    access = web.host.websites.nginx.log_dir / "sites" / f"{web.first}.logs.access.log"
    web.https(domain, "/index.html")
    wait_until(lambda: access.exists() and access.stat().st_size > 0)
    rotated = web.host.websites.nginx.rotate_logs(max_size=1, keep=2)
    assert f"sites/{web.first}.logs.access.log" in rotated
    assert access.with_name(access.name + ".1").stat().st_size > 0

    def written_anew() -> bool:
        # The master reopens on SIGUSR1 and tells its workers, which reopen in their own time: a
        # request served before that is logged in the rotated file (a CI run once waited on one
        # such request for 300 s, another found it there). Readiness is a request in the new file.
        web.https(domain, "/index.html?after")
        return access.exists() and b"after" in access.read_bytes()

    wait_until(written_anew)
    # What was logged before the rotation stays in the rotated file (which may also hold requests
    # a worker served before it reopened: nginx's own behaviour, not a lost line).
    assert b'"GET /index.html HTTP/1.1"' in access.with_name(access.name + ".1").read_bytes()


def test_a_tenant_with_sites_is_deleted_even_while_nginx_refuses_the_configuration(web: Web) -> None:
    """Another site's broken certificate makes every apply fail; deleting a tenant still
    removes it (its user and home), and says nginx serves its sites until the next apply."""
    name = f"wtd{uuid.uuid4().hex[:8]}"
    web.host.create(TenantCreate(tenant=name, limits=TenantLimits()))
    create_site(web, name, "gone", [f"gone.{name}.example.test"])
    create_site(web, web.first, "breaks", [f"breaks.{web.first}.example.test"])
    chain = web.host.websites.root / "certs" / f"{web.first}.breaks" / "fullchain.pem"
    good = chain.read_bytes()
    chain.write_bytes(b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    try:
        deleted = web.host.delete(TenantDelete(tenant=name))
    finally:
        chain.write_bytes(good)
    assert deleted.state == "deleted" and any("nginx still serves" in line for line in deleted.degraded)
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    web.host.websites.apply()  # the configuration applies again: the sites are gone
    assert f"{name}.gone.conf" not in [p.name for p in (web.host.websites.root / "current" / "sites").iterdir()]


def test_one_client_flooding_a_site_meets_429_and_another_site_still_answers(web: Web) -> None:
    """limit_req per site and client address (tenants.websites.requests_per_second, burst):
    a flood is refused early with 429; another site's zone is its own."""
    flooded, calm = f"flood.{web.first}.example.test", f"calm.{web.second}.example.test"
    put(web, web.first, "flood/index.html", b"flood")
    put(web, web.second, "calm/index.html", b"calm")
    create_site(web, web.first, "flood", [flooded])
    create_site(web, web.second, "calm", [calm])
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(web.roots)))
    with httpx.Client(transport=transport, timeout=30) as client:  # one connection, as fast as it goes
        codes = [
            client.get(
                f"https://127.0.0.1:{web.https_port}/index.html",
                headers={"Host": flooded},
                extensions={"sni_hostname": flooded},
            ).status_code
            for _ in range(web.host.tenants.websites.request_burst * 3)
        ]
    assert 429 in codes and codes[0] == 200
    assert web.https(calm, "/index.html").content == b"calm"
