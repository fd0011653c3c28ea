"""Host secrets created on first start: processes starting at once agree on one complete value."""

from __future__ import annotations

import secrets
import stat
import threading
from pathlib import Path

from wcp360.keys import read_or_create


def _start(path: Path, barrier: threading.Barrier, results: list[bytes]) -> None:
    barrier.wait()
    results.append(read_or_create(path, secrets.token_hex(32).encode()))


def test_concurrent_first_starts_agree_on_one_complete_secret(tmp_path: Path) -> None:
    for attempt in range(25):
        path = tmp_path / f"secret-{attempt}"
        barrier = threading.Barrier(12)
        results: list[bytes] = []
        threads = [threading.Thread(target=_start, args=(path, barrier, results)) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(results)) == 1 and len(results[0]) == 64, results
        assert path.read_bytes().strip() == results[0]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
