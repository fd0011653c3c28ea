"""Which sign-in providers are offered."""

from __future__ import annotations

from pathlib import Path

from wcp360.config import load_config
from wcp360.config.security import AuthConfig, LocalProvider
from wcp360.identity.providers import offered, unavailable


def test_seed_providers(seed_config_dir: Path) -> None:
    config = load_config(
        seed_config_dir, seed_config_dir.parent / "d", env={"DB_PASSWORD": "x"}, enforce_production=False
    )
    assert offered(config.auth) == ["local"]
    assert unavailable(config.auth) == ["oauth2"]  # ldap is disabled in the seed: not mentioned


def test_disabled_local_provider_is_not_offered() -> None:
    assert offered(AuthConfig(providers=[LocalProvider(type="local", enabled=False)])) == []
