"""Slow clients and connection floods, before a request exists: a deadline for the request's
headers and a cap on open connections per client address.

uvicorn has neither: its keep-alive timeout starts only after a response, so 300 connections that
sent header bytes slowly were all held for a minute. This subclasses its h11 protocol (the one in
use: httptools is not installed) and closes a connection whose request headers are not complete
within `wcp360.yml` `http.header_timeout` (the first request, and each later one on a kept-alive
connection), and any connection over `http.max_connections_per_address` from one address.
A front proxy in the production layout may enforce the same; this holds without one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from wcp360 import metrics


def guarded_protocol(header_timeout: float, per_address: int) -> type[H11Protocol]:
    open_per_address: Counter[str] = Counter()  # one event loop: no lock needed

    class GuardedH11Protocol(H11Protocol):
        _address: str | None = None
        _deadline: asyncio.TimerHandle | None = None
        _armed_for: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._address = self.client[0] if self.client else None
            if self._address is not None:
                open_per_address[self._address] += 1
                if open_per_address[self._address] > per_address:
                    metrics.CONNECTIONS_REFUSED.labels(reason="per_address").inc()
                    transport.close()
                    return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            if self._address is not None:
                open_per_address[self._address] -= 1
                if open_per_address[self._address] <= 0:
                    del open_per_address[self._address]
                self._address = None
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection has its own deadline

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._armed_for = self.cycle  # a new cycle exists once a request's headers are complete
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _too_slow(self) -> None:
            self._deadline = None
            if self.cycle is self._armed_for and not self.transport.is_closing():
                metrics.CONNECTIONS_REFUSED.labels(reason="header_timeout").inc()
                self.transport.close()

    return GuardedH11Protocol
