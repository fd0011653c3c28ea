"""Bans, allow/deny lists and rate limits as a client meets them over HTTP."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import NO_PRECOMPILE, TEST_SECURITY_YML, problem_of, write_files
from tests.defense.conftest import RATE_LIMIT_YML, from_
from tests.helpers import HOST, STRONG, bearer, make_user, signed_in
from wcp360 import metrics
from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.runtime import Runtime


@pytest.mark.parametrize("address", ["192.0.2.55", "2001:db8:bad::1"])
def test_blacklisted_address_is_refused_before_any_work(web: TestClient, defended: Runtime, address: str) -> None:
    make_user(defended, "target", ["viewer"])
    before = defended.hasher.verifications
    response = web.post("/api/v1/auth/login", json={"username": "target", "password": STRONG}, headers=from_(address))
    assert response.status_code == 403 and problem_of(response)["type"].endswith("address-blocked")
    assert defended.hasher.verifications == before  # no password hashing happened
    assert web.get("/healthz", headers=from_(address)).status_code == 403


def test_rate_limit_answers_429_with_headers(web: TestClient, defended: Runtime) -> None:
    before = metrics.RATE_LIMIT_VIOLATIONS._value.get()
    statuses = [web.get("/healthz", headers=from_("198.51.100.20")) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert statuses[0].headers["ratelimit-limit"] == "3" and statuses[0].headers["ratelimit-remaining"] == "2"
    refused = statuses[3]
    assert problem_of(refused)["type"].endswith("too-many-requests")
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["ratelimit-remaining"] == "0"
    assert metrics.RATE_LIMIT_VIOLATIONS._value.get() == before + 2
    # Another address has its own budget.
    assert web.get("/healthz", headers=from_("198.51.100.21")).status_code == 200


def test_refusals_are_audited_sampled(web: TestClient, defended: Runtime) -> None:
    from wcp360.audit.setup import audit_file
    from wcp360.audit.tail import iter_events

    for _ in range(10):
        web.get("/healthz", headers=from_("198.51.100.30"))
    directory, name, _ = audit_file(defended.config)
    refusals = [e for e in iter_events(directory, name) if e["action"] == "rate_limit_exceeded"]
    assert len(refusals) == 1 and refusals[0]["ip_address"] == "198.51.100.30"


def test_endpoint_globs_match_one_segment(defended: Runtime) -> None:
    patterns = [name for pattern, name, _ in defended.defense.endpoints if pattern.match("/api/v1/users/abc/disable")]
    assert patterns == ["/api/v1/users/*/disable"]
    assert not any(p.match("/api/v1/users/a/b/disable") for p, _, _ in defended.defense.endpoints)


@pytest.mark.parametrize("address", ["10.9.8.7", "fd00:1::5"])
def test_whitelist_overrides_limits_and_bans(web: TestClient, defended: Runtime, address: str) -> None:
    assert all(web.get("/healthz", headers=from_(address)).status_code == 200 for _ in range(10))
    with pytest.raises(Exception, match="whitelisted"):
        defended.defense.bans.block(HOST, address, None, "try")


def test_untrusted_peer_cannot_spoof_its_address(defended: Runtime) -> None:
    from wcp360.api.app import create_app

    with TestClient(create_app(defended), client=("198.51.100.99", 1)) as outsider:
        # Not a trusted proxy: X-Forwarded-For is ignored, the peer's own budget is used.
        codes = [outsider.get("/healthz", headers=from_(f"10.0.0.{i}")).status_code for i in range(5)]
    assert codes.count(429) == 2


def test_bans_via_api_persist_and_every_process_sees_them(web: TestClient, defended: Runtime) -> None:
    admin = signed_in(web, defended, "root", ["admin"])
    created = web.post(
        "/api/v1/ids/blocks",
        json={"address": "203.0.113.9", "duration": "1h", "reason": "abuse"},
        headers=admin.headers,
    )
    assert created.status_code == 201
    assert web.get("/healthz", headers=from_("203.0.113.9")).status_code == 403
    # Another process (the CLI, a second server, a restart) reads the same bans.
    other = Runtime.open(load_config(defended.config.config_dir, defended.config.data_dir, env={}))
    try:
        other.defense.bans.reload()
        assert other.defense.bans.banned("203.0.113.9") is not None
        assert [b.network for b in other.defense.bans.list(HOST)] == ["203.0.113.9/32"]
    finally:
        other.close()
    listed = web.get("/api/v1/ids/blocks", headers=admin.headers).json()["items"]
    assert listed[0]["reason"] == "abuse"
    assert web.delete("/api/v1/ids/blocks/203.0.113.9", headers=admin.headers).status_code == 204
    assert web.get("/healthz", headers=from_("203.0.113.9")).status_code == 200


def test_bans_need_permission(web: TestClient, defended: Runtime) -> None:
    dev = signed_in(web, defended, "dev", ["developer"])
    assert web.post("/api/v1/ids/blocks", json={"address": "203.0.113.1"}, headers=dev.headers).status_code == 403
    assert web.get("/api/v1/ids/blocks", headers=dev.headers).status_code == 403
    bad = web.post(
        "/api/v1/ids/blocks", json={"address": "not-an-ip"}, headers=signed_in(web, defended, "root", ["admin"]).headers
    )
    assert bad.status_code == 422


def test_escalating_bans(defended: Runtime) -> None:
    from datetime import datetime, timedelta

    from wcp360.defense.views import BanView

    first = defended.defense.bans.block(None, "198.51.100.77", timedelta(hours=1), "x", rule="r", escalate=True)
    second = defended.defense.bans.block(None, "198.51.100.77", timedelta(hours=1), "x", rule="r", escalate=True)
    third = defended.defense.bans.block(None, "198.51.100.77", timedelta(hours=1), "x", rule="r", escalate=True)

    def length(ban: BanView) -> float:
        assert ban.expires_at is not None
        expires = datetime.fromisoformat(ban.expires_at)
        return (expires - datetime.now(expires.tzinfo)).total_seconds() / 3600

    assert round(length(first)) == 1 and round(length(second)) == 2 and round(length(third)) == 4
    capped = defended.defense.bans
    for _ in range(10):
        last = capped.block(None, "198.51.100.77", timedelta(hours=1), "x", rule="r", escalate=True)
    assert round(length(last)) <= 7 * 24


def test_api_token_forgery_does_not_spend_the_victims_budget(defended: Runtime) -> None:
    key = defended.defense.user_key
    # Unverified API tokens choose no key at all (the address is used): neither a fresh bucket nor
    # the victim's.
    assert key("Bearer wcp_abc_one") is None and key("Bearer wcp_abc_two") is None
    assert key("Bearer not.a.jwt") is None
    assert key(f"Bearer {uuid.uuid4()}") is None
    assert key(None) is None and key("Basic x") is None
    assert bearer("x")


def test_forged_api_tokens_do_not_buy_fresh_login_buckets(tmp_path: Path) -> None:
    # The attack: `Authorization: Bearer wcp_<random>` on every guess used to give each attempt its
    # own per-endpoint bucket. Now every attempt from one address shares that address's bucket.
    etc = write_files(
        tmp_path / "etc",
        {
            "wcp360.yml": "mode: dev\n",
            "security.yml": TEST_SECURITY_YML,
            "rate_limit.yml": RATE_LIMIT_YML.replace(
                '"/api/v1/auth/login": {requests_per_minute: 6000, burst: 1000}',
                '"/api/v1/auth/login": {requests_per_minute: 3, burst: 2}',
            ),
            "sandbox.yml": NO_PRECOMPILE,
        },
    )
    rt = Runtime.open(load_config(etc, tmp_path / "data", env={}))
    try:
        make_user(rt, "victim", ["viewer"])
        with TestClient(create_app(rt), client=("127.0.0.1", 50000), raise_server_exceptions=False) as web:
            statuses = [
                web.post(
                    "/api/v1/auth/login",
                    json={"username": "victim", "password": f"guess{i}"},
                    headers={**from_("198.51.100.40"), **bearer(f"wcp_{secrets.token_hex(8)}_{secrets.token_hex(16)}")},
                ).status_code
                for i in range(6)
            ]
        assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}
    finally:
        rt.close()


def test_a_verified_api_token_is_keyed_by_its_account(web: TestClient, defended: Runtime) -> None:
    account = signed_in(web, defended, "tok", ["developer"], with_totp=True)
    created = web.post(
        "/api/v1/auth/api-tokens", json={"name": "ci", "scopes": ["modules:read"]}, headers=account.headers
    ).json()
    token = created["token"]
    assert defended.defense.user_key(f"Bearer {token}") is None  # not yet seen verified
    assert web.get("/api/v1/modules", headers=bearer(token)).status_code == 200
    # Now it shares its account's budget with the account's sessions.
    assert defended.defense.user_key(f"Bearer {token}") == f"u:{account.user_id}"
    assert defended.defense.user_key(f"Bearer {account.token}") == f"u:{account.user_id}"
