"""A real OpenID provider (the npm package `oidc-provider`, OpenID Certified) on loopback for the
OIDC sign-in tests, with TLS from a CA the test makes.

`tests/oidc/provider.mjs` is the server; `scripts/test-deps.sh` installs its pinned packages
(`npm ci` in tests/oidc). The test holds the provider's private signing keys (it made them), so it
can both rotate them (`restart(keys=...)`) and forge tokens the provider's own key signed but whose
claims are wrong. `Browser` plays the person at the provider's login page."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from joserfc.jwk import ECKey, RSAKey

from tests.pki import free_port, make_ca, make_leaf

READY_TIMEOUT = 60.0
SCRIPT = Path(__file__).parent / "oidc" / "provider.mjs"

ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice-sub-1": {
        "password": "alice-at-the-idp",
        "claims": {
            "email": "alice@corp.test",
            "email_verified": True,
            "preferred_username": "alice",
            "name": "Alice",
            "groups": ["ops", "admins"],
        },
    },
    "bob-sub-2": {
        "password": "bob-at-the-idp",
        "claims": {"email": "bob@corp.test", "email_verified": True, "preferred_username": "bob", "groups": ["ops"]},
    },
    # Claims root's email and username: WCP360 must never link by them.
    "mallory-sub-3": {
        "password": "mallory-at-the-idp",
        "claims": {"email": "admin@localhost", "email_verified": True, "preferred_username": "admin"},
    },
}


def new_keys(kind: str = "RSA") -> list[RSAKey | ECKey]:
    kid = f"{kind.lower()}-{secrets.token_hex(4)}"
    if kind == "EC":
        return [ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})]
    return [RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})]


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass
class OidcProvider:
    issuer: str
    ca_file: Path
    directory: Path
    port: int
    clients: list[Client]
    keys: list[RSAKey | ECKey]
    process: subprocess.Popen[bytes] | None = None
    cert: Path = field(default=Path())
    key: Path = field(default=Path())

    def start(self) -> None:
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "cert": str(self.cert),
            "key": str(self.key),
            "cookie_key": secrets.token_hex(16),
            "keys": [k.as_dict(private=True) for k in self.keys],
            "accounts": ACCOUNTS,
            "clients": [
                {
                    "client_id": c.client_id,
                    "client_secret": c.client_secret,
                    "redirect_uris": [c.redirect_uri],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "id_token_signed_response_alg": self.keys[0].as_dict()["alg"],
                }
                for c in self.clients
            ],
        }
        path = self.directory / "provider.json"
        path.write_text(json.dumps(config))
        log = (self.directory / "provider.log").open("ab")
        self.process = subprocess.Popen(["node", str(SCRIPT), str(path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._answers():
            assert self.process.poll() is None, (self.directory / "provider.log").read_text()
            assert time.monotonic() < deadline, "oidc-provider did not answer"
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            requests.get(f"{self.issuer}/.well-known/openid-configuration", verify=str(self.ca_file), timeout=5)
            return True
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=READY_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self, keys: list[RSAKey | ECKey] | None = None) -> None:
        """Stop and start again on the same port, with new signing keys when given (rotation)."""
        self.stop()
        if keys is not None:
            self.keys = keys
        self.start()


class Browser:
    """The person at the provider: follows the authorization redirect, posts the login form and
    hands back where the provider sends them (the relying party's callback URL with code and
    state), without following it, as the test delivers it to WCP360 itself."""

    def __init__(self, provider: OidcProvider) -> None:
        self.http = requests.Session()
        # Per request, not Session.verify: an environment's REQUESTS_CA_BUNDLE overrides the latter.
        self.ca = str(provider.ca_file)

    def sign_in(self, authorization_url: str, login: str, password: str, mfa: bool = False) -> str:
        answer = self.http.get(authorization_url, allow_redirects=False, timeout=30, verify=self.ca)
        location = answer.headers.get("location", "")
        if "/interaction/" in location:
            interaction = urljoin(authorization_url, location)
            posted = self.http.post(
                f"{interaction}/login",
                data={"login": login, "password": password, **({"mfa": "1"} if mfa else {})},
                allow_redirects=False,
                timeout=30,
                verify=self.ca,
            )
            assert posted.status_code == 303, posted.text
            answer = self.http.get(
                urljoin(interaction, posted.headers["location"]), allow_redirects=False, timeout=30, verify=self.ca
            )
            location = answer.headers.get("location", "")
        assert answer.status_code in (302, 303), (answer.status_code, answer.text)
        return location


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@contextlib.contextmanager
def oidc_provider(
    directory: Path, clients: list[Client], keys: list[RSAKey | ECKey] | None = None
) -> Iterator[OidcProvider]:
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key, ca = make_ca(directory, "oidc-test-ca")
    cert, key = make_leaf(directory, "localhost", ca_key, ca)
    port = free_port()
    provider = OidcProvider(
        issuer=f"https://127.0.0.1:{port}",
        ca_file=ca_path,
        directory=directory,
        port=port,
        clients=clients,
        keys=keys or new_keys(),
        cert=cert,
        key=key,
    )
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
