"""Dependencies shared by the routers: the runtime and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from wcp360.authz import Principal
from wcp360.errors import Unauthorized
from wcp360.request_context import current_request
from wcp360.runtime import Runtime


async def runtime(request: Request) -> Runtime:
    # async: no I/O here, and a sync dependency would cost a threadpool hop on every request.
    rt: Runtime = request.app.state.runtime
    return rt


async def principal(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Principal:
    # async, so a sync route pays one threadpool hop (its own) instead of two; authentication
    # that may wait on the network or a lock still runs in the threadpool (authenticates_inline).
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    address = current_request().ip_address
    if rt.auth.authenticates_inline(token):
        return rt.auth.authenticate(token, address)
    return await run_in_threadpool(rt.auth.authenticate, token, address)


RuntimeDep = Annotated[Runtime, Depends(runtime)]
PrincipalDep = Annotated[Principal, Depends(principal)]


@dataclass(frozen=True)
class Window:
    """The page a listing asks for; every paged route takes it the same way."""

    limit: int
    offset: int


async def window(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    # Bounded: a huge offset only makes the database count and skip rows for nothing.
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Window:
    return Window(limit, offset)


WindowDep = Annotated[Window, Depends(window)]
