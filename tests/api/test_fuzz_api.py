"""The whole OpenAPI surface, fuzzed from its own schema (schemathesis over hypothesis), signed in
as an administrator and as nobody: no input gets a 5xx, every error is problem+json, and every
answer conforms to the document: its status code is documented, its content type and its body
match the declared response schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import NO_PRECOMPILE, TEST_SECURITY_YML, write_files
from tests.helpers import Account, dev_wcp360_yml, signed_in
from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.runtime import Runtime


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[tuple[object, Account]]:
    etc = write_files(
        tmp_path / "etc",
        {
            "wcp360.yml": dev_wcp360_yml(tmp_path),
            "security.yml": TEST_SECURITY_YML,
            "rate_limit.yml": "rate_limiting:\n  enabled: false\n",
            "sandbox.yml": NO_PRECOMPILE,
        },
    )
    rt = Runtime.open(load_config(etc, tmp_path / "data", env={}))
    app = create_app(rt)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            admin = signed_in(client, rt, "fuzzadmin", ["admin"])
            yield app, admin
    finally:
        rt.close()


CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_no_input_reaches_a_server_error(fuzzed: tuple[Any, Account]) -> None:
    app, admin = fuzzed
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40  # the whole surface, not an empty schema

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: Any) -> None:
            for headers in (admin.headers, {}):
                response = case.call(headers=headers)
                where = (case.method, case.formatted_path, response.text[:300])
                assert response.status_code < 500, where
                case.validate_response(response, checks=CONFORMANCE, headers=headers)
                if response.status_code >= 400:
                    media_type = response.headers.get("content-type") or [""]  # schemathesis: lists
                    assert media_type[0].startswith("application/problem+json"), where

        no_server_error()


@pytest.mark.usefixtures("serving_as_production_does")
def test_a_live_server_answers_as_its_document_says(tmp_path: Path) -> None:
    """The same checks against `wcp360 serve` as a real process over HTTP (uvicorn, the
    connection guard, the middleware stack as deployed), a few examples per operation."""
    import os
    import subprocess
    import sys

    import httpx

    from tests.helpers import STRONG
    from tests.test_serve import Server

    write_files(
        tmp_path / "etc",
        {
            "wcp360.yml": dev_wcp360_yml(tmp_path),
            "security.yml": TEST_SECURITY_YML,
            "rate_limit.yml": "rate_limiting:\n  enabled: false\n",
            "sandbox.yml": NO_PRECOMPILE,
        },
    )
    server = Server(tmp_path)
    try:
        env = {**os.environ, "WCP360_CONFIG_DIR": str(tmp_path / "etc"), "WCP360_DATA_DIR": str(server.data)}
        command = ["admin", "create-user", "--username", "fuzzer", "--email", "fuzzer@example.test"]
        subprocess.run(
            [sys.executable, "-m", "wcp360.cli", *command, "--roles", "developer", "--password", "-"],
            input=STRONG, env=env, check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        login = httpx.post(f"{server.url}/api/v1/auth/login", json={"username": "fuzzer", "password": STRONG})
        signed_in_headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 40

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def conforms(case: Any) -> None:
                for headers in (signed_in_headers, {}):
                    response = case.call(base_url=server.url, headers=headers)
                    case.validate_response(response, checks=CONFORMANCE, headers=headers)

            conforms()
    finally:
        server.stop()
