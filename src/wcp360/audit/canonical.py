"""Canonical JSON for hashing and signing (RFC 8785 style) and the chain step.

Sorted keys, no insignificant whitespace, UTF-8, non-ASCII kept as is. Audit records hold only
strings, integers, booleans, null, lists and objects (timestamps are strings), so Python's JSON
serialisation of them is exactly the JCS form; floats, whose JCS spelling differs in corner
cases, are refused rather than hashed ambiguously.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

GENESIS = "0" * 64
# orjson, sorted, writes exactly the standard library's canonical form for everything an audit
# record may hold (strings with any character, 64-bit integers, booleans, null, lists, objects
# with string keys: a hypothesis test holds the two to that), in ~1 us where json.dumps takes
# ~13 us; each append serialises a record twice (the chain hash, then the line). What it cannot
# write (integers beyond 64 bits, lone surrogates, non-string keys) goes to the standard library.
# No passthrough types: a datetime or dataclass in a record is refused, as json.dumps refuses it.
_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _reject_floats(value: Any) -> None:
    """Floats are refused (ValueError); so is anything JSON has no form for (TypeError), here
    rather than by the serialiser: orjson would write a UUID that json.dumps refuses."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return
    if kind is dict:
        # An event's own fields: the common scalars inline, without a call each (~4 us an event).
        for item in value.values():
            inner = type(item)
            if not (inner is str or inner is int or inner is bool or item is None):
                _reject_floats(item)
        return
    if isinstance(value, str | int):  # subclasses (enums); bool is an int
        return
    if isinstance(value, float):
        raise ValueError("audit records may not contain floats (canonical form would be ambiguous)")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)
    else:
        raise TypeError(f"audit records may not contain {type(value).__name__} values")


def canonical(value: Any) -> bytes:
    _reject_floats(value)
    return _serialise(value)


def _serialise(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_ORJSON)
    except TypeError:  # orjson.JSONEncodeError is one
        return stdlib_canonical(value)


def with_chain(record: dict[str, Any], chain: str) -> bytes:
    """The canonical line of `record` (already checked by `chain_hash`) with its chain added."""
    return _serialise({**record, "chain": chain})


def stdlib_canonical(value: Any) -> bytes:
    """The reference form (what `canonical` must always equal): the standard library's."""
    _reject_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(previous: str, record_without_chain: dict[str, Any]) -> str:
    """sha256(previous chain hash || canonical JSON of the record), hex."""
    return hashlib.sha256(previous.encode("ascii") + canonical(record_without_chain)).hexdigest()
