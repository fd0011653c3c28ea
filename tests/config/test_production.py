"""Production mode refuses placeholder secrets, short JWT secrets and readable config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_files
from wcp360.config import ConfigError, load_config
from wcp360.config.hardening import production_problems

GOOD_SECRET = "k" * 40


def _load(directory: Path) -> None:
    load_config(directory, directory.parent / "data", env={"DB_PASSWORD": "a-real-password-1"})


def test_seed_files_are_refused_in_production(seed_config_dir: Path) -> None:
    config = load_config(
        seed_config_dir, seed_config_dir.parent / "d", env={"DB_PASSWORD": "x"}, enforce_production=False
    )
    problems = [str(p) for p in production_problems(config)]
    assert "security.yml: auth.jwt.secret: placeholder secret; set a real one" in problems
    assert "security.yml: auth.jwt.secret: JWT secret shorter than 32 bytes" in problems
    assert any("client_secret" in p for p in problems)
    with pytest.raises(ConfigError, match="placeholder secret"):
        _load(seed_config_dir)


@pytest.mark.parametrize("secret", ["your-256-bit-secret-key-here", "secure_random_password", "changeme"])
def test_placeholder_secrets_are_refused(tmp_path: Path, secret: str) -> None:
    write_files(tmp_path / "etc", {"security.yml": f'auth:\n  jwt:\n    secret: "{secret}"\n'})
    with pytest.raises(ConfigError, match="placeholder secret"):
        _load(tmp_path / "etc")


def test_short_jwt_secret_is_refused(tmp_path: Path) -> None:
    write_files(tmp_path / "etc", {"security.yml": 'auth:\n  jwt:\n    secret: "only-31-bytes-long-secret-value"\n'})
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        _load(tmp_path / "etc")


def test_placeholder_database_password_is_refused(tmp_path: Path) -> None:
    write_files(tmp_path / "etc", {"database.yml": 'database:\n  password: "secure_random_password"\n'})
    with pytest.raises(ConfigError, match=r"database.yml: database.password: placeholder"):
        _load(tmp_path / "etc")


def test_group_readable_config_file_is_refused(tmp_path: Path) -> None:
    directory = write_files(tmp_path / "etc", {"security.yml": f'auth:\n  jwt:\n    secret: "{GOOD_SECRET}"\n'})
    _load(directory)
    (directory / "security.yml").chmod(0o640)
    with pytest.raises(ConfigError, match=r"security.yml: readable by group/others \(mode 0640\)"):
        _load(directory)


def test_open_config_directory_is_refused(tmp_path: Path) -> None:
    directory = write_files(tmp_path / "etc", {})
    directory.chmod(0o755)
    with pytest.raises(ConfigError, match="must be 0700"):
        _load(directory)


def test_dev_mode_tolerates_what_production_refuses(tmp_path: Path) -> None:
    directory = write_files(
        tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "security.yml": 'auth:\n  jwt:\n    secret: "changeme"\n'}
    )
    directory.chmod(0o755)
    assert load_config(directory, tmp_path / "d", env={}).server.mode == "dev"


def test_a_hardened_directory_loads(tmp_path: Path) -> None:
    directory = write_files(tmp_path / "etc", {"security.yml": f'auth:\n  jwt:\n    secret: "{GOOD_SECRET}"\n'})
    _load(directory)
