"""Reading events back from the log: everything after a sequence number, incrementally."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wcp360.audit.logfile import CURRENT, all_files, parse_records, read_lines, rotated_files


def iter_events(directory: Path, name: str = CURRENT, after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """Every event (not checkpoints) with seq > after_seq, oldest first, across rotated files."""
    for path in all_files(directory, name):
        if path.name != name and _last_seq_of_name(path.name) <= after_seq:
            continue
        for record in parse_records(raw for _, raw in read_lines(path)):
            if not record.get("checkpoint") and int(record.get("seq", 0)) > after_seq:
                yield record


def _last_seq_of_name(filename: str) -> int:
    # audit.log.<first>-<last>[.gz]
    part = filename.split(".")[-2 if filename.endswith(".gz") else -1]
    return int(part.split("-")[1]) if "-" in part else 0


class LogTail:
    """Follows the log: a cheap read from the last offset while the current file stays the same."""

    def __init__(self, directory: Path, name: str = CURRENT, after_seq: int = 0) -> None:
        self.directory = directory
        self.name = name
        self.after_seq = after_seq
        self._inode: int | None = None
        self._offset = 0

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        path = self.directory / self.name
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            inode = None
        if inode is None or inode != self._inode:
            return self._rescan(limit)
        return self._read_from_offset(path, limit)

    def _rescan(self, limit: int) -> list[dict[str, Any]]:
        """The current file changed (rotation, first read): rotated files first, then the new one
        from its start. Reading the current file by offset leaves no gap for concurrent appends."""
        events: list[dict[str, Any]] = []
        for path in rotated_files(self.directory, self.name):
            if _last_seq_of_name(path.name) <= self.after_seq:
                continue
            for record in parse_records(raw for _, raw in read_lines(path)):
                if not record.get("checkpoint") and int(record["seq"]) > self.after_seq:
                    events.append(record)
                    if len(events) >= limit:
                        self.after_seq = int(events[-1]["seq"])
                        return events
        if events:
            self.after_seq = int(events[-1]["seq"])
        path = self.directory / self.name
        try:
            self._inode, self._offset = os.stat(path).st_ino, 0
        except FileNotFoundError:
            self._inode, self._offset = None, 0
            return events
        return events + self._read_from_offset(path, limit - len(events))

    def _read_from_offset(self, path: Path, limit: int) -> list[dict[str, Any]]:
        with open(path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # never a line still being written
        events: list[dict[str, Any]] = []
        consumed = 0
        for line in complete.splitlines(keepends=True):
            if len(events) >= limit:
                break
            consumed += len(line)
            record = json.loads(line)
            if not record.get("checkpoint") and int(record["seq"]) > self.after_seq:
                events.append(record)
        self._offset += consumed
        if events:
            self.after_seq = int(events[-1]["seq"])
        return events
