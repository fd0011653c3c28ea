"""/api/v1/audit: the trail, newest first, for holders of `audit:read` (or `system:*`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from wcp360.api.deps import PrincipalDep, RuntimeDep
from wcp360.api.paths import API_PREFIX
from wcp360.audit.pages import newest_first
from wcp360.audit.search import EventFilter, parse_moment
from wcp360.audit.setup import audit_file
from wcp360.audit.views import AuditPageView
from wcp360.errors import InvalidInput

router = APIRouter(prefix=f"{API_PREFIX}/audit", tags=["audit"])
AUDIT_READ = ("audit:read", "system:audit")


@router.get("", response_model_exclude_unset=True)  # an event shows the fields it has
def list_events(
    actor: PrincipalDep,
    rt: RuntimeDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_id: Annotated[str | None, Query(max_length=128)] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPageView:
    rt.policy.require(actor, AUDIT_READ)
    try:
        where = EventFilter(
            action, actor_id, outcome, parse_moment(since) if since else None, parse_moment(until) if until else None
        )
    except ValueError as exc:
        raise InvalidInput(f"invalid time: {exc}") from None
    directory, name, _ = audit_file(rt.config)
    # The file is the source of truth; a page is the newest `limit` matches below `before_seq`.
    page = newest_first(directory, where, limit, before_seq, name)
    return AuditPageView(items=page.items, next_before_seq=page.next_before_seq)
