"""GET /metrics: Prometheus text for an allow-listed scraper address or a holder of `metrics:read`."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.concurrency import run_in_threadpool

from wcp360.api.deps import principal, runtime
from wcp360.request_context import current_request

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    rt = await runtime(request)
    client = current_request().ip_address
    if not _allowed_scraper(client, rt.config.server.metrics.allow_from):
        actor = await principal(request, rt)
        rt.policy.require(actor, "metrics:read")
    await run_in_threadpool(rt.processes.refresh_metrics)
    await run_in_threadpool(rt.sites.refresh_metrics)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _allowed_scraper(client: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if client is None or not networks:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in network for network in networks)
