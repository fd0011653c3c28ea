"""One verb at a time, audited: the part of the agent the socket server and the in-process agent share.

Every verb is an event on the trail (`channel: agent`) carrying the panel-side actor and request
id, whatever its outcome. Verbs run one at a time: privileged changes are rare, and two verbs on
one tenant must not interleave (a delete while its create is still making the home).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from wcp360 import audit
from wcp360.request_context import RequestContext, bind_request
from wcp360.system.host import AgentFailure, HostAgent
from wcp360.system.protocol import (
    AgentError,
    AgentReply,
    AgentRequest,
    AuditAppendOnly,
    DatabaseHost,
    DatabaseList,
    FirewallSync,
    JobOutcome,
    ProcessList,
    SiteList,
    TenantRun,
)


class Dispatcher:
    def __init__(self, host: HostAgent) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._settling: list[threading.Thread] = []

    def handle(self, request: AgentRequest, peer: str | None = None) -> AgentReply:
        call = request.call
        context = RequestContext(ip_address=None, user_agent=peer, request_id=request.request_id, channel="agent")
        with bind_request(context):
            if isinstance(call, AuditAppendOnly):
                return self._audit_attribute(request, call)
            # A job runs outside the lock: it changes nothing of the host's record, and one
            # tenant's minute-long job must not hold every other verb (a suspend that would stop it).
            reading = isinstance(call, TenantRun | ProcessList | DatabaseList | SiteList)
            serialised = contextlib.nullcontext() if reading else self._lock
            try:
                with serialised:
                    result = self.host.run(call)
            except AgentFailure as failure:
                self._record(request, "failure", {"error": failure.code, "reason": failure.message[:300]})
                return AgentReply(
                    request_id=request.request_id, error=AgentError(code=failure.code, message=failure.message)
                )
            except Exception as exc:  # an agent bug must answer, not leave the panel waiting
                self._record(request, "failure", {"error": "failed", "reason": type(exc).__name__})
                message = f"the agent failed: {type(exc).__name__}"
                return AgentReply(request_id=request.request_id, error=AgentError(code="failed", message=message))
            if isinstance(call, ProcessList | DatabaseList | SiteList):  # a reading: nothing changed, no event
                return AgentReply(request_id=request.request_id, result=result)
            details: dict[str, Any] = result.model_dump(mode="json")
            if isinstance(result, DatabaseHost):  # never the password, not even redacted
                details = result.model_dump(mode="json", exclude={"password"})
            if isinstance(result, JobOutcome):  # the trail keeps what happened, not the job's output
                details = {
                    "exit_code": result.exit_code,
                    "stdout_bytes": len(result.stdout),
                    "stderr_bytes": len(result.stderr),
                    "truncated": result.truncated,
                    "timed_out": result.timed_out,
                }
            self._record(request, "success", details)
            return AgentReply(request_id=request.request_id, result=result)

    def serialised(self) -> threading.Lock:
        """The verb lock, for work the agent starts itself (the hourly password rotation)."""
        return self._lock

    def _audit_attribute(self, request: AgentRequest, call: AuditAppendOnly) -> AgentReply:
        """Outside the verb lock, and its event queued without waiting: the server asks while it
        holds the audit log's lock (rotating it), so waiting for our own event to be written, or
        for a verb whose event is, would wait for the server, which waits for this answer."""
        details: dict[str, Any] = {"on": call.on}
        try:
            reply = AgentReply(request_id=request.request_id, result=self.host.audit_append_only(call))
        except AgentFailure as failure:
            details.update(error=failure.code, reason=failure.message[:300])
            error = AgentError(code=failure.code, message=failure.message)
            reply = AgentReply(request_id=request.request_id, error=error)
        self._later(
            "agent_audit_append_only",
            actor_id=request.actor,
            outcome="success" if reply.error is None else "failure",
            resource_type="audit",
            resource_id=call.file,
            details=details,
        )
        return reply

    def _later(self, action: str, **fields: Any) -> None:
        """Queue the event and let a thread of its own wait for it (and feed the sinks)."""
        pending = audit.submit(action, **fields)
        waiter = threading.Thread(target=pending.wait, daemon=True)
        self._settling = [t for t in self._settling if t.is_alive()] + [waiter]
        waiter.start()

    def settle(self) -> None:
        """Wait for every event queued by `_later` (the agent stopping; tests)."""
        for waiter in list(self._settling):
            waiter.join()

    @staticmethod
    def _record(request: AgentRequest, outcome: str, details: dict[str, Any]) -> None:
        call = request.call
        is_firewall = isinstance(call, FirewallSync)
        if isinstance(call, FirewallSync):
            arguments: dict[str, Any] = {"bans": len(call.bans)}
        else:
            arguments = call.model_dump(mode="json", exclude={"verb"})
        audit.record(
            "agent_" + call.verb.replace(".", "_"),
            actor_id=request.actor,
            outcome=outcome,
            resource_type="firewall" if is_firewall else "tenant",
            resource_id="inet wcp360" if is_firewall else getattr(call, "tenant", None),
            details={"arguments": arguments, **details},
        )
