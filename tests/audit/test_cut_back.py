"""A root attacker who lifts `chattr +a` can remove lines or cut the log back to a checkpoint; the
log alone cannot prove what it lost, so verify compares it with its witness and database copy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tests.audit.conftest import LogUnderTest
from tests.audit.test_integration import cli_env
from tests.audit.test_tamper import lines_of, write_lines
from tests.helpers import make_user
from wcp360.audit.append_only import set_append_only
from wcp360.audit.setup import audit_file, trail_scope
from wcp360.cli.main import app as cli
from wcp360.runtime import Runtime
from wcp360.store.models import AuditWitness
from wcp360.store.scope import SYSTEM


def checkpoint_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if b'"checkpoint":true' in line]


def test_removing_the_first_checkpoint_is_detected(audit_log: LogUnderTest) -> None:
    audit_log.write(35).close()
    lines = lines_of(audit_log.current)
    del lines[checkpoint_lines(lines)[0]]
    write_lines(audit_log.current, lines)
    report = audit_log.verify()
    assert not report.ok and report.problem is not None
    assert "checkpoints removed" in report.problem.message


def test_removing_any_checkpoint_is_detected(audit_log: LogUnderTest) -> None:
    audit_log.write(45).close()
    for index in range(len(checkpoint_lines(lines_of(audit_log.current))) - 1):
        lines = lines_of(audit_log.current)
        original = list(lines)
        del lines[checkpoint_lines(lines)[index]]
        write_lines(audit_log.current, lines)
        report = audit_log.verify()
        assert not report.ok, index
        write_lines(audit_log.current, original)


@pytest.fixture
def busy_log(rt: Runtime) -> Iterator[Path]:
    """A trail with a database witness: three processes' lifetimes, each closing on a checkpoint."""
    for round_ in range(3):
        with trail_scope(rt.config, rt.db):
            for i in range(4):
                make_user(rt, f"w{round_}x{i}", ["viewer"])
    directory, name, _ = audit_file(rt.config)
    yield directory / name


def _verify(rt: Runtime) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", "verify"], env=cli_env(rt))
    return result.exit_code, result.stdout + result.stderr


def test_a_log_cut_back_to_an_earlier_checkpoint_fails_against_its_witness(rt: Runtime, busy_log: Path) -> None:
    assert _verify(rt)[0] == 0
    lines = lines_of(busy_log)
    checkpoints = checkpoint_lines(lines)
    kept = lines[: checkpoints[-2] + 1]  # ends exactly at an earlier checkpoint: verifies by itself
    cut_seq = json.loads(kept[-1])["seq"]
    last_seq = json.loads(lines[checkpoints[-1]])["seq"]
    set_append_only(busy_log, False)
    write_lines(busy_log, kept)
    code, output = _verify(rt)
    assert code == 1
    assert f"events {cut_seq + 1}..{last_seq} are missing" in output and "cut back" in output


def test_a_forged_witness_is_not_believed(rt: Runtime, busy_log: Path) -> None:
    with rt.db.transaction(SYSTEM) as s:
        s.execute(update(AuditWitness).values(seq=10_000))
    code, output = _verify(rt)
    assert code == 1 and "witness" in output and "does not verify" in output


def test_the_witness_follows_every_checkpoint(rt: Runtime, busy_log: Path) -> None:
    with rt.db.transaction(SYSTEM, readonly=True) as s:
        witness = s.get(AuditWitness, busy_log.name)
    assert witness is not None
    last_checkpoint = json.loads(lines_of(busy_log)[checkpoint_lines(lines_of(busy_log))[-1]])
    assert (witness.seq, witness.chain, witness.sig) == (
        last_checkpoint["seq"],
        last_checkpoint["chain"],
        last_checkpoint["sig"],
    )
