"""A tenant's websites on the panel side: who may see and change them (the tenant's own
`tenants:read` / `tenants:update`, as for its processes and databases), the audit trail, the
typed views, uploads staged for the agent. The agent keeps the record, nginx and certificates."""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from wcp360 import audit, metrics
from wcp360.authz import Principal
from wcp360.errors import InvalidInput, NotFound
from wcp360.hosting.tenants import TenantService, agent_errors
from wcp360.hosting.views import CertificateView, SiteView, UploadView
from wcp360.store.models import Tenant
from wcp360.store.scope import SYSTEM
from wcp360.system.client import AgentRefused, AgentUnavailable
from wcp360.system.protocol import (
    SiteCertify,
    SiteCreate,
    SiteDelete,
    SiteHost,
    SiteList,
    SiteSpec,
    SiteUpload,
    TenantSiteList,
    UploadOutcome,
)

SITE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
UploadFormat = Literal["file", "zip", "tar"]
Alert = Callable[[str, str, dict[str, Any]], None]


def site_view(host: SiteHost) -> SiteView:
    return SiteView(
        **host.model_dump(exclude={"tenant", "certificate"}),
        certificate=CertificateView.model_validate(host.certificate.model_dump()),
    )


class SiteService:
    def __init__(self, tenants: TenantService, spool: Path, max_upload: int, alert: Alert) -> None:
        self.tenants = tenants
        self.agent = tenants.agent
        self.spool = spool  # where uploads wait for the agent (the data directory's uploads/)
        self.max_upload = max_upload
        self.alert = alert

    def list(self, actor: Principal, tenant_id: uuid.UUID) -> list[SiteView]:
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:read")
        with agent_errors():
            listing = self.agent.call(SiteList(tenant=tenant.name), actor.actor_label)
        assert isinstance(listing, TenantSiteList)
        return [site_view(site) for site in listing.sites]

    def get(self, actor: Principal, tenant_id: uuid.UUID, name: str) -> SiteView:
        for site in self.list(actor, tenant_id):
            if site.name == name:
                return site
        raise NotFound(f"no site {name!r}")

    def create(self, actor: Principal, tenant_id: uuid.UUID, spec: SiteSpec) -> SiteView:
        """The site is served once this answers: over HTTPS when its certificate was issued, and
        its certificate's state says what is pending or failed (retried by the agent)."""
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        with agent_errors():
            made = self.agent.call(SiteCreate(tenant=tenant.name, site=spec), actor.actor_label)
        assert isinstance(made, SiteHost)
        self._record(actor, tenant_id, "create", made)
        return site_view(made)

    def certify(self, actor: Principal, tenant_id: uuid.UUID, name: str) -> SiteView:
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        with agent_errors():
            done = self.agent.call(SiteCertify(tenant=tenant.name, name=self._name(name)), actor.actor_label)
        assert isinstance(done, SiteHost)
        self._record(actor, tenant_id, "certify", done)
        return site_view(done)

    def delete(self, actor: Principal, tenant_id: uuid.UUID, name: str, confirm: str) -> SiteView:
        """`confirm` repeats the site's name. Its files stay in the tenant's home."""
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        if confirm != name:
            raise InvalidInput(f"confirm by giving the site's name ({name}) again")
        with agent_errors():
            gone = self.agent.call(SiteDelete(tenant=tenant.name, name=self._name(name)), actor.actor_label)
        assert isinstance(gone, SiteHost)
        self._record(actor, tenant_id, "delete", gone)
        return site_view(gone)

    def staging(self) -> Staging:
        """A file in the spool for an upload's body, counted against its limit as it arrives."""
        return Staging(self.spool, self.max_upload)

    def upload(
        self, actor: Principal, tenant_id: uuid.UUID, name: str, kind: UploadFormat, path: str, staged: Staging
    ) -> UploadView:
        """The agent checks, scans and writes the staged upload. An infected one is audited and
        alerted; a refused one changes nothing."""
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        details: dict[str, Any] = {"tenant": tenant.name, "site": name, "format": kind, "path": path[:200]}
        details["bytes"] = staged.size
        call = SiteUpload(tenant=tenant.name, name=self._name(name), staged=staged.name, format=kind, path=path)
        try:
            with agent_errors():
                done = self.agent.call(call, actor.actor_label)
        except (InvalidInput, NotFound) as refused:
            infected = "contains malware" in str(refused)
            details["reason"] = str(refused)[:300]
            audit.record(
                "site_upload_infected" if infected else "site_upload", actor=actor, outcome="denied",
                resource_type="tenant", resource_id=str(tenant_id), details=details,
            )  # fmt: skip
            if infected:
                self.alert("site_upload_infected", f"{tenant.name}/{name}", details)
            raise
        assert isinstance(done, UploadOutcome)
        details.update(files=done.files, scanned=done.scanned, stripped_exec=done.stripped_exec)
        audit.record("site_upload", actor=actor, resource_type="tenant", resource_id=str(tenant_id), details=details)
        return UploadView.model_validate(done.model_dump(exclude={"tenant"}))

    def refresh_metrics(self) -> None:
        """certificate_expiry_seconds per domain, from the agent (a /metrics scrape)."""
        with self.tenants.db.transaction(SYSTEM, readonly=True) as s:
            names = list(s.scalars(select(Tenant.name).order_by(Tenant.name)))
        metrics.CERTIFICATE_EXPIRY_SECONDS.clear()
        now = dt.datetime.now(dt.UTC)
        for name in names:
            try:
                listing = self.agent.call(SiteList(tenant=name), "system")
            except (AgentRefused, AgentUnavailable):
                continue
            assert isinstance(listing, TenantSiteList)
            for site in listing.sites:
                if site.certificate.not_after:
                    left = (dt.datetime.fromisoformat(site.certificate.not_after) - now).total_seconds()
                    for domain in site.domains:
                        metrics.CERTIFICATE_EXPIRY_SECONDS.labels(domain=domain).set(left)

    @staticmethod
    def _name(name: str) -> str:
        if not SITE_NAME.fullmatch(name):
            raise InvalidInput(f"{name[:40]!r} is not a site name: a-z first, then a-z 0-9 -, at most 32 characters")
        return name

    @staticmethod
    def _record(actor: Principal, tenant_id: uuid.UUID, action: str, site: SiteHost) -> None:
        audit.record(
            f"site_{action}",
            actor=actor,
            resource_type="tenant",
            resource_id=str(tenant_id),
            details={
                "tenant": site.tenant,
                "site": site.name,
                "domains": site.domains,
                "kind": site.kind,
                "certificate": site.certificate.status,
                "certificate_error": site.certificate.error,
            },
        )


class Staging:
    """An upload's body on its way to the agent: `upload-<random>` in the spool (0600, the panel's),
    refused past `limit` bytes, removed when done (the agent takes it out of the spool itself)."""

    def __init__(self, spool: Path, limit: int) -> None:
        self.spool, self.limit = spool, limit
        self.name = f"upload-{uuid.uuid4().hex}"
        self.size = 0
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._out = os.fdopen(os.open(spool / self.name, flags, 0o600), "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise InvalidInput(f"the upload is over {self.limit} bytes (tenants.websites.uploads.max_size)")
        self._out.write(chunk)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *_: object) -> None:
        self._out.close()
        (self.spool / self.name).unlink(missing_ok=True)

    def close(self) -> None:
        self._out.close()
