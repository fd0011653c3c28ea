"""`audit verify` reads lines with orjson for speed; the canonical form stays the standard
library's. Whatever a line holds, the fast path never accepts what the standard library would
refuse, and computes the same chain hash whenever it is trusted."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wcp360.audit.canonical import canonical, chain_hash, stdlib_canonical
from wcp360.audit.logfile import AuditLogFile
from wcp360.audit.signing import SigningKeys
from wcp360.audit.verify import _chain_of, _read, _stdlib_canonical, verify

# JSON values as audit records hold them (no floats), with every awkward character in strings:
# controls, quotes, backslashes, non-BMP, U+2028, DEL, lone surrogates.
strings = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | strings
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
                      max_leaves=12)  # fmt: skip
records = st.dictionaries(strings, values, max_size=6).map(lambda r: {**r, "prev": "a" * 64, "chain": "b" * 64})


@settings(max_examples=400)
@given(records)
def test_the_fast_path_agrees_with_the_standard_library(record: dict[str, object]) -> None:
    try:
        raw = canonical(record)
    except (ValueError, UnicodeEncodeError):
        return  # not writable by the trail at all
    parsed, fast = _read(raw)
    assert parsed == record  # the values themselves, whichever library read them
    assert fast or _stdlib_canonical(parsed, raw)
    if fast:
        body = {k: v for k, v in parsed.items() if k != "chain"}
        assert _chain_of(parsed, raw, True) == chain_hash("a" * 64, body)


@settings(max_examples=400)
@given(records)
def test_a_line_in_orjsons_spelling_is_trusted_only_when_it_is_the_canonical_one(record: dict[str, object]) -> None:
    try:
        raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return  # orjson cannot write it (huge integers, lone surrogates)
    parsed, fast = _read(raw)
    if fast:
        assert _stdlib_canonical(parsed, raw) and parsed == record


def test_floats_nan_and_lone_surrogates_are_judged_by_the_standard_library() -> None:
    for raw in (b'{"a":1.5}', b'{"a":NaN}', b'{"a":1e400}'):
        record, fast = _read(raw)
        assert not fast and not _stdlib_canonical(record, raw)
    huge = b'{"a":-9223372036854775809}'  # orjson would read a float
    record, fast = _read(huge)
    assert record == {"a": -9223372036854775809} and not fast and _stdlib_canonical(record, huge)


def test_a_float_written_into_the_log_is_reported_not_a_crash(tmp_path: Path) -> None:
    """The writer refuses floats; one edited into a line is "not canonical", and the verifier
    says so (before this change it raised ValueError out of `audit verify`)."""
    keys = SigningKeys(tmp_path / "keys")
    log = AuditLogFile(tmp_path / "log", keys, 10**9, 10, False, 1000)
    log.append([{"action": "x", "details": {"n": 1}}], fsync=False)
    log.close()
    path = tmp_path / "log" / "audit.log"
    path.write_bytes(path.read_bytes().replace(b'"n":1', b'"n":1.5'))
    report = verify(tmp_path / "log", keys.public_keys())
    assert report.problem is not None and "not in canonical form" in report.problem.message


@settings(max_examples=600)
@given(values)
def test_the_writers_canonical_form_is_the_standard_librarys(value: object) -> None:
    """The trail writes with orjson (canonical.py); every byte must be what json.dumps writes."""
    try:
        expected = stdlib_canonical(value)
    except (ValueError, UnicodeEncodeError):
        with pytest.raises((ValueError, UnicodeEncodeError)):
            canonical(value)
        return
    assert canonical(value) == expected


def test_what_json_cannot_hold_is_refused_by_both() -> None:
    import datetime
    import uuid

    for value in ({"a": uuid.uuid4()}, {"a": datetime.datetime.now()}, {"a": {1, 2}}, {"a": 1.5}):
        for form in (canonical, stdlib_canonical):
            with pytest.raises((TypeError, ValueError)):
                form(value)
