"""Every way of tampering with the log is caught, at or before the affected record's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.audit.conftest import LogUnderTest
from wcp360.audit.canonical import canonical
from wcp360.audit.signing import key_id_of


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def event_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if b'"checkpoint":true' not in line]


def test_an_untouched_log_verifies(audit_log: LogUnderTest) -> None:
    audit_log.write(35).close()
    report = audit_log.verify()
    assert report.ok, report.problem
    assert (report.events, report.first_seq, report.last_seq, report.last_signed_seq) == (35, 1, 35, 35)
    assert report.checkpoints == 4  # at 10, 20, 30 and on close


def test_modified_record(audit_log: LogUnderTest) -> None:
    audit_log.write(25).close()
    lines = lines_of(audit_log.current)
    target = event_lines(lines)[7]
    record = json.loads(lines[target])
    record["outcome"] = "success"
    lines[target] = canonical(record) + b"\n"
    write_lines(audit_log.current, lines)
    report = audit_log.verify()
    assert not report.ok and report.problem is not None
    assert report.problem.seq == record["seq"] and "modified" in report.problem.message


def test_modified_record_with_recomputed_chain_is_caught_by_the_next_link(audit_log: LogUnderTest) -> None:
    from wcp360.audit.canonical import chain_hash

    audit_log.write(25).close()
    lines = lines_of(audit_log.current)
    target = event_lines(lines)[3]
    record = json.loads(lines[target])
    record["actor_id"] = "someone-else"
    record["chain"] = chain_hash(record["prev"], {k: v for k, v in record.items() if k != "chain"})
    lines[target] = canonical(record) + b"\n"
    write_lines(audit_log.current, lines)
    problem = audit_log.verify().problem
    assert problem is not None and problem.seq == record["seq"] + 1 and "link" in problem.message


def test_deleted_record(audit_log: LogUnderTest) -> None:
    audit_log.write(25).close()
    lines = lines_of(audit_log.current)
    del lines[event_lines(lines)[12]]
    write_lines(audit_log.current, lines)
    problem = audit_log.verify().problem
    assert problem is not None and problem.seq == 13 and problem.message == "events 13..13 are missing (deleted)"


def test_reordered_records(audit_log: LogUnderTest) -> None:
    audit_log.write(25).close()
    lines = lines_of(audit_log.current)
    a, b = event_lines(lines)[4], event_lines(lines)[5]
    lines[a], lines[b] = lines[b], lines[a]
    write_lines(audit_log.current, lines)
    problem = audit_log.verify().problem
    assert problem is not None and problem.seq is not None and problem.seq <= 6


def test_inserted_record(audit_log: LogUnderTest) -> None:
    audit_log.write(25).close()
    lines = lines_of(audit_log.current)
    position = event_lines(lines)[8]
    forged = json.loads(lines[position])
    forged["action"] = "logout"
    lines.insert(position + 1, canonical(forged) + b"\n")
    write_lines(audit_log.current, lines)
    problem = audit_log.verify().problem
    assert problem is not None and problem.seq is not None and problem.seq <= 10


def test_truncated_tail_is_reported_as_unprovable(audit_log: LogUnderTest) -> None:
    log = audit_log.write(25, every=10)  # checkpoint at 10 and 20; 21..25 unsigned while open
    lines = lines_of(audit_log.current)
    assert audit_log.verify().unsigned_tail == 5
    write_lines(audit_log.current, lines[:-2])  # remove the last two events
    report = audit_log.verify()
    assert report.ok and report.last_seq == 23 and report.unsigned_tail == 3
    assert any("not covered by a signature" in note for note in report.notes)
    # The next write by the process that wrote them exposes the cut as a gap in the chain.
    log.append([{"ts": "2026-01-01T00:00:00.000000Z", "action": "x", "outcome": "success", "details": {}}], False)
    log.close()
    problem = audit_log.verify().problem
    assert problem is not None and "missing" in problem.message
    assert any('"audit_tamper_detected"' in line.decode() for line in lines_of(audit_log.current))


def test_forged_checkpoint_with_another_key(audit_log: LogUnderTest) -> None:
    audit_log.write(15).close()
    lines = lines_of(audit_log.current)
    index = next(i for i, line in enumerate(lines) if b'"checkpoint":true' in line)
    checkpoint = json.loads(lines[index])
    attacker = Ed25519PrivateKey.generate()
    import base64

    checkpoint["key_id"] = key_id_of(attacker.public_key())
    body = {k: v for k, v in checkpoint.items() if k != "sig"}
    checkpoint["sig"] = base64.b64encode(attacker.sign(canonical(body))).decode()
    lines[index] = canonical(checkpoint) + b"\n"
    write_lines(audit_log.current, lines)
    problem = audit_log.verify().problem
    assert problem is not None and "unknown key" in problem.message


def test_edited_records_resigned_checkpoint_fails_without_the_private_key(audit_log: LogUnderTest) -> None:
    audit_log.write(15).close()
    lines = lines_of(audit_log.current)
    index = next(i for i, line in enumerate(lines) if b'"checkpoint":true' in line)
    checkpoint = json.loads(lines[index])
    checkpoint["ts"] = "2030-01-01T00:00:00.000000Z"  # any change invalidates the signature
    lines[index] = canonical(checkpoint) + b"\n"
    write_lines(audit_log.current, lines)
    problem = audit_log.verify().problem
    assert problem is not None and "signature is invalid" in problem.message


def test_removed_checkpoint_breaks_the_checkpoint_chain(audit_log: LogUnderTest) -> None:
    audit_log.write(35).close()
    lines = lines_of(audit_log.current)
    checkpoints = [i for i, line in enumerate(lines) if b'"checkpoint":true' in line]
    del lines[checkpoints[1]]
    write_lines(audit_log.current, lines)
    problem = audit_log.verify().problem
    assert problem is not None and "previous checkpoint" in problem.message


def test_verify_from_seq(audit_log: LogUnderTest) -> None:
    audit_log.write(30).close()
    report = audit_log.verify(from_seq=21)
    assert report.ok and report.events == 10 and report.first_seq == 21


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_is_caught_by_its_checkpoint(audit_log: LogUnderTest, data: st.DataObject) -> None:
    if not audit_log.current.exists():
        audit_log.write(30, every=10).close()
        audit_log.pristine = audit_log.current.read_bytes()  # type: ignore[attr-defined]
    original: bytes = audit_log.pristine  # type: ignore[attr-defined]
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]), label="byte")
    damaged = original[:position] + bytes([replacement]) + original[position + 1 :]
    audit_log.current.write_bytes(damaged)
    try:
        report = audit_log.verify()
        assert not report.ok, f"change at byte {position} went unnoticed"
        # The affected line's record number: caught at or before the checkpoint that covers it.
        line_number = original[:position].count(b"\n")
        covering = _covering_checkpoint_seq(original, line_number)
        assert report.problem is not None and report.problem.seq is not None
        assert report.problem.seq <= covering
    finally:
        audit_log.current.write_bytes(original)


def _covering_checkpoint_seq(log: bytes, line_number: int) -> int:
    for line in log.splitlines()[line_number:]:
        record = json.loads(line)
        if record.get("checkpoint"):
            return int(record["seq"])
    raise AssertionError("every event is covered once the log is closed")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_record_replacement_is_caught(audit_log: LogUnderTest, data: st.DataObject) -> None:
    if not audit_log.current.exists():
        audit_log.write(30, every=10).close()
        audit_log.pristine = audit_log.current.read_bytes()  # type: ignore[attr-defined]
    original: bytes = audit_log.pristine  # type: ignore[attr-defined]
    lines = original.splitlines(keepends=True)
    index = data.draw(st.sampled_from(event_lines(lines)), label="line")
    record = json.loads(lines[index])
    key = data.draw(st.sampled_from(["action", "outcome", "actor_id", "ip_address", "ts", "details"]))
    record[key] = data.draw(st.one_of(st.text(max_size=8), st.none(), st.just({"n": -1})))
    if canonical(record) + b"\n" == lines[index]:
        return
    lines[index] = canonical(record) + b"\n"
    audit_log.current.write_bytes(b"".join(lines))
    try:
        problem = audit_log.verify().problem
        assert problem is not None and problem.seq is not None and problem.seq <= record["seq"]
    finally:
        audit_log.current.write_bytes(original)
