"""OpenID Connect sign-in: /api/v1/auth/oidc/{name}/login sends the browser to the provider; the
provider sends it back to the provider's `redirect_url`, whose path this app serves (any path the
config names, as in the seed's `https://yourdomain.com/auth/callback`), answering with the same
token pair as a password sign-in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from wcp360.api.deps import RuntimeDep
from wcp360.api.paths import API_PREFIX
from wcp360.config import ConfigError
from wcp360.errors import InvalidInput
from wcp360.identity.oidc_flows import FLOW_TTL, FlowRefused, flow_cookie
from wcp360.identity.views import TokenPairView
from wcp360.runtime import Runtime

router = APIRouter(prefix=f"{API_PREFIX}/auth/oidc", tags=["auth"])
OIDC_PREFIX = f"{API_PREFIX}/auth/oidc/"


@router.get("/{name}/login", status_code=302, response_class=RedirectResponse)
def login(name: str, request: Request, rt: RuntimeDep) -> RedirectResponse:
    """Start a sign-in at the provider `name`: a redirect there, and a cookie binding the flow to
    this browser. The redirect URI is the configured one: no request parameter chooses it."""
    if "redirect_uri" in request.query_params:
        raise InvalidInput("the redirect URI is fixed by the configuration")
    started = rt.oidc.start(name)
    answer = RedirectResponse(started.authorization_url, status_code=302)
    answer.set_cookie(
        started.cookie_name,
        started.binding,
        max_age=int(FLOW_TTL.total_seconds()),
        httponly=True,
        # Lax: the provider's top-level redirect back carries it; a cross-site POST or image does not.
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return answer


def install_callbacks(app: FastAPI, rt: Runtime) -> None:
    """A callback route at each provider's redirect path (several providers may share one)."""
    for path, names in rt.auth.providers.callback_paths().items():
        if path.startswith(f"{API_PREFIX}/") and not path.startswith(OIDC_PREFIX):
            raise ConfigError("security.yml", "auth.providers.redirect_url", None, f"{path} is an API path")
        app.add_api_route(path, _callback(names), methods=["GET"], tags=["auth"], response_model=TokenPairView)


def _callback(names: frozenset[str]) -> Callable[[Request], Awaitable[TokenPairView]]:
    async def callback(request: Request) -> TokenPairView:
        """The provider's answer: the code is exchanged, the ID token checked, the account found."""
        rt: Runtime = request.app.state.runtime
        params = dict(request.query_params)
        binding = request.cookies.get(flow_cookie(params.get("state", "")))
        try:
            profile = await run_in_threadpool(rt.oidc.finish, names, params, binding)
        except FlowRefused as refused:
            await run_in_threadpool(rt.auth.record_external_failure, refused.provider, refused.reason)
            raise
        pair = await run_in_threadpool(rt.auth.login_external, profile)
        return pair.view()

    return callback
