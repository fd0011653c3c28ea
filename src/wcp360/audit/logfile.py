"""The audit log on disk: JSON lines, hash-chained, signed checkpoints, rotation.

Layout in the log directory (0700): `audit.log` (the configured name) is the file being written;
rotated files are `audit.log.<first seq>-<last seq>.gz` (zero-padded, so names sort in order). Every rotated file
ends with a checkpoint, so it is fully covered by a signature.

Several processes may append (the server and `wcp360` CLI commands): each append holds an
exclusive `flock` on `audit.lock`, and a process whose cached head no longer matches the file
re-reads the head from disk before writing. A process that finds fewer records on disk than it
wrote itself records the shortfall (truncation) and keeps its own head, so the gap stays visible.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wcp360.audit.append_only import set_append_only
from wcp360.audit.canonical import GENESIS, canonical, chain_hash, with_chain
from wcp360.audit.signing import SigningKeys
from wcp360.keys import adopt, ensure_private_dir

CURRENT = "audit.log"
_TAIL_CHUNK = 256 * 1024


def _rotated_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(name)}\.(\d{{12}})-(\d{{12}})(\.gz)?$")


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def rotated_files(directory: Path, name: str = CURRENT) -> list[Path]:
    """Rotated files, oldest first (a plain and a `.gz` copy of one range count once: the `.gz`)."""
    found: dict[str, Path] = {}
    pattern = _rotated_pattern(name)
    for path in directory.iterdir():
        match = pattern.match(path.name)
        if match:
            key = f"{match.group(1)}-{match.group(2)}"
            if key not in found or path.name.endswith(".gz"):
                found[key] = path
    return [found[k] for k in sorted(found)]


def all_files(directory: Path, name: str = CURRENT) -> list[Path]:
    current = directory / name
    return [*rotated_files(directory, name), *([current] if current.exists() else [])]


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line without newline) of one file, gzip or plain."""
    return enumerate(lines_of(path), start=1)


def lines_of(path: Path) -> Iterator[bytes]:
    """The raw lines of one file (gzip or plain) without their newline, read a megabyte at a
    time (`audit verify` walks hundreds of thousands a second; a readline per line was a fifth
    of its time)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        tail = b""
        while chunk := handle.read(1 << 20):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield from lines
        if tail:
            yield tail


@dataclass
class Head:
    seq: int = 0
    chain: str = GENESIS
    checkpoint_seq: int = 0
    checkpoint_sig: str | None = None


class AuditLogFile:
    def __init__(
        self,
        directory: Path,
        keys: SigningKeys,
        max_size: int,
        max_files: int,
        compress: bool,
        checkpoint_every: int,
        name: str = CURRENT,
        append_only: bool = False,
        attribute: Callable[[Path, bool], bool] = set_append_only,
    ) -> None:
        self.directory = ensure_private_dir(directory)
        self.name = name
        self.keys = keys
        self.max_size = max_size
        self.max_files = max_files
        self.compress = compress
        self.checkpoint_every = checkpoint_every
        self.path = directory / name
        self._lock_fd = os.open(directory / "audit.lock", os.O_RDWR | os.O_CREAT, 0o600)
        adopt(self._lock_fd, directory)
        self._fd = -1
        self._identity: tuple[int, int] | None = None  # (inode, size) after our last write
        self._head: Head | None = None
        self.tamper_notes: list[dict[str, Any]] = []
        # Ask for `chattr +a` on every file we write; remember whether the filesystem granted it.
        self.append_only = append_only
        # How the attribute is set and lifted: directly (a process holding CAP_LINUX_IMMUTABLE),
        # or by asking the system agent (the unprivileged server).
        self.attribute = attribute
        self.append_only_active: bool | None = None
        # Told of every checkpoint once it is written (the witness outside the log directory).
        self.on_checkpoint: list[Callable[[dict[str, Any]], None]] = []
        self._unwitnessed: dict[str, Any] | None = None

    # -- writing -------------------------------------------------------------------------

    def append(self, events: list[dict[str, Any]], fsync: bool) -> list[dict[str, Any]]:
        """Chain and write `events` (and a checkpoint when due); fsync before returning if asked."""
        with self._locked():
            head = self._sync_head()
            written: list[dict[str, Any]] = []
            lines: list[bytes] = []
            for event in self.tamper_notes + events:
                record = {k: v for k, v in event.items() if k not in {"seq", "prev", "chain"}}
                record["seq"] = head.seq + 1
                record["prev"] = head.chain
                chain = chain_hash(head.chain, record)  # checks the values, once
                lines.append(with_chain(record, chain) + b"\n")
                record["chain"] = chain
                head.seq, head.chain = record["seq"], chain
                written.append(record)
            self.tamper_notes = []
            if head.seq - head.checkpoint_seq >= self.checkpoint_every:
                lines.append(self._checkpoint_line(head))
            self._write(b"".join(lines), fsync)
            assert self._identity is not None  # set by _write: the size after it, no fstat needed
            if self._identity[1] >= self.max_size:
                self._rotate(head)
        self._tell_witnesses()
        return written[len(written) - len(events) :]

    def checkpoint(self, fsync: bool = True) -> bool:
        """Sign the head now if anything was written since the last checkpoint."""
        with self._locked():
            head = self._sync_head()
            if head.seq == head.checkpoint_seq:
                return False
            self._write(self._checkpoint_line(head), fsync)
        self._tell_witnesses()
        return True

    def _tell_witnesses(self) -> None:
        # After the lock: other processes appending to the chain do not wait for a witness.
        body, self._unwitnessed = self._unwitnessed, None
        if body is None:
            return
        for listener in self.on_checkpoint:
            listener(body)

    def close(self) -> None:
        self.checkpoint()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        os.close(self._lock_fd)

    def _checkpoint_line(self, head: Head) -> bytes:
        body: dict[str, Any] = {
            "checkpoint": True,
            "seq": head.seq,
            "chain": head.chain,
            "ts": now_rfc3339(),
            "key_id": self.keys.key_id,
            "prev_sig": head.checkpoint_sig,
        }
        signature = self.keys.sign(canonical(body))
        body["sig"] = signature
        head.checkpoint_seq, head.checkpoint_sig = head.seq, signature
        self._unwitnessed = body
        return canonical(body) + b"\n"

    def _write(self, data: bytes, fsync: bool) -> None:
        fd = self._open()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
        stat = os.fstat(fd)
        self._identity = (stat.st_ino, stat.st_size)

    def _rotate(self, head: Head) -> None:
        self._write(self._checkpoint_line(head), fsync=True)
        first = self._first_seq(self.path)
        target = self.directory / f"{self.name}.{first:012d}-{head.seq:012d}"
        self._release(self.path)
        os.rename(self.path, target)
        os.close(self._fd)
        self._fd = -1
        self._identity = None
        if self.compress:
            with open(target, "rb") as source, gzip.open(f"{target}.gz.tmp", "wb") as sink:
                adopt(sink.fileno(), self.directory)
                shutil.copyfileobj(source, sink)
            os.chmod(f"{target}.gz.tmp", 0o600)
            os.replace(f"{target}.gz.tmp", f"{target}.gz")
            os.unlink(target)
            target = Path(f"{target}.gz")
        self._protect(target)
        for old in rotated_files(self.directory, self.name)[: -self.max_files]:
            self._release(old)
            old.unlink()
        self._open()
        self._identity = (os.fstat(self._fd).st_ino, 0)

    # -- state ---------------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            adopt(self._fd, self.directory)
            self._protect(self.path)
        return self._fd

    def _protect(self, path: Path) -> None:
        if not self.append_only:
            return
        granted = self.attribute(path, True)
        if self.append_only_active is None and not granted:
            # Degraded, and said so in the trail itself.
            self.tamper_notes.append(
                _internal_event(
                    "audit_append_only_unavailable",
                    {"path": str(path), "reason": "no CAP_LINUX_IMMUTABLE or no filesystem support"},
                )
            )
        self.append_only_active = granted

    def _release(self, path: Path) -> None:
        # Only this writer's own maintenance (rotation, retention, torn-tail repair) lifts it.
        if self.append_only:
            self.attribute(path, False)

    def _locked(self) -> _Flock:
        return _Flock(self._lock_fd)

    def _sync_head(self) -> Head:
        """Our cached head, or the head on disk when another process (or a person) changed the file."""
        try:
            stat = os.stat(self.path)
            identity: tuple[int, int] | None = (stat.st_ino, stat.st_size)
        except FileNotFoundError:
            identity = None
        if self._head is not None and identity == self._identity:
            return self._head
        if self._fd >= 0 and (identity is None or identity[0] != os.fstat(self._fd).st_ino):
            os.close(self._fd)  # rotated by another process: write to the new file
            self._fd = -1
        on_disk = self._repair_and_read_head()
        if self._head is not None and on_disk.seq < self._head.seq:
            # Records we wrote are gone. Keep our head so the gap shows in the chain, and say so.
            self.tamper_notes.append(
                _internal_event(
                    "audit_tamper_detected",
                    {"expected_seq": self._head.seq, "found_seq": on_disk.seq, "problem": "records missing"},
                )
            )
            on_disk = self._head
        self._head = on_disk
        return on_disk

    def _repair_and_read_head(self) -> Head:
        """Read the head from disk, first cutting off a torn (never acknowledged) partial line."""
        if self.path.exists():
            self._release(self.path)
            with open(self.path, "rb+") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size:
                    handle.seek(max(0, size - _TAIL_CHUNK))
                    tail = handle.read()
                    if not tail.endswith(b"\n"):
                        cut = tail.rfind(b"\n") + 1
                        keep = size - len(tail) + cut
                        handle.truncate(keep)
                        self.tamper_notes.append(
                            _internal_event("audit_torn_tail_repaired", {"bytes_removed": size - keep})
                        )
            self._protect(self.path)
        # Newest file first: the latest event, and the latest checkpoint (which may sit at the end
        # of the previous, rotated file when the current one has none yet).
        head: Head | None = None
        for path in reversed(all_files(self.directory, self.name)):
            found = _head_of(path)
            if found is None:
                continue
            if head is None:
                head = found
            if head.checkpoint_sig is None and found.checkpoint_sig is not None:
                head.checkpoint_seq, head.checkpoint_sig = found.checkpoint_seq, found.checkpoint_sig
            if head.checkpoint_sig is not None:
                break
        return head or Head()

    def _first_seq(self, path: Path) -> int:
        for _, raw in read_lines(path):
            record = json.loads(raw)
            if not record.get("checkpoint"):
                return int(record["seq"])
        return 0


def _head_of(path: Path) -> Head | None:
    """The last event and last checkpoint of one file: from its tail when they are there."""
    if not path.name.endswith(".gz"):
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_CHUNK))
            tail = handle.read()
        lines = tail.split(b"\n")
        if size > _TAIL_CHUNK:
            lines = lines[1:]  # the first piece may be the end of a longer line
        head = _head_from(lines)
        if (head is not None and head.checkpoint_sig is not None) or size <= _TAIL_CHUNK:
            return head
    return _head_from(raw for _, raw in read_lines(path))


def parse_records(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The records (events and checkpoints) of raw lines, skipping blank and unreadable ones.

    For reading back and recovery only; `verify` is the one that treats a bad line as an error.
    """
    for raw in lines:
        if not raw:
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def _head_from(lines: Iterable[bytes]) -> Head | None:
    last_event: dict[str, Any] | None = None
    last_checkpoint: dict[str, Any] | None = None
    for record in parse_records(lines):
        if record.get("checkpoint"):
            last_checkpoint = record
        else:
            last_event = record
    if last_event is None and last_checkpoint is None:
        return None
    head = Head()
    if last_checkpoint is not None:
        head.seq, head.chain = int(last_checkpoint["seq"]), str(last_checkpoint["chain"])
        head.checkpoint_seq, head.checkpoint_sig = head.seq, str(last_checkpoint["sig"])
    if last_event is not None and int(last_event["seq"]) > head.seq:
        head.seq, head.chain = int(last_event["seq"]), str(last_event["chain"])
    return head


def _internal_event(action: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "ts": now_rfc3339(),
        "action": action,
        "outcome": "alert",
        "actor_id": "system",
        "channel": "internal",
        "resource_type": "audit_log",
        "resource_id": None,
        "ip_address": None,
        "user_agent": None,
        "request_id": None,
        "details": details,
    }


class _Flock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
