"""How an account, its API tokens and its sign-in answers are shown by the API and the CLI (never a
hash; a secret only in the one answer that creates it)."""

from __future__ import annotations

from wcp360.identity.passwords import NO_PASSWORD
from wcp360.store.models import ApiToken, User
from wcp360.views import View


class UserView(View):
    id: str
    username: str
    email: str
    roles: list[str]
    status: str
    totp_enabled: bool
    created_by: str | None
    created_at: str
    last_login_at: str | None
    password_changed_at: str
    # How the account signs in: "local" (a password here) and the providers it is linked to.
    sign_in: list[str]


class ApiTokenView(View):
    id: str
    name: str
    scopes: list[str]
    allowed_cidrs: list[str]
    created_at: str
    expires_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewApiTokenView(ApiTokenView):
    """The answer that creates or rotates a token: the only time its secret is shown."""

    token: str


class TokenPairView(View):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class MeView(View):
    id: str
    username: str
    roles: list[str]
    permissions: list[str]
    via: str
    mfa_pending: bool


class TotpEnrollmentView(View):
    secret: str
    otpauth_uri: str


class TotpEnabledView(View):
    enabled: bool
    recovery_codes: list[str]


class ProviderView(View):
    name: str
    type: str
    # "password": POST /api/v1/auth/login with `provider`; "redirect": open login_url in a browser.
    flow: str
    login_url: str | None = None


class ProvidersView(View):
    providers: list[ProviderView]


def user_view(user: User) -> UserView:
    return UserView(
        id=str(user.id),
        username=user.username,
        email=user.email,
        roles=user.role_names,
        status=user.status,
        totp_enabled=user.totp_enabled,
        created_by=str(user.created_by) if user.created_by else None,
        created_at=user.created_at.isoformat(),
        last_login_at=user.last_login_at.isoformat() if user.last_login_at else None,
        password_changed_at=user.password_changed_at.isoformat(),
        sign_in=sign_in_methods(user),
    )


def sign_in_methods(user: User) -> list[str]:
    linked = sorted({identity.provider for identity in user.identities})
    return ([] if user.password_hash == NO_PASSWORD else ["local"]) + linked


def api_token_view(token: ApiToken) -> ApiTokenView:
    return ApiTokenView(
        id=token.id,
        name=token.name,
        scopes=list(token.scopes),
        allowed_cidrs=list(token.allowed_cidrs),
        created_at=token.created_at.isoformat(),
        expires_at=token.expires_at.isoformat(),
        last_used_at=token.last_used_at.isoformat() if token.last_used_at else None,
        revoked_at=token.revoked_at.isoformat() if token.revoked_at else None,
    )
