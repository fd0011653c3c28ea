"""The HTTP application: /api/v1 routers behind the request guards, problem+json on every error."""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI

from wcp360 import __version__
from wcp360.api.defense_middleware import DefenseMiddleware
from wcp360.api.errors import install_error_handlers
from wcp360.api.middleware import BodyGuardMiddleware, RequestContextMiddleware
from wcp360.api.openapi import install_openapi
from wcp360.api.paths import API_PREFIX
from wcp360.api.routers import audit, auth, ids, metrics, modules, oidc, sites, snapshots, tasks, tenants, users
from wcp360.api.routers.modules import MODULE_MEDIA_TYPES
from wcp360.runtime import Runtime
from wcp360.views import View


class Health(View):
    status: Literal["ok"]


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(
        title="WCP360 API",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        # The interactive docs load scripts from a CDN, which the CSP forbids; the schema is enough.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = rt
    install_error_handlers(app)
    install_openapi(app)
    # Each router carries its full prefix, so route templates (metrics labels) are whole paths.
    for router in (
        auth.router,
        oidc.router,
        users.router,
        audit.router,
        ids.router,
        modules.router,
        modules.runs_router,
        snapshots.router,
        tasks.router,
        tenants.router,
        sites.router,
        metrics.router,
    ):
        app.include_router(router)
    oidc.install_callbacks(app, rt)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        return Health(status="ok")

    http = rt.config.server.http
    # Starlette runs the last-added middleware first: the context wraps everything, so even a
    # 413 from the body guard carries the security headers and a request id.
    app.add_middleware(
        BodyGuardMiddleware,
        default_limit=http.max_body_size,
        overrides={sites.UPLOAD_ROUTE: rt.config.server.tenants.websites.uploads.max_size, **http.body_limits},
        media_types={f"{API_PREFIX}/modules": MODULE_MEDIA_TYPES, sites.UPLOAD_ROUTE: sites.UPLOAD_MEDIA_TYPES},
    )
    # Bans and rate limits after the client address is known, before anything reads the body.
    app.add_middleware(DefenseMiddleware, defense=rt.defense)
    app.add_middleware(RequestContextMiddleware, trusted_proxies=rt.config.rate_limiting.trusted_proxies)
    return app
