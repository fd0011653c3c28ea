"""Tenants' websites on the host: the agent's record of them, their nginx configuration and their
certificates.

The record (`<state>/web/sites/<tenant>.json`) is what nginx serves: every change rewrites the
whole configuration from it (`Nginx.apply`), so what runs never drifts from what is recorded.
A domain belongs to one site of one tenant, and never the panel's own hostname: checked here,
under the agent's verb lock, across every tenant's record. Certificates and their keys live in
`<state>/web/certs/<tenant>.<site>/`, root's alone (0600): nginx's master reads them as root.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wcp360.config.tls import TlsConfig
from wcp360.config.websites import WebsitesConfig
from wcp360.system import beneath, domains
from wcp360.system.acme_issuer import AcmeIssuer, IssueFailed, has_ocsp_responder, new_key_pem, not_after
from wcp360.system.nginx import ApplyFailed, Nginx, NginxUnavailable, PanelVhost, Vhost
from wcp360.system.protocol import CertificateState, SiteHost, SiteSpec, TenantHost
from wcp360.system.statefile import read_json, write_json

PUBLIC = "public"
PANEL = "_panel"  # the panel hostname's record and certificate directory


class SiteRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RenewalOutcome:
    tenant: str
    site: str
    ok: bool
    error: str | None


def web_group(settings: WebsitesConfig) -> int | None:
    """The gid nginx's workers read tenants' public/ with, or None (no such user: no websites)."""
    try:
        return pwd.getpwnam(settings.nginx_user).pw_gid
    except KeyError:
        return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Websites:
    def __init__(
        self,
        settings: WebsitesConfig,
        tls: TlsConfig,
        state_dir: Path,
        tenants: Callable[[], list[TenantHost]],
        panel_upstream: str | None = None,
    ) -> None:
        self.settings = settings
        self.tls = tls
        self.root = state_dir / "web"
        self.tenants = tenants  # every tenant the agent keeps, suspended ones too
        self.panel_upstream = panel_upstream
        self.nginx = Nginx(settings, tls, self.root)
        self._answers: dict[str, str] = {}
        self.issuer = AcmeIssuer(settings.acme, self.root / "acme", self._publish)

    # -- the record ------------------------------------------------------------------------------

    def _record_path(self, tenant: str) -> Path:
        return self.root / "sites" / f"{tenant}.json"

    def _records(self, tenant: str) -> dict[str, dict[str, object]]:
        loaded: dict[str, dict[str, object]] = read_json(self._record_path(tenant), {})
        return loaded

    def _save(self, tenant: str, records: dict[str, dict[str, object]]) -> None:
        if records:
            write_json(self._record_path(tenant), records)
        else:
            self._record_path(tenant).unlink(missing_ok=True)

    def _state(self, record: dict[str, object]) -> CertificateState:
        return CertificateState.model_validate(record["certificate"])

    def _spec(self, record: dict[str, object]) -> SiteSpec:
        return SiteSpec.model_validate(record["spec"])

    def _view(self, host: TenantHost, record: dict[str, object], revoked: bool | None = None) -> SiteHost:
        spec = self._spec(record)
        return SiteHost(
            tenant=host.name,
            name=spec.name,
            domains=list(spec.domains),
            kind=spec.kind,
            document_root=self.document_root(host, spec),
            process=spec.process,
            autoindex=spec.autoindex,
            hsts=spec.hsts,
            certificate=self._state(record),
            serving=host.state == "active",
            revoked=revoked,
        )

    @staticmethod
    def document_root(host: TenantHost, spec: SiteSpec) -> str:
        return f"{host.home}/{PUBLIC}/{spec.root or spec.name}"

    def listing(self, host: TenantHost) -> list[SiteHost]:
        return [self._view(host, record) for _, record in sorted(self._records(host.name).items())]

    def find(self, host: TenantHost, name: str) -> SiteHost:
        record = self._records(host.name).get(name)
        if record is None:
            raise SiteRefused("not_found", f"tenant {host.name} has no site {name}")
        return self._view(host, record)

    # -- verbs -----------------------------------------------------------------------------------

    def create(self, host: TenantHost, spec: SiteSpec) -> SiteHost:
        records = self._records(host.name)
        if spec.name in records:
            raise SiteRefused("conflict", f"tenant {host.name} has a site {spec.name} already")
        if len(records) >= self.settings.max_sites_per_tenant:
            raise SiteRefused(
                "conflict",
                f"tenant {host.name} has {len(records)} sites; the limit is "
                f"{self.settings.max_sites_per_tenant} (tenants.websites.max_sites_per_tenant)",
            )
        names = self._domains(spec.domains)
        spec = spec.model_copy(update={"domains": names})
        self._make_document_root(host, spec)
        records[spec.name] = {
            "spec": spec.model_dump(mode="json"),
            "certificate": CertificateState(status="pending").model_dump(mode="json"),
        }
        self._save(host.name, records)
        try:
            self.apply()
        except BaseException:
            del records[spec.name]
            self._save(host.name, records)
            raise
        return self.certify(host, spec.name)

    def delete(self, host: TenantHost, name: str) -> SiteHost:
        records = self._records(host.name)
        record = records.pop(name, None)
        if record is None:
            raise SiteRefused("not_found", f"tenant {host.name} has no site {name}")
        self._save(host.name, records)
        try:
            self.apply()
        except BaseException:
            records[name] = record  # still served: still recorded
            self._save(host.name, records)
            raise
        revoked = self._retire_certificate(f"{host.name}.{name}", self._state(record))
        return self._view(host, record, revoked=revoked)

    def delete_all(self, host: TenantHost) -> list[str]:
        """The tenant is being deleted: its sites go, their certificates are revoked. An nginx
        that refuses the configuration (another site's broken certificate) does not keep the
        tenant alive: its record is gone, the next apply that passes drops its sites, and the
        answer says so."""
        records = self._records(host.name)
        if not records:
            return []
        self._save(host.name, {})
        said = []
        try:
            self.apply()
        except (ApplyFailed, NginxUnavailable) as exc:
            said.append(f"nginx still serves its sites until the configuration applies again: {exc}")
        for name, record in records.items():
            self._retire_certificate(f"{host.name}.{name}", self._state(record))
        return said

    def certify(self, host: TenantHost, name: str) -> SiteHost:
        """Issue the site's certificate now (ACME, or self-signed with ACME off); a failure is
        recorded with its retry time and answered in the site's state, not raised."""
        records = self._records(host.name)
        record = records.get(name)
        if record is None:
            raise SiteRefused("not_found", f"tenant {host.name} has no site {name}")
        state = self._obtain(f"{host.name}.{name}", list(self._spec(record).domains), self._state(record))
        record["certificate"] = state.model_dump(mode="json")
        self._save(host.name, records)
        self.apply()
        return self._view(host, record)

    def renew_due(self, now: dt.datetime | None = None) -> list[RenewalOutcome]:
        """Every site (and the panel) whose certificate is missing, failed and due for another try,
        or within `acme.renew_before` of expiring: issued again (the agent's sweep, every few minutes)."""
        now = now or _now()
        outcomes: list[RenewalOutcome] = []
        changed = False
        for host in self.tenants():
            if host.state != "active":
                continue
            records = self._records(host.name)
            due = [name for name, record in records.items() if self._due(self._state(record), now)]
            for name in due:
                record = records[name]
                state = self._obtain(f"{host.name}.{name}", list(self._spec(record).domains), self._state(record))
                record["certificate"] = state.model_dump(mode="json")
                outcomes.append(RenewalOutcome(host.name, name, state.error is None, state.error))
            if due:
                self._save(host.name, records)
                changed = True
        panel = self._panel_state()
        if self.settings.panel_hostname and self._due(panel, now):
            panel = self._obtain(PANEL, [self.settings.panel_hostname], panel)
            write_json(self.root / f"{PANEL}.json", panel.model_dump(mode="json"))
            outcomes.append(RenewalOutcome("", PANEL, panel.error is None, panel.error))
            changed = True
        if changed:
            self.apply()
        return outcomes

    def _due(self, state: CertificateState, now: dt.datetime) -> bool:
        if state.next_attempt and now < dt.datetime.fromisoformat(state.next_attempt):
            return False  # backing off after a failure
        if state.status in {"pending", "failed"}:
            return True
        expires = dt.datetime.fromisoformat(state.not_after) if state.not_after else now
        return expires - self.settings.acme.renew_before <= now

    def expiries(self) -> dict[str, dt.datetime]:
        """When each domain's certificate expires (the panel's /metrics)."""
        found: dict[str, dt.datetime] = {}
        for host in self.tenants():
            for record in self._records(host.name).values():
                state = self._state(record)
                if state.not_after:
                    for domain in self._spec(record).domains:
                        found[domain] = dt.datetime.fromisoformat(state.not_after)
        return found

    # -- configuration ---------------------------------------------------------------------------

    def rotate_logs(self) -> list[str]:
        return self.nginx.rotate_logs(self.settings.log_max_size, self.settings.log_keep)

    def serve_if_any(self) -> None:
        """The agent starting: nginx serves the recorded sites (and the panel's hostname) again."""
        if self.settings.enabled and (self.settings.panel_hostname or list((self.root / "sites").glob("*.json"))):
            self.apply()

    def apply(self) -> int:
        """nginx serves exactly the record, with the ACME answers now outstanding."""
        vhosts: list[Vhost] = []
        log_root = self.nginx.site_log_dir  # made by the apply, nginx's group passing
        for host in self.tenants():
            for name, record in sorted(self._records(host.name).items()):
                spec = self._spec(record)
                key = f"{host.name}.{name}"
                upstream = f"{host.home}/run/{spec.process}.sock" if spec.process else None
                vhosts.append(
                    Vhost(
                        key=key,
                        domains=tuple(spec.domains),
                        kind=spec.kind,
                        document_root=self.document_root(host, spec),
                        upstream=upstream,
                        autoindex=spec.autoindex,
                        hsts=spec.hsts,
                        suspended=host.state != "active",
                        certificate=self._certificate_files(key),
                        stapling=self._stapling(key),
                        log_dir=str(log_root),
                    )
                )
        return self.nginx.apply(vhosts, dict(self._answers), self._panel_vhost(str(log_root)))

    def _panel_vhost(self, log_dir: str) -> PanelVhost | None:
        if not self.settings.panel_hostname or not self.panel_upstream:
            return None
        client = self.tls.client_auth
        verify = {"require_and_verify": "on", "require": "on", "request": "optional_no_ca"}.get(client.verify_mode)
        return PanelVhost(
            hostname=self.settings.panel_hostname,
            upstream=self.panel_upstream,
            certificate=self._certificate_files(PANEL),
            client_ca=str(client.ca_file) if client.enabled and client.ca_file else None,
            verify_client=verify if client.enabled else None,  # type: ignore[arg-type]
            log_dir=log_dir,
        )

    def _publish(self, answers: dict[str, str]) -> None:
        self._answers = answers
        self.apply()

    # -- certificates ------------------------------------------------------------------------------

    def _obtain(self, key: str, names: list[str], previous: CertificateState) -> CertificateState:
        acme = self.settings.acme
        if not acme.enabled:
            chain, key_pem = self._self_signed(names)
            self._write_certificate(key, chain, key_pem)
            return CertificateState(status="self_signed", not_after=not_after(chain).isoformat(), issuer="self")
        try:
            issued = self.issuer.issue(names)
        except IssueFailed as exc:
            failures = previous.failures + 1
            delay = min(acme.retry_delay * 2 ** (failures - 1), acme.retry_max_delay)
            # A valid certificate keeps serving while its renewal is retried.
            status = "valid" if previous.status == "valid" else "failed"
            return previous.model_copy(
                update={
                    "status": status,
                    "error": str(exc),
                    "failures": failures,
                    "next_attempt": (_now() + delay).isoformat(),
                }
            )
        self._write_certificate(key, issued.chain_pem, issued.key_pem)
        certificate = x509.load_pem_x509_certificate(issued.chain_pem)
        return CertificateState(
            status="valid",
            not_after=issued.not_after.isoformat(),
            issuer=certificate.issuer.rfc4514_string()[:200],
        )

    @staticmethod
    def _self_signed(names: list[str]) -> tuple[bytes, bytes]:
        """With ACME off (development, closed networks): HTTPS still, with a warning in browsers."""
        key_pem = new_key_pem()
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
            .sign(key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem

    def _certificate_dir(self, key: str) -> Path:
        return self.root / "certs" / key

    def _certificate_files(self, key: str) -> tuple[str, str] | None:
        directory = self._certificate_dir(key)
        chain, private = directory / "fullchain.pem", directory / "key.pem"
        return (str(chain), str(private)) if chain.is_file() and private.is_file() else None

    def _stapling(self, key: str) -> bool:
        files = self._certificate_files(key)
        try:
            return files is not None and has_ocsp_responder(Path(files[0]).read_bytes())
        except ValueError:  # not a certificate: nginx -t will say so, naming the site
            return False

    def _write_certificate(self, key: str, chain: bytes, private: bytes) -> None:
        """Key first, then the chain, each replaced whole; root's alone (nginx's master is root)."""
        directory = self._certificate_dir(key)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, content in (("key.pem", private), ("fullchain.pem", chain)):
            temporary = directory / f".{name}.new"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.replace(temporary, directory / name)

    def _retire_certificate(self, key: str, state: CertificateState) -> bool | None:
        """Revoke (ACME) and remove the certificate; whether the CA took it (None: nothing to revoke)."""
        directory = self._certificate_dir(key)
        chain = directory / "fullchain.pem"
        revoked: bool | None = None
        if state.status == "valid" and chain.is_file() and self.settings.acme.enabled:
            try:
                self.issuer.revoke(chain.read_bytes())
                revoked = True
            except IssueFailed:
                revoked = False
        for name in ("fullchain.pem", "key.pem"):
            (directory / name).unlink(missing_ok=True)
        if directory.is_dir():
            directory.rmdir()
        return revoked

    def _panel_state(self) -> CertificateState:
        return CertificateState.model_validate(read_json(self.root / f"{PANEL}.json", {"status": "pending"}))

    # -- validation --------------------------------------------------------------------------------

    def _domains(self, given: list[str]) -> list[str]:
        if len(given) > self.settings.max_domains_per_site:
            raise SiteRefused(
                "invalid",
                f"{len(given)} domains; the limit is {self.settings.max_domains_per_site} "
                "(tenants.websites.max_domains_per_site)",
            )
        try:
            names = list(dict.fromkeys(domains.normalise(name) for name in given))
        except domains.DomainRefused as exc:
            raise SiteRefused("invalid", str(exc)) from None
        panel = self.settings.panel_hostname
        taken = self._taken()
        for name in names:
            if panel and name == domains.normalise(panel):
                raise SiteRefused("conflict", f"{name} is the panel's own hostname")
            if name in taken:
                raise SiteRefused("conflict", f"{name} belongs to another site")
        return names

    def _taken(self) -> set[str]:
        return {
            name
            for host in self.tenants()
            for record in self._records(host.name).values()
            for name in self._spec(record).domains
        }

    def make_document_root(self, host: TenantHost, name: str) -> None:
        record = self._records(host.name).get(name)
        if record is None:
            raise SiteRefused("not_found", f"tenant {host.name} has no site {name}")
        self._make_document_root(host, self._spec(record))

    def _make_document_root(self, host: TenantHost, spec: SiteSpec) -> None:
        """public/<root>, made component by component without following a link; owned by the
        tenant, group nginx's (setgid, so the tenant's new files there are readable by nginx).
        A home made before websites (0750, the tenant's group) is given nginx's group, 0710."""
        group = web_group(self.settings)
        gid = group if group is not None else host.gid
        parts = [PUBLIC, *(spec.root or spec.name).split("/")]
        home_root = Path(host.home).parent
        with beneath.opened_root(home_root) as root:
            fd = os.open(host.name, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
            try:
                if group is not None and os.fstat(fd).st_gid != group:
                    os.fchown(fd, host.uid, group)
                    os.fchmod(fd, 0o710)
                for part in parts:
                    child = beneath.make_directory(fd, part, host.uid, gid, 0o2750, existing_ok=True)
                    os.close(fd)
                    fd = child
            finally:
                os.close(fd)
