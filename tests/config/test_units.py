"""Durations and sizes as the seeds write them."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wcp360.config.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("168h", 604800),
        ("90d", 7776000),
        ("7y", 7 * 365 * 86400),
        ("1.5h", 5400),
        ("250ms", 0.25),
    ],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text).total_seconds() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100MB", 100_000_000),
        ("50MB", 50_000_000),
        ("1MiB", 1048576),
        ("64KiB", 65536),
        ("12", 12),
        ("1.5GB", 1_500_000_000),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "10", "h", "-5m", "5 minutes", "1e3s", "5M"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["s", "m", "h", "d", "w", "y"]))
def test_format_round_trips(amount: int, unit: str) -> None:
    value = parse_duration(f"{amount}{unit}")
    assert parse_duration(format_duration(value)) == value


@given(st.text(max_size=12))
def test_parse_duration_only_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= timedelta(0)


def test_absurd_duration_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("99999999999y")
