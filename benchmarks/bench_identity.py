"""Sign-in through the identity providers: LDAP beside a bare ldap3 bind+search+bind, and the
OpenID Connect callback's own handling time (the provider's share taken out).

    .venv/bin/python benchmarks/bench_identity.py [--requests 200] [--rounds 3]

Both servers are the tests' real ones on loopback (tests/ldap_server.py: slapd with StartTLS and a
test CA; tests/oidc_server.py: oidc-provider over TLS). WCP360 runs in process on SQLite with the
production argon2 parameters (unused here: no local password is checked).

- LDAP: `AuthService.login(provider="ldap")` — StartTLS, service bind, the escaped search, the
  group search, the bind as the person, then the account (linked by entryUUID), roles from
  groups, the session, the refresh token and the audit event — beside bare ldap3 doing the
  protocol minimum on one connection (StartTLS, service bind, search, rebind as the person).
  Alternating rounds of `--requests` sign-ins; medians of the rounds' p50.
- OIDC: the callback route through the API (TestClient, in process): the flow claimed, the code
  exchanged at the provider, the ID token verified against the cached key set, the account, the
  session. The time spent inside the token request to the provider is measured and subtracted:
  what is left is WCP360's own handling. The person's steps at the provider are not timed.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ldap3
import yaml
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' servers
from tests.ldap_server import PASSWORDS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd, slapd
from tests.oidc_server import Browser, Client, OidcProvider, oidc_provider

from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.identity.oidc_provider import OidcProvider as WcpOidcProvider
from wcp360.runtime import Runtime

CLIENT = Client("bench", "bench-client-secret-0123456789", "http://testserver/api/v1/auth/oidc/corp/callback")


def security_yml(directory: Slapd, idp: OidcProvider) -> str:
    return yaml.safe_dump(
        {
            "auth": {
                "jwt": {"secret": "benchmark-secret-that-is-long-enough-0123456789"},
                "providers": [
                    {"type": "local"},
                    {
                        "type": "ldap",
                        "enabled": True,
                        "config": {
                            "server": directory.url,
                            "bind_dn": SERVICE_DN,
                            "bind_password": SERVICE_PASSWORD,
                            "user_base": PEOPLE,
                            "ca_file": str(directory.ca_file),
                            "group_base": "ou=groups,dc=example,dc=test",
                            "accounts": {"create": True, "groups": {"ops": ["operator"]}},
                        },
                    },
                    {
                        "type": "oidc",
                        "name": "corp",
                        "config": {
                            "issuer_url": idp.issuer,
                            "client_id": CLIENT.client_id,
                            "client_secret": CLIENT.client_secret,
                            "redirect_url": CLIENT.redirect_uri,
                            "ca_file": str(idp.ca_file),
                            "accounts": {"create": True},
                        },
                    },
                ],
            }
        }
    )


def bare_ldap(directory: Slapd, nodelay: bool) -> None:
    tls = ldap3.Tls(ca_certs_file=str(directory.ca_file), validate=2)
    server = ldap3.Server(directory.url, tls=tls, get_info=ldap3.NONE)
    connection = ldap3.Connection(server, SERVICE_DN, SERVICE_PASSWORD)
    connection.open()
    if nodelay:
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.start_tls()
    assert connection.bind()
    connection.search(PEOPLE, "(uid=alice)", attributes=["entryUUID", "mail"])
    assert len(connection.entries) == 1
    assert connection.rebind(connection.entries[0].entry_dn, PASSWORDS["alice"])
    connection.unbind()


def _r(values: list[float]) -> list[float]:
    return [round(x, 2) for x in values]


def timed(function: Any, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        function()
        samples.append(time.perf_counter() - began)
    return samples


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from wcp360.logs import configure_logging

    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with slapd(root / "slapd") as directory, oidc_provider(root / "idp", [CLIENT]) as idp:
            etc = root / "etc"
            etc.mkdir()
            (etc / "wcp360.yml").write_text("mode: dev\n")
            (etc / "security.yml").write_text(security_yml(directory, idp))
            (etc / "rate_limit.yml").write_text("rate_limiting:\n  enabled: false\n")
            rt = Runtime.open(load_config(etc, root / "data"))
            try:
                ldap_rounds, bare_rounds, floor_rounds = [], [], []
                rt.auth.login("alice", PASSWORDS["alice"], provider="ldap")  # the account exists from here
                for _ in range(args.rounds):
                    bare_rounds.append(p50_ms(timed(lambda: bare_ldap(directory, False), args.requests)))
                    floor_rounds.append(p50_ms(timed(lambda: bare_ldap(directory, True), args.requests)))
                    ldap_rounds.append(
                        p50_ms(
                            timed(lambda: rt.auth.login("alice", PASSWORDS["alice"], provider="ldap"), args.requests)
                        )
                    )
                wcp, bare = statistics.median(ldap_rounds), statistics.median(bare_rounds)
                floor = statistics.median(floor_rounds)
                print(f"LDAP sign-in p50: WCP360 {wcp:.2f} ms")
                print(f"  bare ldap3 bind+search+bind, its defaults: {bare:.2f} ms ({wcp / bare:.2f}x)")
                print(f"  bare ldap3 with TCP_NODELAY (the floor): {floor:.2f} ms ({wcp / floor:.2f}x)")
                print(f"  rounds WCP360 {_r(ldap_rounds)}, bare {_r(bare_rounds)}, floor {_r(floor_rounds)}")
                callback_rounds(rt, idp, args)
            finally:
                rt.close()


def callback_rounds(rt: Runtime, idp: OidcProvider, args: argparse.Namespace) -> None:
    provider_time: list[float] = []
    original = WcpOidcProvider.exchange

    def exchange(self: WcpOidcProvider, code: str, verifier: str) -> str:
        began = time.perf_counter()
        try:
            return original(self, code, verifier)
        finally:
            provider_time.append(time.perf_counter() - began)

    WcpOidcProvider.exchange = exchange  # type: ignore[method-assign]
    own_rounds, total_rounds = [], []
    count = max(20, args.requests // 4)  # each needs a person's sign-in at the provider first
    with TestClient(create_app(rt)) as client:
        for _ in range(args.rounds):
            own, total = [], []
            for _ in range(count):
                start = client.get("/api/v1/auth/oidc/corp/login", follow_redirects=False).headers["location"]
                callback = Browser(idp).sign_in(start, "bob-sub-2", "bob-at-the-idp")
                parts = urlsplit(callback)
                provider_time.clear()
                began = time.perf_counter()
                answer = client.get(f"{parts.path}?{parts.query}")
                elapsed = time.perf_counter() - began
                assert answer.status_code == 200, answer.text
                total.append(elapsed)
                own.append(elapsed - sum(provider_time))
            own_rounds.append(p50_ms(own))
            total_rounds.append(p50_ms(total))
    own_ms, total_ms = statistics.median(own_rounds), statistics.median(total_rounds)
    print(f"OIDC callback p50: {own_ms:.2f} ms WCP360's own handling ({total_ms:.2f} ms with the token request)")
    print(f"  rounds own {_r(own_rounds)}, with the provider {_r(total_rounds)}")


if __name__ == "__main__":
    main()
