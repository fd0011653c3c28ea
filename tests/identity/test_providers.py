"""Which sign-in providers are offered, and the config shapes that declare them (seed 003)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wcp360.config import ConfigError, load_config
from wcp360.config.security import AuthConfig, LocalProvider
from wcp360.identity.providers import Providers


def test_seed_providers(seed_config_dir: Path) -> None:
    config = load_config(
        seed_config_dir, seed_config_dir.parent / "d", env={"DB_PASSWORD": "x"}, enforce_production=False
    )
    # The seed's `oauth2: {config: {google: ...}}` loads as one provider named google (its
    # issuer known); ldap is disabled in the seed: not offered.
    offered = Providers(config.auth).offered()
    assert [(p.name, p.type, p.flow) for p in offered] == [
        ("local", "local", "password"),
        ("google", "oidc", "redirect"),
    ]
    assert Providers(config.auth).oidc["google"].issuer == "https://accounts.google.com"


def test_disabled_local_provider_is_not_offered() -> None:
    providers = Providers(AuthConfig(providers=[LocalProvider(type="local", enabled=False)]))
    assert providers.offered() == []
    assert providers.password_provider(None) is None


def _load(tmp_path: Path, providers: list[dict[str, object]]) -> AuthConfig:
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "security.yml").write_text(yaml.safe_dump({"auth": {"providers": providers}}))
    return load_config(tmp_path / "c", tmp_path / "d", env={"LDAP_PW": "pw"}, enforce_production=False).auth


LDAP = {
    "type": "ldap",
    "enabled": True,
    "config": {
        "server": "ldap://ldap.company.com:389",
        "bind_dn": "cn=admin,dc=company,dc=com",
        "bind_password": "${LDAP_PW}",
        "user_base": "ou=users,dc=company,dc=com",
        "user_filter": "(uid=%s)",
    },
}


def test_any_number_of_named_oidc_providers(tmp_path: Path) -> None:
    client = {"client_id": "x", "client_secret": "y", "redirect_url": "https://panel.test/auth/callback"}
    auth = _load(
        tmp_path,
        [
            {"type": "local"},
            {"type": "oauth2", "enabled": True, "config": {"google": client}},
            {"type": "oidc", "name": "corp", "config": {**client, "issuer_url": "https://idp.corp.test"}},
            {"type": "oidc", "name": "lab", "config": {**client, "issuer_url": "https://idp.lab.test"}},
            LDAP,
        ],
    )
    providers = Providers(auth)
    assert [p.name for p in providers.offered()] == ["local", "ldap", "google", "corp", "lab"]
    # Three providers come back to one path: the state says which one started the flow.
    assert providers.callback_paths() == {"/auth/callback": frozenset({"google", "corp", "lab"})}
    assert providers.password_provider("ldap") == "ldap"
    assert providers.password_provider("google") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        # An unknown provider needs its issuer; only google's is built in.
        (
            {"type": "oidc", "name": "corp", "config": {"client_id": "x", "client_secret": "y",
                                                         "redirect_url": "https://p.test/cb"}},
            "issuer_url is required",
        ),
        (
            {"type": "oidc", "name": "corp", "config": {"client_id": "x", "client_secret": "y",
                                                         "issuer_url": "https://i.test", "redirect_url": "https://p.test/cb",
                                                         "algorithms": ["none"]}},
            "algorithms may not include none",
        ),
        (
            {"type": "oidc", "name": "corp", "config": {"client_id": "x", "client_secret": "y",
                                                         "issuer_url": "https://i.test", "redirect_url": "https://p.test/cb",
                                                         "accounts": {"create": True, "groups": {"ops": ["admin"]}}}},
            "allow_admin",
        ),
        ({**LDAP, "config": {**LDAP["config"], "start_tls": False}}, "sends passwords in clear"),  # type: ignore[dict-item]
        ({**LDAP, "config": {**LDAP["config"], "user_filter": "uid=%s"}}, "exactly one %s"),  # type: ignore[dict-item]
        ({**LDAP, "config": {**LDAP["config"], "user_filter": "(|(uid=%s)(mail=%s))"}}, "exactly one %s"),  # type: ignore[dict-item]
    ],
)  # fmt: skip
def test_unsafe_provider_settings_are_refused_with_file_key_line(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, [{"type": "local"}, entry])
    assert message in str(refused.value)
    assert "security.yml:" in str(refused.value)


def test_plain_ldap_to_loopback_or_with_the_insecure_flag_loads(tmp_path: Path) -> None:
    loopback = {**LDAP, "config": {**LDAP["config"], "server": "ldap://127.0.0.1:3890", "start_tls": False}}  # type: ignore[dict-item]
    assert _load(tmp_path, [loopback]).ldap() is not None
    insecure = {**LDAP, "config": {**LDAP["config"], "start_tls": False, "insecure": True}}  # type: ignore[dict-item]
    assert _load(tmp_path, [insecure]).ldap() is not None
