"""/api/v1/auth: sign-in, tokens, the signed-in account, 2FA and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Response

from wcp360.api.deps import PrincipalDep, RuntimeDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.responses import ViewResponse
from wcp360.api.schemas import (
    ApiTokenCreateBody,
    LoginBody,
    PasswordChangeBody,
    RefreshBody,
    TotpCodeBody,
    TotpDisableBody,
)
from wcp360.identity.views import (
    ApiTokenView,
    MeView,
    NewApiTokenView,
    ProvidersView,
    ProviderView,
    TokenPairView,
    TotpEnabledView,
    TotpEnrollmentView,
)
from wcp360.request_context import current_request
from wcp360.views import Items

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])


@router.get("/providers")
async def providers(rt: RuntimeDep) -> ProvidersView:
    """The sign-in methods offered here (enabled in security.yml)."""
    return ProvidersView(
        providers=[
            ProviderView(
                name=p.name,
                type=p.type,
                flow=p.flow,
                login_url=f"{API_PREFIX}/auth/oidc/{p.name}/login" if p.flow == "redirect" else None,
            )
            for p in rt.auth.providers.offered()
        ]
    )


@router.post("/login")
async def login(body: LoginBody, rt: RuntimeDep) -> TokenPairView:
    # async so that a throttled attempt waits on the event loop, not in a worker thread. Every
    # password provider (local, the directory) passes the same throttles and lockout.
    pair = await rt.defense.sign_in(
        current_request().ip_address,
        body.username,
        rt.auth,
        lambda: rt.auth.login(body.username, body.password, body.totp, body.provider),
    )
    return pair.view()


@router.post("/refresh")
def refresh(body: RefreshBody, rt: RuntimeDep) -> TokenPairView:
    return rt.auth.refresh(body.refresh_token).view()


@router.post("/logout", status_code=204)
def logout(actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.auth.logout(actor)
    return Response(status_code=204)


@router.get("/me", response_model=MeView)
async def me(actor: PrincipalDep, rt: RuntimeDep) -> ViewResponse:
    # async: the principal is already resolved (in the threadpool); what is left is CPU-only.
    rt.policy.require(actor, "self:read")
    me = MeView(
        id=str(actor.user_id),
        username=actor.username,
        roles=list(actor.roles),
        permissions=sorted(rt.policy.effective(actor)),
        via=actor.via,
        mfa_pending=actor.mfa_pending,
    )
    return ViewResponse(me)


@router.post("/password", status_code=204)
def change_password(body: PasswordChangeBody, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.auth.change_password(actor, body.current_password, body.new_password)
    return Response(status_code=204)


@router.post("/2fa/enroll")
def enroll_2fa(actor: PrincipalDep, rt: RuntimeDep) -> TotpEnrollmentView:
    return rt.two_factor.enroll(actor)


@router.post("/2fa/confirm")
def confirm_2fa(body: TotpCodeBody, actor: PrincipalDep, rt: RuntimeDep) -> TotpEnabledView:
    return TotpEnabledView(enabled=True, recovery_codes=rt.two_factor.confirm(actor, body.code))


@router.post("/2fa/verify", status_code=204)
async def verify_2fa(body: TotpCodeBody, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    """Complete a session opened without the second factor (an OpenID Connect sign-in)."""
    await rt.defense.sign_in(
        current_request().ip_address,
        actor.username,
        rt.auth,
        lambda: rt.auth.verify_second_factor(actor, body.code),
    )
    return Response(status_code=204)


@router.post("/2fa/disable", status_code=204)
def disable_2fa(body: TotpDisableBody, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.two_factor.disable(actor, body.password, body.code)
    return Response(status_code=204)


@router.post("/api-tokens", status_code=201)
def create_api_token(body: ApiTokenCreateBody, actor: PrincipalDep, rt: RuntimeDep) -> NewApiTokenView:
    return rt.api_tokens.create(actor, body.name, body.scopes, body.expires_in_days, body.allowed_cidrs)


@router.get("/api-tokens")
def list_api_tokens(actor: PrincipalDep, rt: RuntimeDep) -> Items[ApiTokenView]:
    return Items[ApiTokenView](items=rt.api_tokens.list_tokens(actor))


@router.post("/api-tokens/{token_id}/rotate")
def rotate_api_token(token_id: str, actor: PrincipalDep, rt: RuntimeDep) -> NewApiTokenView:
    return rt.api_tokens.rotate(actor, token_id)


@router.delete("/api-tokens/{token_id}", status_code=204)
def revoke_api_token(token_id: str, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.api_tokens.revoke(actor, token_id)
    return Response(status_code=204)
