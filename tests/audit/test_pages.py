"""Pages of the trail read backwards (audit/pages.py) are exactly what reading every event would
give: for logs with rotated plain and gzip files, checkpoints between events, and any filter,
`before_seq` and page size. And a page reads about as much as it returns, not the whole log."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wcp360.audit.logfile import AuditLogFile
from wcp360.audit.pages import BLOCK, newest_first
from wcp360.audit.search import EventFilter
from wcp360.audit.signing import SigningKeys
from wcp360.audit.tail import iter_events

ACTIONS = ["login_success", "login_failure", "module_execute"]


def _trail(directory: Path, events: int, max_size: int, compress: bool) -> None:
    log = AuditLogFile(directory / "log", SigningKeys(directory / "keys"), max_size, 1000, compress, 7)
    try:
        for index in range(events):
            action = ACTIONS[(index * 7 + index // 3) % len(ACTIONS)]
            log.append([{"action": action, "outcome": "success", "ts": "2026-11-28T00:00:00Z", "n": index}], False)
    finally:
        log.close()


def _naive(directory: Path, where: EventFilter, limit: int, before: int | None) -> tuple[list[Any], int | None]:
    matches = [r for r in iter_events(directory) if where.matches(r) and (before is None or r["seq"] < before)]
    page = matches[-limit:][::-1]
    return page, int(page[-1]["seq"]) if len(matches) > limit and page else None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.integers(0, 120),
    max_size=st.sampled_from([600, 2_000, 10**9]),
    compress=st.booleans(),
    action=st.sampled_from([None, *ACTIONS]),
    limit=st.integers(1, 30),
    before=st.one_of(st.none(), st.integers(1, 130)),
)
def test_a_page_is_what_reading_everything_would_give(
    events: int, max_size: int, compress: bool, action: str | None, limit: int, before: int | None
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        _trail(directory, events, max_size, compress)
        where = EventFilter(action=action)
        page = newest_first(directory / "log", where, limit, before)
        assert (page.items, page.next_before_seq) == _naive(directory / "log", where, limit, before)
        # Following next_before_seq walks the whole filtered trail, newest to oldest, once.
        seen, cursor = [], None
        while True:
            step = newest_first(directory / "log", where, limit, cursor)
            seen += [r["seq"] for r in step.items]
            if step.next_before_seq is None:
                break
            cursor = step.next_before_seq
        assert seen == [r["seq"] for r in reversed(list(iter_events(directory / "log"))) if where.matches(r)]


def test_a_page_reads_about_what_it_returns(tmp_path: Path, monkeypatch: Any) -> None:
    _trail(tmp_path, 3000, 10**9, False)
    size = (tmp_path / "log" / "audit.log").stat().st_size
    read = 0
    real_open = open

    class Counting:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

        def read(self, n: int = -1) -> bytes:
            nonlocal read
            data: bytes = self.handle.read(n)
            read += len(data)
            return data

        def readline(self) -> bytes:
            nonlocal read
            data: bytes = self.handle.readline()
            read += len(data)
            return data

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    monkeypatch.setattr("wcp360.audit.pages.open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    page = newest_first(tmp_path / "log", EventFilter(), 50, before_seq=1500)
    assert [r["seq"] for r in page.items] == list(range(1499, 1449, -1))
    assert read < 3 * BLOCK < size, (read, size)
