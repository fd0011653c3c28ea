"""Config loading: the seed-003 set, defaults, and errors that name file, key path and line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import SEED_CONFIG, write_files
from wcp360.config import CONFIG_FILES, ConfigError, load_config

SEED_FILES = sorted(p.name for p in SEED_CONFIG.iterdir())


def test_every_seed_block_is_a_fixture() -> None:
    assert sorted(set(CONFIG_FILES) - {"wcp360.yml"}) == SEED_FILES


def test_the_seed_set_loads_verbatim(seed_config_dir: Path, tmp_path: Path) -> None:
    config = load_config(seed_config_dir, tmp_path, env={"DB_PASSWORD": "from-env"}, enforce_production=False)
    assert set(config.loaded_files) == set(SEED_FILES)
    assert config.auth.jwt.expiry == timedelta(hours=24)
    assert config.auth.jwt.refresh_expiry == timedelta(days=7)
    assert config.auth.jwt.issuer == "wasm-as-os"
    assert config.auth.password_policy().min_length == 8  # the file wins over the default of 12
    assert [p.type for p in config.auth.providers] == ["local", "oauth2", "ldap"]
    assert set(config.rbac.roles) == {"admin", "developer", "viewer", "operator"}
    assert config.rbac.resources["tasks"].sharing is False
    assert config.rate_limiting.per_endpoint["/api/v1/modules/*/execute"].burst == 50
    assert str(config.rate_limiting.ip_blacklist[0]) == "192.0.2.0/24"
    assert config.sandbox.resource_limits.max_memory == 100_000_000
    assert config.sandbox.module_capabilities["trusted-modules"].allowed_hosts == [
        "api.company.com",
        "data.company.com",
    ]
    assert config.static_analysis.quarantine.high_risk_threshold == 8
    assert config.database.password is not None and config.database.password.get_secret_value() == "from-env"
    assert config.database.idle_in_transaction_timeout == timedelta(seconds=60)
    assert [d.type for d in config.audit.destinations] == ["file", "syslog", "database"]
    assert config.intrusion_detection.rules[0].duration == timedelta(hours=1)
    assert config.privacy.data_retention.audit_logs == timedelta(days=7 * 365)
    assert config.soc2.security.multi_factor_auth is True


def test_missing_files_fall_back_to_secure_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent", tmp_path / "data", env={})
    assert config.loaded_files == ()
    assert config.production
    assert config.database.type == "sqlite"
    assert config.auth.password_policy().min_length == 12
    assert config.auth.jwt.expiry == timedelta(minutes=15)
    assert not any(vars(config.sandbox.default_capabilities).values())
    assert {"reseller", "tenant"} <= set(config.rbac.roles)
    assert config.tls.min_version == "1.2"


@pytest.mark.parametrize(
    ("file", "text", "where", "message"),
    [
        (
            "security.yml",
            'auth:\n  jwt:\n    expiry: "24h"\n    colour: blue\n',
            "security.yml:4: auth.jwt.colour:",
            "unknown key",
        ),
        (
            "rate_limit.yml",
            'rate_limiting:\n  global:\n    requests_per_minute: "many"\n    burst: 1\n',
            "rate_limit.yml:3: rate_limiting.global.requests_per_minute:",
            "integer",
        ),
        (
            "sandbox.yml",
            'sandbox:\n  resource_limits:\n    max_memory: "lots"\n',
            "sandbox.yml:3: sandbox.resource_limits.max_memory:",
            "invalid size",
        ),
        (
            "security.yml",
            "auth:\n  providers:\n    - type: local\n      config:\n        password_policy:\n"
            "          min_length: 3\n",
            "security.yml:6: auth.providers[0].config.password_policy.min_length:",
            "greater than or equal to 8",
        ),
        (
            "rbac.yml",
            'roles:\n  admin:\n    permissions: ["modules"]\n',
            "rbac.yml:3: roles.admin.permissions[0]:",
            "invalid permission",
        ),
        (
            "ids.yml",
            "intrusion_detection:\n  rules:\n    - name: x\n      condition: y\n      action: explode\n",
            "ids.yml:5: intrusion_detection.rules[0].action:",
            "Input should be",
        ),
        (
            "rate_limit.yml",
            'rate_limiting:\n  ip_whitelist: ["10.0.0.0/33"]\n',
            "rate_limit.yml:2: rate_limiting.ip_whitelist[0]:",
            "does not appear to be an IPv4 or IPv6 network",
        ),
        ("audit.yml", 'audit:\n  enabled: "yes"\n', "audit.yml:2: audit.enabled:", "boolean"),
        ("tls.yml", 'tls:\n  min_version: "1.0"\n', "tls.yml:2: tls.min_version:", "'1.2' or '1.3'"),
        ("wcp360.yml", "mode: dev\nmode: production\n", "wcp360.yml:2: mode:", "duplicate key"),
        ("wcp360.yml", "mode: [dev\n", "wcp360.yml:2:", "invalid YAML"),
    ],
)
def test_bad_config_names_file_key_and_line(tmp_path: Path, file: str, text: str, where: str, message: str) -> None:
    write_files(tmp_path, {file: text})
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, tmp_path / "data", env={}, enforce_production=False)
    assert str(caught.value).startswith(where), str(caught.value)
    assert message in str(caught.value)


def test_env_substitution(tmp_path: Path) -> None:
    write_files(tmp_path, {"database.yml": 'database:\n  password: "${DB_PASSWORD}"\n  name: "db_${SUFFIX}"\n'})
    config = load_config(
        tmp_path, tmp_path / "d", env={"DB_PASSWORD": "s3cret", "SUFFIX": "x"}, enforce_production=False
    )
    assert config.database.password is not None
    assert config.database.password.get_secret_value() == "s3cret"
    assert config.database.name == "db_x"


def test_missing_env_variable_is_an_error(tmp_path: Path) -> None:
    write_files(tmp_path, {"database.yml": 'database:\n  host: localhost\n  password: "${DB_PASSWORD}"\n'})
    with pytest.raises(ConfigError, match=r"^database.yml:3: database.password: environment variable DB_PASSWORD"):
        load_config(tmp_path, tmp_path / "d", env={}, enforce_production=False)


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    write_files(tmp_path, {"security.yml": "auth:\n  jwt:\n    secret: 12345678901234567890\n"})
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, tmp_path / "d", env={}, enforce_production=False)
    assert "auth.jwt.secret" in str(caught.value)
    assert "12345678901234567890" not in str(caught.value)


def test_data_dir_precedence(tmp_path: Path) -> None:
    write_files(tmp_path / "etc", {"wcp360.yml": f"paths:\n  data_dir: {tmp_path / 'from-file'}\n"})
    from_file = load_config(tmp_path / "etc", env={})
    from_env = load_config(tmp_path / "etc", env={"WCP360_DATA_DIR": str(tmp_path / "from-env")})
    from_flag = load_config(tmp_path / "etc", tmp_path / "flag", env={"WCP360_DATA_DIR": str(tmp_path / "x")})
    assert from_file.data_dir == tmp_path / "from-file"
    assert from_env.data_dir == tmp_path / "from-env"
    assert from_flag.data_dir == tmp_path / "flag"
    assert load_config(env={"WCP360_CONFIG_DIR": str(tmp_path / "etc")}).config_dir == tmp_path / "etc"


def test_bad_ids_rule_names_rule_and_column(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "ids.yml": 'intrusion_detection:\n  rules:\n    - name: "brute"\n'
            '      condition: "failed_logins >> 5 in 5m"\n      action: block_ip\n'
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, tmp_path / "d", env={}, enforce_production=False)
    assert str(caught.value).startswith("ids.yml:3: intrusion_detection.rules[0]:")
    assert str(caught.value).endswith("rule 'brute': condition column 16: expected a value, found '>'")
