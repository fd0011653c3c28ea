"""Configuration: one typed model for wcp360.yml and the seed-003 files."""

from wcp360.config.errors import ConfigError
from wcp360.config.loader import CONFIG_FILES, load_config, resolve_config_dir
from wcp360.config.model import Config

__all__ = ["CONFIG_FILES", "Config", "ConfigError", "load_config", "resolve_config_dir"]
