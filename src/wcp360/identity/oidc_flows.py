"""OpenID Connect sign-in flows: from the redirect to the provider to its callback, each used once.

`start` makes the flow's secrets — `state`, `nonce`, the PKCE verifier and a browser binding — and
keeps them server-side (`login_flows`), so several API processes share them and a copy of an old
request cannot replay them. `finish` claims the flow with a guarded DELETE: of two callbacks with
one state only one finds it. The callback must come from the browser that started the flow (the
binding cookie), to the path of the provider that started it, and name that provider's issuer when
the provider says it will (RFC 9207): a code from one provider delivered to another's callback (the
mix-up attack) is refused before it is ever sent anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from wcp360.errors import NotFound, Unauthorized
from wcp360.identity.external import ExternalProfile
from wcp360.identity.oidc_provider import OidcProvider, RefusedToken
from wcp360.keys import HostKeys
from wcp360.store.database import Database
from wcp360.store.models import LoginFlow
from wcp360.store.scope import NOBODY
from wcp360.store.types import utcnow

# Long enough to type a password and a second factor at the provider; short enough that a
# forgotten tab holds nothing of value.
FLOW_TTL = timedelta(minutes=10)
UNKNOWN_FLOW = "unknown, expired or already used sign-in; start again"


@dataclass(frozen=True)
class StartedFlow:
    authorization_url: str
    cookie_name: str
    # Goes into the browser's cookie; only its hash is stored.
    binding: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def flow_cookie(state: str) -> str:
    """The binding cookie's name: one per flow, so sign-ins in two tabs do not overwrite each other."""
    return "wcp360_oidc_" + _hash(state)[:16]


class FlowRefused(Unauthorized):
    """A callback that does not belong to a flow this browser started with this provider."""

    def __init__(self, detail: str, provider: str | None = None, reason: str = "bad_state") -> None:
        super().__init__(detail)
        self.provider = provider
        self.reason = reason


class OidcFlows:
    def __init__(self, db: Database, keys: HostKeys, providers: Mapping[str, OidcProvider]) -> None:
        self.db = db
        self.keys = keys
        self.providers = providers

    def start(self, name: str) -> StartedFlow:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound(f"no identity provider named {name!r} is enabled")
        state, nonce, binding = (secrets.token_urlsafe(32) for _ in range(3))
        verifier = secrets.token_urlsafe(64)  # RFC 7636: 43-128 characters
        url = provider.authorization_url(state, nonce, verifier)
        now = utcnow()
        with self.db.transaction(NOBODY) as s:
            s.execute(delete(LoginFlow).where(LoginFlow.expires_at <= now))
            s.add(
                LoginFlow(
                    state_hash=_hash(state),
                    provider=name,
                    nonce=nonce,
                    code_verifier=self.keys.encrypt(verifier),
                    binding_hash=_hash(binding),
                    created_at=now,
                    expires_at=now + FLOW_TTL,
                )
            )
        return StartedFlow(url, flow_cookie(state), binding)

    def finish(self, allowed: frozenset[str], params: Mapping[str, str], binding: str | None) -> ExternalProfile:
        """The callback: `allowed` are the providers whose redirect URL has this path."""
        flow = self._claim(params.get("state") or "")
        if flow is None:
            raise FlowRefused(UNKNOWN_FLOW)
        name = flow.provider
        if binding is None or not secrets.compare_digest(_hash(binding), flow.binding_hash):
            raise FlowRefused("this sign-in was started in another browser", name, "browser_mismatch")
        provider = self.providers.get(name)
        if provider is None or name not in allowed:
            raise FlowRefused(f"this callback does not belong to {name}", name, "mix_up")
        if "error" in params:
            error = "".join(c for c in params["error"][:64] if c.isalnum() or c in "_-")
            raise FlowRefused(f"{name} did not sign you in: {error}", name, "provider_error")
        issuer = params.get("iss")
        if (issuer is not None and issuer != provider.issuer) or (issuer is None and provider.metadata().sends_iss):
            raise FlowRefused(f"the answer does not come from {name}", name, "mix_up")
        code = params.get("code")
        if not code:
            raise FlowRefused("the provider's answer has no code", name, "no_code")
        try:
            id_token = provider.exchange(code, self.keys.decrypt(flow.code_verifier))
            return provider.profile(provider.validate(id_token, flow.nonce))
        except RefusedToken as refused:
            raise FlowRefused(refused.detail, name, "id_token_refused") from None

    def _claim(self, state: str) -> LoginFlow | None:
        """Take the flow out of the table: exactly one caller gets it, once, before it expires."""
        if not state:
            return None
        key = _hash(state)
        with self.db.transaction(NOBODY) as s:
            flow = s.scalar(select(LoginFlow).where(LoginFlow.state_hash == key))
            if flow is None:
                return None
            s.expunge(flow)
            taken = s.execute(delete(LoginFlow).where(LoginFlow.state_hash == key))
            if cast("CursorResult[Any]", taken).rowcount != 1 or flow.expires_at <= utcnow():
                return None
        return flow
