"""Durations ("30s", "24h", "7y") and sizes ("100MB") as written in the seed YAML files.

Hand-written because the seed's spellings (a bare "y" for years, decimal "MB") match neither
ISO 8601 nor any small library exactly, and the grammar is a single regular expression.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*$")
_DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$", re.IGNORECASE)
_SIZE_BYTES = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_duration(text: str) -> timedelta:
    """Parse "90d" or "1.5h" into a timedelta; a bare number is rejected (the unit is never guessed)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit (ms, s, m, h, d, w, y)")
    try:
        return timedelta(seconds=float(match.group(1)) * _DURATION_SECONDS[match.group(2)])
    except OverflowError:
        raise ValueError(f"duration {text!r} is too large") from None


def parse_size(text: str | int) -> int:
    """Parse "100MB" (decimal) or "64MiB" (binary) into bytes; a bare integer means bytes."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected a number and a unit (B, KB, MB, GB, KiB, MiB, GiB)")
    unit = (match.group(2) or "b").lower()
    return int(float(match.group(1)) * _SIZE_BYTES[unit])


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration, so `config show` round-trips through parse_duration."""
    seconds = value.total_seconds()
    for unit in ("y", "w", "d", "h", "m", "s"):
        factor = _DURATION_SECONDS[unit]
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{round(seconds * 1000)}ms"
