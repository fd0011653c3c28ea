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

GENESIS = "0" * 64


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("audit records may not contain floats (canonical form would be ambiguous)")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


def canonical(value: Any) -> bytes:
    _reject_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(previous: str, record_without_chain: dict[str, Any]) -> str:
    """sha256(previous chain hash || canonical JSON of the record), hex."""
    return hashlib.sha256(previous.encode("ascii") + canonical(record_without_chain)).hexdigest()
