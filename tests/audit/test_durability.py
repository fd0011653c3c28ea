"""Rotation, group commit, several writer processes, torn tails, and a writer killed under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.audit.conftest import LogUnderTest, event
from wcp360.audit.logfile import AuditLogFile, all_files, read_lines
from wcp360.audit.tail import iter_events
from wcp360.audit.writer import AuditWriter


def test_rotation_keeps_the_chain_across_compressed_files(audit_log: LogUnderTest) -> None:
    log = audit_log.write(200, max_size=4000, max_files=100, every=25)
    log.close()
    files = audit_log.files()
    assert len(files) >= 5 and all(f.name.endswith(".gz") for f in files[:-1])
    assert all(oct(f.stat().st_mode)[-3:] == "600" for f in files)
    report = audit_log.verify()
    assert report.ok, report.problem
    assert (report.first_seq, report.last_seq, report.events) == (1, 200, 200)
    assert [int(e["seq"]) for e in iter_events(audit_log.directory)] == list(range(1, 201))


def test_rotation_and_retention_work_with_append_only_files(audit_log: LogUnderTest, tmp_path: Path) -> None:
    from wcp360.audit.append_only import is_append_only
    from wcp360.audit.signing import SigningKeys

    log = AuditLogFile(tmp_path / "ao", SigningKeys(tmp_path / "k"), 3000, 2, True, 25, append_only=True)
    for i in range(150):
        log.append([event(i)], fsync=False)
    log.close()
    files = sorted((tmp_path / "ao").glob("audit.log*"))
    assert len(files) == 3  # two rotated files kept, and the current one
    if log.append_only_active:
        assert all(is_append_only(f) for f in files)


def test_retention_drops_oldest_files_and_the_rest_still_verifies(audit_log: LogUnderTest) -> None:
    audit_log.write(200, max_size=4000, max_files=3, every=25).close()
    rotated = audit_log.files()[:-1]
    assert len(rotated) == 3
    report = audit_log.verify()
    assert report.ok, report.problem
    assert report.first_seq is not None and report.first_seq > 1 and report.last_seq == 200


def test_tampering_inside_a_rotated_file_is_caught(audit_log: LogUnderTest) -> None:
    import gzip

    audit_log.write(120, max_size=4000, every=25).close()
    victim = audit_log.files()[1]
    lines = gzip.decompress(victim.read_bytes()).splitlines(keepends=True)
    lines[2] = (
        lines[2]
        .replace(b'"outcome":"failure"', b'"outcome":"success"')
        .replace(b'"outcome":"success"', b'"outcome":"denied"', 1)
    )
    victim.write_bytes(gzip.compress(b"".join(lines)))
    report = audit_log.verify()
    assert not report.ok and report.problem is not None and report.problem.file == victim.name


def test_group_commit_acknowledges_only_durable_events(
    audit_log: LogUnderTest, writer_factory: Callable[..., AuditWriter]
) -> None:
    writer = writer_factory(audit_log.make(every=50), fsync="batch", window=0.005)
    results: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(25):
            seq = writer.submit(event(n * 100 + i))["seq"]
            with lock:
                results.append(seq)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 201))
    on_disk = [int(e["seq"]) for e in iter_events(audit_log.directory)]
    assert on_disk == list(range(1, 201))
    writer.close()
    assert audit_log.verify().ok


def test_always_mode_writes_each_event_on_its_own(
    audit_log: LogUnderTest, writer_factory: Callable[..., AuditWriter]
) -> None:
    writer = writer_factory(audit_log.make(), fsync="always")
    for i in range(5):
        assert writer.submit(event(i))["seq"] == i + 1
    writer.close()
    assert audit_log.verify().events == 5


def test_periodic_checkpoint(audit_log: LogUnderTest, writer_factory: Callable[..., AuditWriter]) -> None:
    writer = writer_factory(audit_log.make(every=1000), checkpoint_seconds=0.2)
    writer.submit(event(1))
    deadline = time.monotonic() + 5
    while audit_log.verify().last_signed_seq != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert audit_log.verify().last_signed_seq == 1
    writer.close()


def test_torn_partial_line_is_cut_and_noted(audit_log: LogUnderTest) -> None:
    audit_log.write(5).close()
    with open(audit_log.current, "ab") as handle:
        handle.write(b'{"action":"login_suc')  # a write cut short by a crash: never acknowledged
    log = audit_log.make()
    log.append([event(99)], fsync=True)
    log.close()
    report = audit_log.verify()
    assert report.ok, report.problem
    actions = [e["action"] for e in iter_events(audit_log.directory)]
    assert actions[-2] == "audit_torn_tail_repaired" and report.last_seq == 7


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from wcp360.audit.logfile import AuditLogFile
    from wcp360.audit.signing import SigningKeys
    from wcp360.audit.writer import AuditWriter

    root, tag, count, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    log = AuditLogFile(root / "log", SigningKeys(root / "keys"), 20000, 1000, True, 50)
    writer = AuditWriter(log, fsync="batch", window=0.001)
    ack = open(root / f"ack-{tag}", "a", buffering=1)
    def work(t):
        for i in range(count):
            record = writer.submit({"ts": "2026-01-01T00:00:00.000000Z", "action": "load", "outcome": "success",
                                    "actor_id": f"{tag}-{t}", "details": {"i": i}})
            ack.write(f"{record['seq']}\\n")  # acknowledged: submit returned after fsync
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [p.start() for p in pool]
    [p.join() for p in pool]
    writer.close()
    """
)


def _spawn(root: Path, tag: str, count: int, threads: int) -> subprocess.Popen[bytes]:
    script = root / "writer.py"
    if not script.exists():  # written once: rewriting it could race a child still reading it
        script.write_text(WRITER_SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(root), tag, str(count), str(threads)])


def test_several_processes_share_one_chain(audit_log: LogUnderTest) -> None:
    root = audit_log.directory.parent
    processes = [_spawn(root, f"p{n}", 60, 3) for n in range(3)]
    for process in processes:
        assert process.wait(120) == 0
    report = audit_log.verify()
    assert report.ok, report.problem
    # Each process acknowledged all of its events, and the chain holds exactly those.
    acknowledged = [len((root / f"ack-p{n}").read_text().split()) for n in range(3)]
    assert acknowledged == [60 * 3] * 3
    assert (report.events, report.unsigned_tail) == (3 * 60 * 3, 0), report


def test_writer_killed_under_load_loses_no_acknowledged_event(audit_log: LogUnderTest) -> None:
    root = audit_log.directory.parent
    process = _spawn(root, "victim", 100_000, 4)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ack = root / "ack-victim"
        if ack.exists() and len(ack.read_text().splitlines()) > 400:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    acknowledged = {int(line) for line in (root / "ack-victim").read_text().splitlines() if line.strip()}
    assert len(acknowledged) > 400
    # Restart: a new writer repairs any torn tail and continues the chain.
    log = AuditLogFile(audit_log.directory, audit_log.keys, 20000, 1000, True, 50)
    log.append([event(0)], fsync=True)
    log.close()
    on_disk = {int(e["seq"]) for e in iter_events(audit_log.directory) if e["action"] == "load"}
    assert acknowledged <= on_disk, f"lost: {sorted(acknowledged - on_disk)[:10]}"
    report = audit_log.verify()
    assert report.ok, report.problem
    assert report.unsigned_tail == 0
    assert os.path.exists(audit_log.current)
    # The trail ends with a signed checkpoint: in the current file, or, when closing rotated it
    # (the checkpoint took it past max_size), at the end of the newest rotated file.
    lines = [raw for path in all_files(audit_log.directory) for _, raw in read_lines(path) if raw]
    assert json.loads(lines[-1])["checkpoint"] is True
