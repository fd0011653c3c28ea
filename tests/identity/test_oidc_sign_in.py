"""OpenID Connect sign-in against a real OpenID provider (`oidc-provider`, tests/oidc_server.py) on
loopback with TLS, on both database backends, attacked the way an outsider would: a wrong or
replayed state, a replayed code, a flow finished in another browser, a code delivered to another
provider's callback (mix-up), a foreign `iss`, an open redirect, forged ID tokens (another key,
`alg: none`, HMAC with the public key, expired, another audience, another nonce), a claim of
root's email, and a key rotation at the provider."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import TEST_SECURITY_YML, CapturingSink, problem_of
from tests.defense.conftest import defended_runtime, from_
from tests.helpers import HOST, bearer, enable_totp, login, make_user
from tests.oidc_server import Browser, Client, OidcProvider, new_keys, oidc_provider, query_of
from wcp360.api.app import create_app
from wcp360.identity.oidc_provider import RefusedToken
from wcp360.runtime import Runtime

CALLBACK = "http://testserver/api/v1/auth/oidc/{}/callback"
CORP = Client("wcp360-corp", "corp-client-secret-0123456789", CALLBACK.format("corp"))
OTHER = Client("wcp360-other", "other-client-secret-0123456789", CALLBACK.format("other"))


@pytest.fixture
def corp(tmp_path: Path) -> Iterator[OidcProvider]:
    with oidc_provider(tmp_path / "corp-idp", [CORP]) as provider:
        yield provider


@pytest.fixture
def other(tmp_path: Path) -> Iterator[OidcProvider]:
    with oidc_provider(tmp_path / "other-idp", [OTHER], keys=new_keys("EC")) as provider:
        yield provider


def oidc_security_yml(corp: OidcProvider, other: OidcProvider) -> str:
    def entry(name: str, provider: OidcProvider, client: Client, **extra: object) -> dict[str, object]:
        return {
            "type": "oidc",
            "name": name,
            "config": {
                "issuer_url": provider.issuer,
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_url": client.redirect_uri,
                "ca_file": str(provider.ca_file),
                "scopes": ["openid", "email", "profile", "groups"],
                **extra,
            },
        }

    base = yaml.safe_load(TEST_SECURITY_YML)
    base["auth"]["providers"] = [
        {"type": "local"},
        entry(
            "corp",
            corp,
            CORP,
            trust_mfa=True,
            accounts={"create": True, "groups": {"ops": ["operator"], "admins": ["reseller"]}},
        ),
        # No just-in-time accounts here: an administrator links them.
        entry("other", other, OTHER),
    ]
    return yaml.safe_dump(base)


@pytest.fixture
def config_dir(config_dir: Path, corp: OidcProvider, other: OidcProvider) -> Path:
    (config_dir / "security.yml").write_text(oidc_security_yml(corp, other))
    return config_dir


def start(client: TestClient, name: str) -> str:
    answer = client.get(f"/api/v1/auth/oidc/{name}/login", follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def deliver(client: TestClient, callback_url: str) -> httpx.Response:
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}")


def sign_in(
    client: TestClient, provider: OidcProvider, name: str, sub: str, password: str, mfa: bool = False
) -> httpx.Response:
    return deliver(client, Browser(provider).sign_in(start(client, name), sub, password, mfa=mfa))


def me(client: TestClient, tokens: dict[str, Any]) -> dict[str, Any]:
    answer = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_code_flow_ends_in_a_session_like_a_password_sign_in(
    client: TestClient, rt: Runtime, corp: OidcProvider, audit_events: CapturingSink
) -> None:
    authorization = start(client, "corp")
    query = query_of(authorization)
    # PKCE S256, state and nonce, and exactly the configured redirect URI.
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == CORP.redirect_uri and query["state"] and query["nonce"]
    answer = deliver(client, Browser(corp).sign_in(authorization, "alice-sub-1", "alice-at-the-idp"))
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    account = me(client, tokens)
    # ops -> operator, admins -> reseller; reseller needs 2FA, which this sign-in did not assert.
    assert account["username"] == "alice" and account["roles"] == ["operator", "reseller"]
    assert account["mfa_pending"] is True
    assert rt.users.get(HOST, uuid.UUID(account["id"])).sign_in == ["corp"]
    # Refresh and sign-out work as for any session.
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    success = audit_events.of("login_success")[-1]
    assert success.details["provider"] == "corp" and success.details["mfa"] is False


def test_a_second_factor_asserted_by_the_provider_is_trusted_when_configured(
    client: TestClient, corp: OidcProvider
) -> None:
    answer = sign_in(client, corp, "corp", "alice-sub-1", "alice-at-the-idp", mfa=True)
    assert answer.status_code == 200, answer.text
    assert me(client, answer.json())["mfa_pending"] is False


def test_an_account_with_totp_completes_an_oidc_session_with_its_code(
    client: TestClient, rt: Runtime, other: OidcProvider
) -> None:
    user = make_user(rt, "bob", ["developer"])
    rt.users.link_identity(HOST, uuid.UUID(user["id"]), "other", other.issuer, "bob-sub-2")
    device, _ = enable_totp(client, login(client, "bob")["access_token"])
    tokens = sign_in(client, other, "other", "bob-sub-2", "bob-at-the-idp").json()
    assert me(client, tokens)["mfa_pending"] is True
    headers = bearer(tokens["access_token"])
    assert client.get("/api/v1/modules", headers=headers).status_code == 403
    assert client.post("/api/v1/auth/2fa/verify", json={"code": "000000"}, headers=headers).status_code == 401
    assert client.post("/api/v1/auth/2fa/verify", json={"code": device.code()}, headers=headers).status_code == 204
    assert me(client, tokens)["mfa_pending"] is False
    assert client.get("/api/v1/modules", headers=headers).status_code == 200


def test_a_wrong_state_or_a_replayed_callback_is_refused(
    client: TestClient, corp: OidcProvider, audit_events: CapturingSink
) -> None:
    callback = Browser(corp).sign_in(start(client, "corp"), "alice-sub-1", "alice-at-the-idp")
    query = query_of(callback)
    forged = deliver(client, CORP.redirect_uri + "?" + urlencode({**query, "state": "x" * 43}))
    assert forged.status_code == 401
    assert deliver(client, callback).status_code == 200
    replayed = deliver(client, callback)
    assert replayed.status_code == 401 and "already used" in problem_of(replayed)["detail"]
    reasons = [e.details["reason"] for e in audit_events.of("login_failure")]
    assert reasons == ["bad_state", "bad_state"]


def test_a_stolen_code_is_useless_in_the_thiefs_own_flow(client: TestClient, corp: OidcProvider) -> None:
    victim = query_of(Browser(corp).sign_in(start(client, "corp"), "alice-sub-1", "alice-at-the-idp"))
    # The thief starts a flow of its own (its state, its cookie) and hands in the victim's code:
    # the PKCE verifier of the thief's flow does not match the victim's challenge.
    thief = query_of(start(client, "corp"))
    answer = deliver(client, CORP.redirect_uri + "?" + urlencode({**victim, "state": thief["state"]}))
    assert answer.status_code == 401 and "refused the code" in problem_of(answer)["detail"]


def test_a_flow_finished_in_another_browser_is_refused(rt: Runtime, client: TestClient, corp: OidcProvider) -> None:
    callback = Browser(corp).sign_in(start(client, "corp"), "alice-sub-1", "alice-at-the-idp")
    # Login CSRF: the attacker's finished flow handed to a victim's browser (no binding cookie).
    with TestClient(create_app(rt), raise_server_exceptions=False) as victim:
        answer = deliver(victim, callback)
    assert answer.status_code == 401 and "another browser" in problem_of(answer)["detail"]


def test_mix_up_a_code_delivered_to_another_providers_callback_is_refused(
    client: TestClient, corp: OidcProvider, other: OidcProvider, audit_events: CapturingSink
) -> None:
    # A flow started with `other`, its answer delivered to corp's callback.
    callback = Browser(other).sign_in(start(client, "other"), "bob-sub-2", "bob-at-the-idp")
    query = query_of(callback)
    answer = deliver(client, CORP.redirect_uri + "?" + urlencode(query))
    assert answer.status_code == 401 and "does not belong" in problem_of(answer)["detail"]
    # And an answer naming another issuer than the flow's provider (RFC 9207 `iss`).
    callback = Browser(corp).sign_in(start(client, "corp"), "alice-sub-1", "alice-at-the-idp")
    answer = deliver(client, CORP.redirect_uri + "?" + urlencode({**query_of(callback), "iss": other.issuer}))
    assert answer.status_code == 401 and "does not come from" in problem_of(answer)["detail"]
    assert [e.details["reason"] for e in audit_events.of("login_failure")] == ["mix_up", "mix_up"]
    assert all(e.details["provider"] in ("corp", "other") for e in audit_events.of("login_failure"))


def test_the_redirect_uri_is_fixed_no_open_redirect(client: TestClient, corp: OidcProvider) -> None:
    refused = client.get("/api/v1/auth/oidc/corp/login?redirect_uri=https://evil.example/", follow_redirects=False)
    assert refused.status_code == 422
    # Tampering with the authorization URL: the provider matches redirect URIs exactly.
    authorization = start(client, "corp")
    tampered = authorization.replace("testserver", "evil.example")
    answer = Browser(corp).http.get(tampered, allow_redirects=False, timeout=30, verify=str(corp.ca_file))
    assert answer.status_code == 400 and "evil.example" not in answer.headers.get("location", "")


def test_an_identity_is_never_linked_by_its_email_or_name(
    client: TestClient, rt: Runtime, corp: OidcProvider, audit_events: CapturingSink
) -> None:
    make_user(rt, "admin", ["admin"])
    rt.users.update(HOST, rt.users.find_id("admin"), email="admin@localhost")
    # mallory's provider account claims admin's username and email (verified, even).
    answer = sign_in(client, corp, "corp", "mallory-sub-3", "mallory-at-the-idp")
    assert answer.status_code == 401 and "linked" in problem_of(answer)["detail"]
    assert audit_events.of("login_failure")[-1].details["reason"] == "not_linked"


def test_without_just_in_time_accounts_an_administrator_links_them(
    client: TestClient, rt: Runtime, other: OidcProvider
) -> None:
    refused = sign_in(client, other, "other", "bob-sub-2", "bob-at-the-idp")
    assert refused.status_code == 401
    user = make_user(rt, "robert", ["viewer"])
    rt.users.link_identity(HOST, uuid.UUID(user["id"]), "other", other.issuer, "bob-sub-2")
    tokens = sign_in(client, other, "other", "bob-sub-2", "bob-at-the-idp").json()
    assert me(client, tokens)["username"] == "robert"
    assert rt.users.get(HOST, uuid.UUID(user["id"])).sign_in == ["local", "other"]
    # Unlinking ends the sessions it opened.
    rt.users.unlink_identity(HOST, uuid.UUID(user["id"]), "other")
    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 401


def test_a_key_rotation_at_the_provider_is_followed(client: TestClient, corp: OidcProvider) -> None:
    assert sign_in(client, corp, "corp", "alice-sub-1", "alice-at-the-idp").status_code == 200
    old_kid = corp.keys[0].kid
    corp.restart(keys=new_keys())  # WCP360 still holds the old key set in its cache
    assert corp.keys[0].kid != old_kid
    answer = sign_in(client, corp, "corp", "alice-sub-1", "alice-at-the-idp")
    assert answer.status_code == 200, answer.text


def test_providers_are_listed_with_their_flows(client: TestClient) -> None:
    listed = client.get("/api/v1/auth/providers").json()["providers"]
    assert [(p["name"], p["flow"], p["login_url"]) for p in listed] == [
        ("local", "password", None),
        ("corp", "redirect", "/api/v1/auth/oidc/corp/login"),
        ("other", "redirect", "/api/v1/auth/oidc/other/login"),
    ]
    assert client.get("/api/v1/auth/oidc/google/login", follow_redirects=False).status_code == 404


# -- forged ID tokens, checked against the real provider's discovery and key set -------------


def _claims(corp: OidcProvider, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": corp.issuer, "sub": "alice-sub-1", "aud": CORP.client_id, "iat": now, "exp": now + 300, "nonce": "n-1",
    }  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(
    corp: OidcProvider, claims: dict[str, object], key: Any = None, header: dict[str, object] | None = None
) -> str:
    key = key or corp.keys[0]
    return jwt.encode(header or {"alg": "RS256", "kid": corp.keys[0].kid}, claims, key)


def _part(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object], kid: str) -> str:
    return f"{_part({'alg': 'none', 'kid': kid})}.{_part(claims)}."


def _hmac_with_public_key(corp: OidcProvider, claims: dict[str, object]) -> str:
    """The key-confusion forgery: HS256 "signed" with the provider's public key as the secret
    (hand-made: joserfc refuses to build such a key, rightly)."""
    signing_input = f"{_part({'alg': 'HS256', 'kid': corp.keys[0].kid})}.{_part(claims)}"
    secret = corp.keys[0].as_pem(private=False)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_forged_id_tokens_are_refused(rt: Runtime, corp: OidcProvider) -> None:
    provider = rt.auth.providers.oidc["corp"]
    kid = corp.keys[0].kid
    assert provider.validate(_signed(corp, _claims(corp)), "n-1")["sub"] == "alice-sub-1"  # the control
    another_key = RSAKey.generate_key(2048, parameters={"kid": kid})
    forgeries = {
        "signed by another key with the provider's kid": _signed(corp, _claims(corp), key=another_key),
        "alg none": _unsigned(_claims(corp), kid),
        "HMAC keyed with the public key": _hmac_with_public_key(corp, _claims(corp)),
        "expired": _signed(corp, _claims(corp, exp=int(time.time()) - 3600, iat=int(time.time()) - 4000)),
        "another audience": _signed(corp, _claims(corp, aud="someone-else")),
        "several audiences without azp": _signed(corp, _claims(corp, aud=[CORP.client_id, "someone-else"])),
        "another nonce": _signed(corp, _claims(corp, nonce="n-2")),
        "no nonce": _signed(corp, _claims(corp, nonce=None)),
        "another issuer": _signed(corp, _claims(corp, iss="https://evil.example")),
        "issued long ago": _signed(corp, _claims(corp, iat=int(time.time()) - 7200)),
        "an unknown kid": _signed(corp, _claims(corp), header={"alg": "RS256", "kid": "nobody"}),
    }
    for what, token in forgeries.items():
        with pytest.raises(RefusedToken):
            provider.validate(token, "n-1")
            pytest.fail(f"accepted an ID token {what}")


@pytest.fixture
def defended_oidc(tmp_path: Path, corp: OidcProvider, other: OidcProvider) -> Iterator[Runtime]:
    with defended_runtime(tmp_path / "defended", oidc_security_yml(corp, other)) as rt:
        yield rt


def test_refused_callbacks_count_toward_the_address_ban(defended_oidc: Runtime) -> None:
    with TestClient(create_app(defended_oidc), client=("127.0.0.1", 50000), raise_server_exceptions=False) as web:
        forged = {"code": "x", "state": "forged-state-value"}
        callback = f"/api/v1/auth/oidc/corp/callback?{urlencode(forged)}"
        statuses = [web.get(callback, headers=from_("198.51.100.77")).status_code for _ in range(8)]
        assert statuses[:6] == [401] * 6 and set(statuses[6:]) == {403}
        assert web.get("/healthz", headers=from_("198.51.100.78")).status_code == 200


def test_doctor_checks_each_provider_over_verified_tls(rt: Runtime, corp: OidcProvider, other: OidcProvider) -> None:
    from wcp360.doctor import _identity_providers

    found = {c.name: c for c in _identity_providers(rt.config)}
    assert found["provider corp"].status == found["provider other"].status == "ok"
    other.stop()
    found = {c.name: c for c in _identity_providers(rt.config)}
    assert found["provider corp"].status == "ok"
    assert found["provider other"].status == "fail" and "did not answer" in found["provider other"].detail
