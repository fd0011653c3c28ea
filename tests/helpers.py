"""Small helpers for driving accounts through the API the way a client would."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
from fastapi.testclient import TestClient

from wcp360.authz import Principal
from wcp360.runtime import Runtime

STRONG = "Str0ng!Passphrase#42"
# Tenants made by tests are real Linux users (as root) in this id range, with homes beneath the
# test's own directory; whatever a test leaves is removed after it (conftest).
# Each test session takes its own hundred ids, so two sessions on one machine (a clean-clone CI
# run beside a developer's) never allocate, or clean up, each other's tenants.
TEST_UID_MIN = 42000 + (os.getpid() % 10) * 100
TEST_UID_MAX = TEST_UID_MIN + 99


def dev_wcp360_yml(root: Path) -> str:
    """wcp360.yml for a test server: dev mode, tenants beneath `root`, in the tests' id range."""
    return (
        "mode: dev\n"
        "tenants:\n"
        f"  home_root: {root / 'srv' / 'www'}\n"
        f"  archive_dir: {root / 'tenant-archives'}\n"
        f"  uid_min: {TEST_UID_MIN}\n"
        f"  uid_max: {TEST_UID_MAX}\n"
    )
HOST = Principal.host_admin("tests")


def make_user(rt: Runtime, username: str, roles: list[str], password: str = STRONG) -> dict[str, Any]:
    return rt.users.create(HOST, username, f"{username}@example.test", password, roles).model_dump()


@dataclass
class TotpDevice:
    """Hands out codes for successive, never reused, time steps within the accepted window."""

    secret: str
    last_step: int = field(default=0)
    window: int = 2

    def code(self) -> str:
        now = int(time.time()) // 30
        step = max(self.last_step + 1, now - self.window + 1)
        assert step <= now + self.window, "TOTP window exhausted in this test"
        self.last_step = step
        return pyotp.TOTP(self.secret).at(step * 30)


def login(client: TestClient, username: str, password: str = STRONG, totp: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"username": username, "password": password}
    if totp is not None:
        body["totp"] = totp
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enable_totp(client: TestClient, access_token: str) -> tuple[TotpDevice, list[str]]:
    enrolled = client.post("/api/v1/auth/2fa/enroll", headers=bearer(access_token))
    assert enrolled.status_code == 200, enrolled.text
    device = TotpDevice(enrolled.json()["secret"])
    confirmed = client.post("/api/v1/auth/2fa/confirm", json={"code": device.code()}, headers=bearer(access_token))
    assert confirmed.status_code == 200, confirmed.text
    return device, confirmed.json()["recovery_codes"]


@dataclass
class Account:
    username: str
    user_id: str
    token: str
    refresh: str
    device: TotpDevice | None = None

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def signed_in(client: TestClient, rt: Runtime, username: str, roles: list[str], with_totp: bool = False) -> Account:
    """Create an account and sign it in; with 2FA set up when asked or when its role requires it."""
    user = make_user(rt, username, roles)
    tokens = login(client, username)
    device = None
    if with_totp or rt.two_factor.required_for(roles):
        device, _ = enable_totp(client, tokens["access_token"])
    return Account(username, user["id"], tokens["access_token"], tokens["refresh_token"], device)
