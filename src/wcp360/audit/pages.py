"""One page of the trail, newest first: what `GET /api/v1/audit` and `wcp360 audit search` read.

A page costs what it reads, not the size of the log (reading every file for every page took
seconds on a long trail). The log's lines are in seq order, so: the current file first, then the
rotated ones, newest first; each read backwards from its end, or from the line where `before_seq`
starts (found by binary search over byte offsets), until the page is full. A filter that matches
rarely reads further back, as far as it must. Rotated `.gz` files are decompressed whole (each is
one rotation's worth). The file stays the source of truth: no index to keep in step with it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wcp360.audit.logfile import CURRENT, all_files
from wcp360.audit.search import EventFilter

BLOCK = 64 * 1024


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]  # newest first
    next_before_seq: int | None  # pass as before_seq for the next (older) page; None at the end


def newest_first(
    directory: Path, where: EventFilter, limit: int, before_seq: int | None = None, name: str = CURRENT
) -> Page:
    """The newest `limit` events matching `where` with seq below `before_seq`."""
    found: list[dict[str, Any]] = []
    for record in events_backwards(directory, name, before_seq):
        if where.matches(record):
            found.append(record)
            if len(found) > limit:
                break
    items = found[:limit]
    more = len(found) > limit
    return Page(items, int(items[-1]["seq"]) if more and items else None)


def events_backwards(directory: Path, name: str = CURRENT, before_seq: int | None = None) -> Iterator[dict[str, Any]]:
    """Events (not checkpoints) with seq < before_seq, newest first, across rotated files."""
    for path in reversed(all_files(directory, name)):
        if before_seq is not None and path.name != name and _first_seq_of_name(path.name) >= before_seq:
            continue
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                lines: Iterator[bytes] = reversed(handle.read().split(b"\n"))
                yield from _events(lines, before_seq)
            continue
        with open(path, "rb") as handle:
            end = _start_of_seq(handle, before_seq) if before_seq is not None else handle.seek(0, 2)
            yield from _events(_lines_backwards(handle, end), before_seq)


def _events(lines: Iterator[bytes], before_seq: int | None) -> Iterator[dict[str, Any]]:
    for raw in lines:
        record = _record(raw)
        if record is None or record.get("checkpoint"):
            continue
        if before_seq is None or int(record["seq"]) < before_seq:
            yield record


def _record(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # a torn last line after a crash: recovery's business, not the reader's
    return record if isinstance(record, dict) and "seq" in record else None


def _lines_backwards(handle: IO[bytes], end: int) -> Iterator[bytes]:
    """The complete lines before byte `end`, last first, read in blocks from the end."""
    position, carried = end, b""
    while position > 0:
        start = max(0, position - BLOCK)
        handle.seek(start)
        lines = (handle.read(position - start) + carried).split(b"\n")
        carried = lines.pop(0) if start > 0 else b""  # the block began inside a line: finish it next
        yield from reversed(lines)
        position = start
    if carried:
        yield carried


def _start_of_seq(handle: IO[bytes], before_seq: int) -> int:
    """The byte offset of the first event line with seq >= before_seq (the file's size if none):
    a binary search over byte offsets, reading about one line per step."""
    size = handle.seek(0, 2)
    low, high = 0, size
    while low < high:
        middle = (low + high) // 2
        _, seq = _first_event_from(handle, middle)
        if seq is None or seq >= before_seq:
            high = middle
        else:
            low = middle + 1
    start, _ = _first_event_from(handle, low)
    return start


def _first_event_from(handle: IO[bytes], position: int) -> tuple[int, int | None]:
    """(offset, seq) of the first event line starting at or after `position`; (size, None) if none."""
    if position > 0:
        handle.seek(position - 1)
        handle.readline()  # to the end of the line `position` falls in (or stays, at a line start)
    else:
        handle.seek(0)
    while True:
        start = handle.tell()
        raw = handle.readline()
        if not raw:
            return start, None
        record = _record(raw)
        if record is not None and not record.get("checkpoint"):
            return start, int(record["seq"])


def _first_seq_of_name(filename: str) -> int:
    # audit.log.<first>-<last>[.gz]
    part = filename.split(".")[-2 if filename.endswith(".gz") else -1]
    return int(part.split("-")[0]) if "-" in part else 0
