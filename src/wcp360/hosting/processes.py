"""A tenant's supervised processes on the panel side: who may see and change them (the tenant's
own `tenants:read` / `tenants:update`), the audit trail, the typed views; the agent runs them."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import select

from wcp360 import audit, metrics
from wcp360.authz import Principal
from wcp360.errors import InvalidInput
from wcp360.hosting.tenants import TenantService, agent_errors
from wcp360.hosting.views import ProcessView, TenantProcessesView, UsageView
from wcp360.store.models import Tenant
from wcp360.store.scope import SYSTEM
from wcp360.system.client import AgentRefused, AgentUnavailable
from wcp360.system.protocol import (
    ProcessControl,
    ProcessList,
    ProcessSpec,
    ProcessStart,
    ProcessState,
    TenantProcesses,
)

Action = Literal["start", "stop", "restart", "remove"]


def process_view(state: ProcessState) -> ProcessView:
    return ProcessView.model_validate(state.model_dump())


class ProcessService:
    def __init__(self, tenants: TenantService) -> None:
        self.tenants = tenants
        self.agent = tenants.agent

    def list(self, actor: Principal, tenant_id: uuid.UUID) -> TenantProcessesView:
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:read")
        with agent_errors():
            listing = self.agent.call(ProcessList(tenant=tenant.name), actor.actor_label)
        assert isinstance(listing, TenantProcesses)
        return TenantProcessesView(
            tenant=listing.tenant,
            processes=[process_view(state) for state in listing.processes],
            usage=UsageView.model_validate(listing.usage.model_dump()),
        )

    def start(self, actor: Principal, tenant_id: uuid.UUID, spec: ProcessSpec) -> ProcessView:
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        with agent_errors():
            state = self.agent.call(ProcessStart(tenant=tenant.name, process=spec), actor.actor_label)
        assert isinstance(state, ProcessState)
        self._record(actor, tenant_id, tenant.name, "start", state)
        return process_view(state)

    def control(self, actor: Principal, tenant_id: uuid.UUID, name: str, action: Action) -> ProcessView:
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        try:
            call = ProcessControl(tenant=tenant.name, name=name, action=action)
        except ValueError:
            raise InvalidInput(f"{name!r} is not a process name") from None
        with agent_errors():
            state = self.agent.call(call, actor.actor_label)
        assert isinstance(state, ProcessState)
        self._record(actor, tenant_id, tenant.name, action, state)
        return process_view(state)

    def refresh_metrics(self) -> None:
        """Set the per-tenant gauges from the agent (a /metrics scrape). Tenants the agent cannot
        answer for are left out of this scrape rather than failing it."""
        with self.tenants.db.transaction(SYSTEM, readonly=True) as s:
            names = list(s.scalars(select(Tenant.name).where(Tenant.status == "active").order_by(Tenant.name)))
        for gauge in (metrics.TENANT_CPU_SECONDS, metrics.TENANT_MEMORY_BYTES, metrics.TENANT_PIDS):
            gauge.clear()
        metrics.TENANT_PROCESSES.clear()
        for name in names:
            try:
                listing = self.agent.call(ProcessList(tenant=name), "system")
            except (AgentRefused, AgentUnavailable):
                continue
            assert isinstance(listing, TenantProcesses)
            usage = listing.usage
            for gauge, value in (
                (metrics.TENANT_CPU_SECONDS, usage.cpu_seconds),
                (metrics.TENANT_MEMORY_BYTES, usage.memory_bytes),
                (metrics.TENANT_PIDS, usage.pids),
            ):
                if value is not None:
                    gauge.labels(tenant=name).set(value)
            for state in listing.processes:
                metrics.TENANT_PROCESSES.labels(tenant=name, status=state.status).inc()

    @staticmethod
    def _record(actor: Principal, tenant_id: uuid.UUID, tenant: str, action: str, state: ProcessState) -> None:
        audit.record(
            f"tenant_process_{action}",
            actor=actor,
            resource_type="tenant",
            resource_id=str(tenant_id),
            details={"tenant": tenant, "process": state.name, "runtime": state.runtime, "argv": state.argv},
        )
