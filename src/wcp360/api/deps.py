"""Dependencies shared by the routers: the runtime and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from wcp360.audit import current_request
from wcp360.authz import Principal
from wcp360.errors import Unauthorized
from wcp360.runtime import Runtime


async def runtime(request: Request) -> Runtime:
    # async: no I/O here, and a sync dependency would cost a threadpool hop on every request.
    rt: Runtime = request.app.state.runtime
    return rt


def principal(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required")
    return rt.auth.authenticate(token.strip(), current_request().ip_address)


RuntimeDep = Annotated[Runtime, Depends(runtime)]
PrincipalDep = Annotated[Principal, Depends(principal)]
