"""Sign-in, refresh rotation and replay, sign-out and disabled accounts, over HTTP on both backends."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tests.conftest import CapturingSink, problem_of
from tests.helpers import HOST, STRONG, bearer, login, make_user, signed_in
from wcp360.runtime import Runtime
from wcp360.store.models import Session, User
from wcp360.store.scope import NOBODY
from wcp360.store.types import utcnow


def test_login_returns_the_token_pair(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "dev1", ["developer"])
    body = login(client, "dev1")
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == int(rt.config.auth.jwt.expiry.total_seconds())
    me = client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "dev1"
    assert "modules:create" in me.json()["permissions"]


def test_username_is_case_insensitive(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "carol", ["viewer"])
    login(client, "CAROL")


def test_unknown_user_and_wrong_password_look_the_same(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    make_user(rt, "dave", ["viewer"])
    before = rt.hasher.verifications
    wrong = client.post("/api/v1/auth/login", json={"username": "dave", "password": "Wrong!Passw0rd#1"})
    middle = rt.hasher.verifications
    unknown = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "Wrong!Passw0rd#1"})
    # Both paths run exactly one argon2 verification: that is what keeps their timing alike.
    assert middle - before == 1
    assert rt.hasher.verifications - middle == 1
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(problem_of(wrong)) == strip(problem_of(unknown))
    reasons = [e.details["reason"] for e in audit_events.of("login_failure")]
    assert reasons == ["bad_password", "unknown_user"]


def test_disabled_account_cannot_sign_in_and_its_tokens_stop_at_once(client: TestClient, rt: Runtime) -> None:
    user = make_user(rt, "erin", ["developer"])
    tokens = login(client, "erin")
    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    rt.users.set_status(HOST, __import__("uuid").UUID(user["id"]), "disabled")
    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    denied = client.post("/api/v1/auth/login", json={"username": "erin", "password": STRONG})
    assert denied.status_code == 401
    assert problem_of(denied)["detail"] == "invalid username or password"


def test_refresh_rotates(client: TestClient, rt: Runtime, audit_events: CapturingSink) -> None:
    make_user(rt, "frank", ["developer"])
    first = login(client, "frank")
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/auth/me", headers=bearer(second.json()["access_token"])).status_code == 200
    assert "token_refresh" in audit_events.actions()


def test_refresh_replay_revokes_the_whole_family(client: TestClient, rt: Runtime, audit_events: CapturingSink) -> None:
    make_user(rt, "grace", ["developer"])
    stolen = login(client, "grace")
    legit = client.post("/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]}).json()
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]})
    assert replay.status_code == 401
    assert "reuse detected" in problem_of(replay)["detail"]
    # Everything issued in that family is dead: the rotated refresh token and its access token.
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": legit["refresh_token"]}).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(legit["access_token"])).status_code == 401
    replays = [e for e in audit_events.of("token_refresh") if e.outcome == "replay_detected"]
    assert len(replays) == 1
    # Other sessions of the same user are untouched.
    other = login(client, "grace")
    assert client.get("/api/v1/auth/me", headers=bearer(other["access_token"])).status_code == 200


def test_logout_revokes_access_and_refresh(client: TestClient, rt: Runtime, audit_events: CapturingSink) -> None:
    make_user(rt, "heidi", ["developer"])
    tokens = login(client, "heidi")
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"])).status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert "logout" in audit_events.actions()


def test_expired_refresh_token_is_refused(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "ivan", ["developer"])
    tokens = login(client, "ivan")
    with rt.db.transaction(NOBODY) as s:
        s.execute(update(Session).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_sessions_last_refresh_expiry(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "judy", ["developer"])
    login(client, "judy")
    with rt.db.transaction(NOBODY) as s:
        session = s.scalars(select(Session)).one()
        assert abs(session.expires_at - session.created_at - rt.config.auth.jwt.refresh_expiry) < timedelta(seconds=5)


def test_password_is_rehashed_when_parameters_change(client: TestClient, rt: Runtime) -> None:
    from argon2 import PasswordHasher as RawHasher

    make_user(rt, "kim", ["viewer"])
    weak = RawHasher(time_cost=1, memory_cost=8192 // 2, parallelism=1).hash(STRONG)
    with rt.db.transaction(NOBODY) as s:
        s.execute(update(User).where(User.username == "kim").values(password_hash=weak))
    login(client, "kim")
    with rt.db.transaction(NOBODY) as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "kim"))
    assert stored is not None and stored != weak and "m=8192,t=1" in stored


def test_change_own_password_ends_other_sessions(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "leo", ["developer"])
    here, elsewhere = login(client, "leo"), login(client, "leo")
    bad = client.post(
        "/api/v1/auth/password",
        headers=bearer(here["access_token"]),
        json={"current_password": "nope", "new_password": "An0ther!Secret#99"},
    )
    assert bad.status_code == 401
    weak = client.post(
        "/api/v1/auth/password",
        headers=bearer(here["access_token"]),
        json={"current_password": STRONG, "new_password": "password"},
    )
    assert weak.status_code == 422 and "violations" in weak.json()
    ok = client.post(
        "/api/v1/auth/password",
        headers=bearer(here["access_token"]),
        json={"current_password": STRONG, "new_password": "An0ther!Secret#99"},
    )
    assert ok.status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(here["access_token"])).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(elsewhere["access_token"])).status_code == 401
    login(client, "leo", "An0ther!Secret#99")


def test_missing_or_malformed_bearer(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}, bearer("x.y.z")):
        response = client.get("/api/v1/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_admin_must_enrol_2fa_before_acting(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "root2", ["admin"])
    tokens = login(client, "root2")
    me = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).json()
    assert me["mfa_pending"] is True
    assert set(me["permissions"]) <= {"self:read", "self:2fa", "self:sessions"}
    denied = client.get("/api/v1/users", headers=bearer(tokens["access_token"]))
    assert denied.status_code == 403 and "second factor" in problem_of(denied)["detail"]


def test_admin_with_2fa_has_full_rights(client: TestClient, rt: Runtime) -> None:
    admin = signed_in(client, rt, "root3", ["admin"])
    assert client.get("/api/v1/users", headers=admin.headers).status_code == 200


def test_concurrent_refreshes_of_one_token_let_one_win(rt: Runtime) -> None:
    """Two requests racing with the same refresh token: one rotation, and the loser is a replay."""
    from concurrent.futures import ThreadPoolExecutor

    from wcp360.errors import Unauthorized

    make_user(rt, "race", ["developer"])
    pair = rt.auth.login("race", STRONG)

    def attempt(_: int) -> str:
        try:
            rt.auth.refresh(pair.refresh_token)
            return "ok"
        except Unauthorized as exc:
            return exc.detail

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(attempt, range(4)))
    assert outcomes.count("ok") == 1
    assert any("reuse detected" in o for o in outcomes)  # the first loser trips the replay alarm
    with rt.db.transaction(NOBODY) as s:
        assert s.scalars(select(Session)).one().revoked_reason == "refresh_token_replay"


def test_only_enabled_providers_are_offered(client: TestClient) -> None:
    assert client.get("/api/v1/auth/providers").json() == {
        "providers": [{"name": "local", "type": "local", "flow": "password", "login_url": None}]
    }


def test_disabled_local_provider_refuses_password_sign_in(client: TestClient, rt: Runtime) -> None:
    from wcp360.config.security import LocalProvider
    from wcp360.identity.providers import Providers

    make_user(rt, "offline", ["viewer"])
    rt.auth.settings = rt.auth.settings.model_copy(update={"providers": [LocalProvider(type="local", enabled=False)]})
    rt.auth.providers = Providers(rt.auth.settings)
    response = client.post("/api/v1/auth/login", json={"username": "offline", "password": STRONG})
    assert response.status_code == 401 and "not offered" in problem_of(response)["detail"]


def test_control_characters_in_a_username_are_refused_not_a_server_error(client: TestClient) -> None:
    # A NUL once reached PostgreSQL (which refuses it) and came back as a 500.
    for name in ("alice\x00", "ali\nce", "\x1b[31malice"):
        answer = client.post("/api/v1/auth/login", json={"username": name, "password": STRONG})
        assert answer.status_code == 422, answer.text
