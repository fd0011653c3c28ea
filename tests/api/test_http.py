"""HTTP hygiene: problem+json everywhere, body limits, content types, strict JSON, headers, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import problem_of
from tests.helpers import STRONG, make_user
from wcp360.runtime import Runtime

LOGIN = "/api/v1/auth/login"


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    # Request hygiene does not touch the database engine; SQLite is enough here.
    return str(request.param)


def test_security_headers_on_success_and_error(client: TestClient) -> None:
    for response in (client.get("/healthz"), client.get("/api/v1/nowhere"), client.post(LOGIN, json={})):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["strict-transport-security"].startswith("max-age=")
        assert headers["referrer-policy"] == "no-referrer"
        assert "server" not in headers
        assert len(headers["x-request-id"]) >= 8


def test_request_id_is_echoed_only_when_well_formed(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abcdef123456"}).headers["x-request-id"] == "abcdef123456"
    forged = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert forged.headers["x-request-id"] != "<script>alert(1)</script>"


def test_oversized_body_with_content_length_is_refused_unread(client: TestClient, rt: Runtime) -> None:
    limit = rt.config.server.http.max_body_size
    response = client.post(LOGIN, content=b"{" + b" " * limit + b"}", headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert problem_of(response)["type"].endswith("payload-too-large")


def test_oversized_chunked_body_is_cut_off(client: TestClient, rt: Runtime) -> None:
    limit = rt.config.server.http.max_body_size
    chunks_sent = 0

    def stream() -> Iterator[bytes]:
        nonlocal chunks_sent
        for _ in range(limit // 65536 + 50):
            chunks_sent += 1
            yield b" " * 65536

    response = client.post(LOGIN, content=stream(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert problem_of(response)["status"] == 413


def test_per_route_body_limit(tmp_path: object, rt: Runtime) -> None:
    from wcp360.api.middleware import BodyGuardMiddleware

    guard = BodyGuardMiddleware(app=lambda *a: None, default_limit=10, overrides={"/api/v1/modules/*/upload": 1000})  # type: ignore[arg-type,return-value]
    assert guard.limit_for("/api/v1/modules/abc/upload") == 1000
    assert guard.limit_for("/api/v1/modules/a/b/upload") == 10
    assert guard.limit_for("/api/v1/auth/login") == 10


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""])
def test_non_json_bodies_get_415(client: TestClient, content_type: str) -> None:
    response = client.post(LOGIN, content=b'{"username":"a","password":"b"}', headers={"content-type": content_type})
    assert response.status_code == 415
    assert problem_of(response)["type"].endswith("unsupported-media-type")


def test_json_with_charset_is_accepted(client: TestClient, rt: Runtime) -> None:
    make_user(rt, "utf", ["viewer"])
    body = f'{{"username":"utf","password":"{STRONG}"}}'.encode()
    response = client.post(LOGIN, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "a", "password": "b", "admin": True},
        {"username": 5, "password": "b"},
        {"username": "a", "password": ["b"]},
        {"username": "a", "password": "b", "totp": 123456},
        {"username": "a"},
        [],
    ],
)
def test_strict_json_rejects_unknown_fields_and_wrong_types(client: TestClient, body: object) -> None:
    response = client.post(LOGIN, json=body)
    assert response.status_code == 422
    problem = problem_of(response)
    assert problem["errors"]
    assert all("input" not in error for error in problem["errors"])


def test_validation_errors_never_echo_the_password(client: TestClient) -> None:
    response = client.post(LOGIN, json={"username": "a", "password": "hunter2-secret", "extra": "x"})
    assert "hunter2-secret" not in response.text


def test_malformed_json_is_a_400_problem(client: TestClient) -> None:
    response = client.post(LOGIN, content=b'{"username": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert problem_of(response)["type"].endswith("malformed-json")


def test_404_405_and_500_are_problems_without_internals(client: TestClient, rt: Runtime) -> None:
    assert problem_of(client.get("/api/v1/nowhere"))["status"] == 404
    assert problem_of(client.put("/healthz"))["status"] == 405

    @client.app.get("/boom")  # type: ignore[attr-defined,untyped-decorator]
    def boom() -> None:
        raise RuntimeError("secret internal detail at /etc/wcp360")

    response = client.get("/boom")
    assert response.status_code == 500
    problem = problem_of(response)
    assert "secret internal detail" not in response.text and "Traceback" not in response.text
    assert problem["request_id"] == response.headers["x-request-id"]


def test_openapi_is_3_1_and_lists_the_routes(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    for path in (
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/me",
        "/api/v1/auth/2fa/enroll",
        "/api/v1/auth/api-tokens",
        "/api/v1/users",
        "/api/v1/users/{user_id}/roles/{role}",
    ):
        assert path in spec["paths"], path


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
