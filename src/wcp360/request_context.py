"""Where the current action comes from (client address, user agent, request id).

Set once per HTTP request by the API middleware and once per CLI invocation, read by `record`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    channel: str = "api"


_INTERNAL = RequestContext(channel="internal")  # frozen, so safe as a shared default
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("wcp360_request", default=_INTERNAL)


def current_request() -> RequestContext:
    return _current.get()


@contextmanager
def bind_request(context: RequestContext) -> Iterator[None]:
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)
