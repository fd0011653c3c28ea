"""Shared building blocks for the config models: strict sections and the seed's unit types."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from wcp360.config.units import format_duration, parse_duration, parse_size


class Section(BaseModel):
    """Every config mapping: unknown keys are errors, types are not coerced, values are immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _size(value: Any) -> Any:
    return parse_size(value) if isinstance(value, str | int) and not isinstance(value, bool) else value


def _network(value: Any) -> Any:
    if isinstance(value, str):
        return ipaddress.ip_network(value, strict=False)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]
ByteSize = Annotated[int, BeforeValidator(_size)]
Network = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network,
    BeforeValidator(_network),
    PlainSerializer(str, return_type=str),
]

# YAML has no path type: accept a string (strict mode would insist on a Path instance).
ConfigPath = Annotated[Path, Field(strict=False)]
