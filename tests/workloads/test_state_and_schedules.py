"""Property tests for the two small parsers of this slice: instance states and schedules."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wcp360.workloads.engine.instance_state import MAGIC, InstanceState, StateError
from wcp360.workloads.schedules import Schedule, ScheduleError

names = st.text(min_size=1, max_size=20)
values = st.one_of(
    st.tuples(st.just("i32"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("i64"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.sampled_from(["f32", "f64"]), st.floats(allow_nan=True, allow_infinity=True)),
)
states = st.builds(
    InstanceState,
    memories=st.dictionaries(names, st.binary(max_size=300), max_size=3),
    globals=st.dictionaries(names, values, max_size=5),
)


def _same(a: InstanceState, b: InstanceState) -> bool:
    if a.memories != b.memories or a.globals.keys() != b.globals.keys():
        return False
    for name, (kind, value) in a.globals.items():
        other_kind, other = b.globals[name]
        if kind != other_kind:
            return False
        if isinstance(value, float) and math.isnan(value):
            if not math.isnan(other):
                return False
        elif value != other:
            return False
    return True


@given(states)
def test_state_round_trips(state: InstanceState) -> None:
    assert _same(InstanceState.decode(state.encode()), state)


@given(states, st.data())
def test_truncated_state_is_refused(state: InstanceState, data: st.DataObject) -> None:
    encoded = bytearray(state.encode())
    cut = data.draw(st.integers(0, len(encoded) - 1))
    # Truncation is always caught (sizes are checked against the data).
    with pytest.raises(StateError):
        InstanceState.decode(bytes(encoded[:cut]))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(junk: bytes) -> None:
    for data in (junk, MAGIC + junk):
        with contextlib.suppress(StateError):
            InstanceState.decode(data)


def test_out_of_range_global_is_refused() -> None:
    bad = MAGIC + b'{"memories":[],"globals":[["g","i32",4294967296]]}\n'
    with pytest.raises(StateError):
        InstanceState.decode(bad)


@given(
    st.integers(1, 86400),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.integers(0, 10**7),
)
def test_interval_catch_up_lands_on_the_grid_after_now(seconds: int, occurrence: datetime, late: int) -> None:
    schedule = Schedule.parse("interval", str(seconds))
    now = occurrence + timedelta(seconds=late)
    following = schedule.next_after_now(occurrence, now)
    assert following is not None and now < following <= now + timedelta(seconds=seconds)
    assert (following - occurrence).total_seconds() % seconds == 0


@given(st.sampled_from(["*/5 * * * *", "0 3 * * 1", "15,45 9-17 * * 1-5", "0 0 1 * *"]), st.integers(0, 10**7))
def test_cron_next_is_in_the_future_and_matches(expression: str, late: int) -> None:
    schedule = Schedule.parse("cron", expression)
    occurrence = datetime(2030, 1, 1, tzinfo=UTC)
    now = occurrence + timedelta(seconds=late)
    following = schedule.next_after_now(occurrence, now)
    assert following is not None and following > now and following.second == 0
    assert schedule.first(following) == following  # an occurrence is its own first occurrence


@given(st.text(max_size=40))
def test_schedule_parser_only_raises_schedule_errors(text: str) -> None:
    for kind in ("cron", "interval", "once", "other"):
        with contextlib.suppress(ScheduleError):
            Schedule.parse(kind, text)
