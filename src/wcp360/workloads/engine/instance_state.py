"""The state of a module instance that a snapshot keeps: exported memories and mutable globals.

Encoded as one JSON header line (names, sizes, global types and values) followed by the memories'
bytes in header order. Hand-written because the state is mostly raw memory, which JSON or pickle
would bloat or make unsafe to read back; the format is small enough to check completely on decode.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

MAGIC = b"WCP360-STATE-1\n"
GLOBAL_TYPES = ("i32", "i64", "f32", "f64")
_INT_RANGE = {"i32": (-(2**31), 2**32), "i64": (-(2**63), 2**64)}


class StateError(ValueError):
    """Bytes that are not a well-formed instance state."""


@dataclass
class InstanceState:
    memories: dict[str, bytes] = field(default_factory=dict)
    # name -> (wasm value type, value)
    globals: dict[str, tuple[str, int | float]] = field(default_factory=dict)

    def encode(self) -> bytes:
        header = {
            "memories": [[name, len(data)] for name, data in self.memories.items()],
            "globals": [[name, kind, _encode_value(value)] for name, (kind, value) in self.globals.items()],
        }
        line = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
        return b"".join([MAGIC, line, b"\n", *self.memories.values()])

    @classmethod
    def decode(cls, data: bytes) -> InstanceState:
        if not data.startswith(MAGIC):
            raise StateError("not an instance state (bad magic)")
        end = data.find(b"\n", len(MAGIC))
        if end < 0:
            raise StateError("truncated header")
        try:
            header = json.loads(data[len(MAGIC) : end])
            memories = [(str(name), int(size)) for name, size in header["memories"]]
            raw_globals = [(str(name), str(kind), value) for name, kind, value in header["globals"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"malformed header: {exc}") from None
        state = cls()
        offset = end + 1
        for name, size in memories:
            if size < 0 or offset + size > len(data) or name in state.memories:
                raise StateError(f"memory {name!r}: size does not match the data")
            state.memories[name] = data[offset : offset + size]
            offset += size
        if offset != len(data):
            raise StateError("trailing bytes after the memories")
        for name, kind, value in raw_globals:
            if kind not in GLOBAL_TYPES or name in state.globals:
                raise StateError(f"global {name!r}: unsupported type {kind!r}")
            state.globals[name] = (kind, _decode_value(kind, value))
        return state


def _encode_value(value: int | float) -> int | float | str:
    # JSON has no NaN or infinities; floats travel as their repr when not finite.
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _decode_value(kind: str, value: object) -> int | float:
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value < high:
            raise StateError(f"{kind} value out of range: {value!r}")
        return value
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise StateError(f"{kind} value is not a number: {value!r}")
    return float(value)
