"""A runtime with rate limits on, the IDS listening to the audit trail, and a trusted local proxy
so tests can speak from any address through X-Forwarded-For."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import NO_PRECOMPILE, TEST_SECURITY_YML, write_files
from wcp360.api.app import create_app
from wcp360.audit.setup import trail_scope
from wcp360.config import load_config
from wcp360.runtime import Runtime

RATE_LIMIT_YML = """\
rate_limiting:
  enabled: true
  global: {requests_per_minute: 6000, burst: 1000}
  per_user: {requests_per_minute: 6000, burst: 1000}
  per_endpoint:
    "/api/v1/auth/login": {requests_per_minute: 6000, burst: 1000}
    "/healthz": {requests_per_minute: 6, burst: 2}
    "/api/v1/users/*/disable": {requests_per_minute: 6, burst: 0}
  ip_whitelist: ["10.0.0.0/8", "fd00:1::/64"]
  ip_blacklist: ["192.0.2.0/24", "2001:db8:bad::/48"]
  trusted_proxies: ["127.0.0.0/8"]
"""


@contextmanager
def defended_runtime(root: Path, security_yml: str = TEST_SECURITY_YML) -> Iterator[Runtime]:
    """A runtime beneath `root` with these limits, the IDS reading its trail, and `security_yml`."""
    etc = write_files(
        root / "etc",
        {
            "wcp360.yml": "mode: dev\n",
            "security.yml": security_yml,
            "rate_limit.yml": RATE_LIMIT_YML,
            "sandbox.yml": NO_PRECOMPILE,
        },
    )
    rt = Runtime.open(load_config(etc, root / "data", env={}))
    try:
        with trail_scope(rt.config, rt.db, extra_sinks=[rt.defense.ids]):
            yield rt
    finally:
        rt.close()


@pytest.fixture
def defended(tmp_path: Path) -> Iterator[Runtime]:
    with defended_runtime(tmp_path) as rt:
        yield rt


@pytest.fixture
def web(defended: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(defended), client=("127.0.0.1", 50000), raise_server_exceptions=False) as client:
        yield client


def from_(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}
