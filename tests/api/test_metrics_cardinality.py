"""/metrics stays bounded however many distinct permissions callers ask for."""

from __future__ import annotations

import random
import string

from fastapi.testclient import TestClient

from tests.helpers import signed_in
from wcp360.runtime import Runtime


def _word() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=10))


def test_random_scopes_do_not_grow_metrics(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "scoper", ["developer"], with_totp=True)
    admin = signed_in(client, rt, "metricsadmin", ["admin"])

    def size() -> int:
        return len(client.get("/metrics", headers=admin.headers).content)

    for _ in range(5):
        client.post("/api/v1/auth/api-tokens", json={"name": "x", "scopes": ["users:read"]}, headers=dev.headers)
    before = size()
    for _ in range(100):
        scope = f"{_word()}:{_word()}"
        response = client.post("/api/v1/auth/api-tokens", json={"name": "x", "scopes": [scope]}, headers=dev.headers)
        assert response.status_code == 403
    assert size() - before < 2_000  # one "other" series at most, not one per request
