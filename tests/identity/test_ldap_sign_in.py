"""LDAP sign-in against a real slapd (tests/ldap_server.py) on loopback, on both database backends,
attacked the way an outsider would: filter injection in the username, the empty-password anonymous
bind, a locked or deleted directory account holding live sessions, a group left, a wrong CA."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_SECURITY_YML, CapturingSink, problem_of
from tests.defense.conftest import defended_runtime, from_
from tests.helpers import HOST, STRONG, bearer, make_user
from tests.ldap_server import PASSWORDS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd, slapd
from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.config.security import LdapSettings
from wcp360.errors import ProviderUnavailable, Unauthorized
from wcp360.identity.ldap_directory import Directory
from wcp360.runtime import Runtime

GROUPS_BASE = "ou=groups,dc=example,dc=test"


def ldap_security_yml(server: Slapd, **overrides: object) -> str:
    """TEST_SECURITY_YML with local and LDAP providers: JIT accounts, ops -> operator."""
    settings: dict[str, object] = {
        "server": server.url,
        "bind_dn": SERVICE_DN,
        "bind_password_file": str(server.directory / "bind-password"),
        "user_base": PEOPLE,
        "user_filter": "(uid=%s)",
        "start_tls": True,
        "ca_file": str(server.ca_file),
        "group_base": GROUPS_BASE,
        "accounts": {"create": True, "groups": {"ops": ["operator"]}},
        **overrides,
    }
    (server.directory / "bind-password").write_text(SERVICE_PASSWORD + "\n")
    base = yaml.safe_load(TEST_SECURITY_YML)
    base["auth"]["providers"] = [{"type": "local"}, {"type": "ldap", "enabled": True, "config": settings}]
    return yaml.safe_dump(base)


@pytest.fixture
def directory_server(tmp_path: Path) -> Iterator[Slapd]:
    with slapd(tmp_path / "slapd") as server:
        yield server


@pytest.fixture
def config_dir(config_dir: Path, directory_server: Slapd) -> Path:
    (config_dir / "security.yml").write_text(ldap_security_yml(directory_server))
    return config_dir


def ldap_login(client: TestClient, username: str, password: str, **extra: str) -> object:
    body = {"username": username, "password": password, "provider": "ldap", **extra}
    return client.post("/api/v1/auth/login", json=body)


def test_directory_sign_in_creates_the_account_with_its_groups_roles(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    answer = ldap_login(client, "alice", PASSWORDS["alice"])
    assert answer.status_code == 200, problem_of(answer)  # type: ignore[attr-defined]
    me = client.get("/api/v1/auth/me", headers=bearer(answer.json()["access_token"])).json()  # type: ignore[attr-defined]
    # ops -> operator; admins is not mapped (and admin could not be without allow_admin).
    assert me["username"] == "alice" and me["roles"] == ["operator"]
    user = rt.users.get(HOST, uuid.UUID(me["id"]))
    assert user.sign_in == ["ldap"]  # no local password: it signs in through the directory only
    assert (
        client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 401
    )
    success = audit_events.of("login_success")[-1]
    assert success.details["provider"] == "ldap"
    created = audit_events.of("user_create")[-1]
    assert created.details["just_in_time"] is True and created.actor_id == "provider:ldap"
    # The service account's password appears in no event.
    assert all(SERVICE_PASSWORD not in str(e.details) for e in audit_events.events)


@pytest.mark.parametrize(
    "username",
    ["*", "*)(uid=*", "admin)(|(uid=*", "alic*", "*lice", "alice)(uid=bob", "alice\x00", "\\2a", "(uid=alice)"],
)
def test_filter_injection_in_the_username_signs_nobody_in(client: TestClient, username: str) -> None:
    # Alice's right password with a name that, unescaped, would make the filter match her.
    answer = ldap_login(client, username, PASSWORDS["alice"])
    assert answer.status_code in (401, 422)  # type: ignore[attr-defined]


def test_an_empty_password_is_refused_before_any_bind(directory_server: Slapd) -> None:
    # Pointed at a port nobody listens on: had it tried to bind, the answer would be "unavailable".
    closed = LdapSettings(
        server="ldap://127.0.0.1:9",
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PASSWORD,  # type: ignore[arg-type]
        user_base=PEOPLE,
        start_tls=False,
    )
    with pytest.raises(Unauthorized):
        Directory("ldap", closed).authenticate("alice", "")
    with pytest.raises(ProviderUnavailable):
        Directory("ldap", closed).authenticate("alice", "something")


def test_empty_password_over_http_is_refused(client: TestClient) -> None:
    answer = ldap_login(client, "alice", "")
    assert answer.status_code in (401, 422)  # type: ignore[attr-defined]


def test_a_locked_or_deleted_directory_account_loses_its_sessions_on_the_next_sweep(
    client: TestClient, rt: Runtime, directory_server: Slapd, audit_events: CapturingSink
) -> None:
    carol = ldap_login(client, "carol", PASSWORDS["carol"]).json()  # type: ignore[attr-defined]
    bob = ldap_login(client, "bob", PASSWORDS["bob"]).json()  # type: ignore[attr-defined]
    alice = ldap_login(client, "alice", PASSWORDS["alice"]).json()  # type: ignore[attr-defined]
    directory_server.lock("carol")
    directory_server.delete_user("bob")
    # Neither can sign in again at once...
    assert ldap_login(client, "carol", PASSWORDS["carol"]).status_code == 401  # type: ignore[attr-defined]
    assert ldap_login(client, "bob", PASSWORDS["bob"]).status_code == 401  # type: ignore[attr-defined]
    # ...and the sessions they hold end at the next recheck (the server runs it every recheck_interval).
    assert rt.directory_sweep is not None
    assert rt.directory_sweep.run_once() == 2
    for gone in (carol, bob):
        assert client.get("/api/v1/auth/me", headers=bearer(gone["access_token"])).status_code == 401
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": gone["refresh_token"]}).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(alice["access_token"])).status_code == 200
    assert sorted(e.details["username"] for e in audit_events.of("directory_account_gone")) == ["bob", "carol"]
    # A bob made again in the directory is another entry (another entryUUID): not the old account.
    directory_server.add_user("bob", "Bob-new-entry-pw9", "bob@example.test")
    assert ldap_login(client, "bob", "Bob-new-entry-pw9").status_code == 401  # type: ignore[attr-defined]


def test_leaving_a_group_takes_its_role_away_at_the_next_sign_in(client: TestClient, directory_server: Slapd) -> None:
    first = ldap_login(client, "bob", PASSWORDS["bob"]).json()  # type: ignore[attr-defined]
    assert client.get("/api/v1/auth/me", headers=bearer(first["access_token"])).json()["roles"] == ["operator"]
    directory_server.remove_member("ops", "bob")
    again = ldap_login(client, "bob", PASSWORDS["bob"]).json()  # type: ignore[attr-defined]
    assert client.get("/api/v1/auth/me", headers=bearer(again["access_token"])).json()["roles"] == []


def test_an_account_is_never_taken_over_by_its_name(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    # A local account named like a directory person: the directory's alice is not it.
    make_user(rt, "alice", ["developer"])
    answer = ldap_login(client, "alice", PASSWORDS["alice"])
    assert answer.status_code == 401  # type: ignore[attr-defined]
    assert "linked" in problem_of(answer)["detail"]
    assert audit_events.of("login_failure")[-1].details["reason"] == "not_linked"
    # The local password still signs the local account in, with its own roles.
    local = client.post("/api/v1/auth/login", json={"username": "alice", "password": STRONG})
    assert local.status_code == 200


def test_ldaps_and_a_wrong_ca(tmp_path: Path, directory_server: Slapd) -> None:
    def settings(**overrides: object) -> LdapSettings:
        fields: dict[str, object] = {
            "server": directory_server.ldaps_url,
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "user_base": PEOPLE,
            "ca_file": directory_server.ca_file,
        }
        return LdapSettings.model_validate({**fields, **overrides})

    assert Directory("ldap", settings()).authenticate("alice", PASSWORDS["alice"]).username == "alice"
    from tests.pki import make_ca

    other_ca, _, _ = make_ca(tmp_path, "another-ca")
    for wrong in (settings(ca_file=other_ca), settings(server=directory_server.url, ca_file=other_ca)):
        with pytest.raises(ProviderUnavailable):
            Directory("ldap", wrong).authenticate("alice", PASSWORDS["alice"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet=st.sampled_from("abcilex*()\\|&=!~<>\x00 ,"), min_size=1, max_size=16))
def test_no_username_but_alice_signs_in_with_alices_password(directory_server: Slapd, name: str) -> None:
    settings = LdapSettings(
        server=directory_server.url,
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PASSWORD,  # type: ignore[arg-type]
        user_base=PEOPLE,
        ca_file=directory_server.ca_file,
    )
    directory = Directory("ldap", settings)
    try:
        profile = directory.authenticate(name, PASSWORDS["alice"])
    except Unauthorized:
        return
    # slapd compares uid case- and space-insensitively (its matching rule), as the directory owner expects.
    assert " ".join(name.split()).lower() == "alice" and profile.username == "alice"


@pytest.fixture
def defended_directory(tmp_path: Path, directory_server: Slapd) -> Iterator[Runtime]:
    with defended_runtime(tmp_path / "defended", ldap_security_yml(directory_server)) as rt:
        yield rt


def test_directory_guessing_meets_the_same_throttle_and_ban_as_local(defended_directory: Runtime) -> None:
    with TestClient(create_app(defended_directory), client=("127.0.0.1", 50000), raise_server_exceptions=False) as web:
        statuses = [
            web.post(
                "/api/v1/auth/login",
                json={"username": "alice", "password": f"Guess!{i:04d}", "provider": "ldap"},
                headers=from_("198.51.100.9"),
            ).status_code
            for i in range(8)
        ]
        assert statuses[:5] == [401] * 5 and statuses[5] == 429 and set(statuses[6:]) == {403}
        right = web.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": PASSWORDS["alice"], "provider": "ldap"},
            headers=from_("198.51.100.9"),
        )
        assert right.status_code == 403  # banned: even the right password does not get through
        owner = web.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": PASSWORDS["alice"], "provider": "ldap"},
            headers=from_("198.51.100.10"),
        )
        assert owner.status_code == 200


def test_doctor_checks_the_directory_over_verified_tls(tmp_path: Path, rt: Runtime, directory_server: Slapd) -> None:
    from wcp360.doctor import _identity_providers

    found = {c.name: c for c in _identity_providers(rt.config)}
    assert found["provider ldap"].status == "ok" and "StartTLS" in found["provider ldap"].detail
    from tests.pki import make_ca

    other_ca, _, _ = make_ca(tmp_path, "doctor-wrong-ca")
    (rt.config.config_dir / "security.yml").write_text(ldap_security_yml(directory_server, ca_file=str(other_ca)))
    wrong = load_config(rt.config.config_dir, rt.config.data_dir)
    failed = {c.name: c for c in _identity_providers(wrong)}["provider ldap"]
    assert failed.status == "fail" and failed.id == "WCP-IDP-001" and failed.remedy
    # Plain ldap:// (allowed to loopback) is reported.
    (rt.config.config_dir / "security.yml").write_text(ldap_security_yml(directory_server, start_tls=False))
    plain = {c.id: c for c in _identity_providers(load_config(rt.config.config_dir, rt.config.data_dir))}
    assert plain["WCP-IDP-002"].status == "warn" and plain["WCP-IDP-001"].status == "ok"


def test_the_servers_sweep_ends_a_locked_accounts_sessions_on_its_own(
    client: TestClient, rt: Runtime, directory_server: Slapd
) -> None:
    sweep = rt.directory_sweep
    assert sweep is not None
    # The interval from the config, shortened for the test; the test waits on the outcome.
    sweep.directory.settings = sweep.directory.settings.model_copy(update={"recheck_interval": timedelta(seconds=0.2)})
    carol = ldap_login(client, "carol", PASSWORDS["carol"]).json()  # type: ignore[attr-defined]
    sweep.start()
    directory_server.lock("carol")
    deadline = time.monotonic() + 120  # a bound on a hang, not a speed expectation
    while client.get("/api/v1/auth/me", headers=bearer(carol["access_token"])).status_code == 200:
        assert time.monotonic() < deadline, "the sweep never ended the session"
        time.sleep(0.05)


def test_the_directory_never_takes_the_role_from_the_last_admin(
    client: TestClient, rt: Runtime, directory_server: Slapd
) -> None:
    from wcp360.config.security import AccountMapping

    directory = rt.auth.providers.directory
    assert directory is not None
    directory.settings = directory.settings.model_copy(
        update={"accounts": AccountMapping(create=True, groups={"admins": ["admin"]}, allow_admin=True)}
    )

    def roles_after_sign_in() -> list[str]:
        tokens = ldap_login(client, "alice", PASSWORDS["alice"]).json()  # type: ignore[attr-defined]
        roles: list[str] = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).json()["roles"]
        return roles

    assert roles_after_sign_in() == ["admin"]  # allowed explicitly, given by the directory
    directory_server.remove_member("admins", "alice")
    assert roles_after_sign_in() == ["admin"]  # the last active admin: kept
    make_user(rt, "root2", ["admin"])
    assert roles_after_sign_in() == []  # another admin exists: the directory's word holds
