"""IDS actions fired from the audit stream: alert, throttle, quarantine, and no feedback loops."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.defense.conftest import from_
from tests.helpers import signed_in
from wcp360 import audit
from wcp360.config.ids import IdsConfig, IdsRule
from wcp360.defense.bans import BanList
from wcp360.defense.ids import Ids
from wcp360.defense.throttles import Throttles
from wcp360.defense.windows import MemoryWindows
from wcp360.runtime import Runtime
from wcp360.store.scope import NOBODY


def test_privilege_escalation_attempt_raises_an_alert(web: TestClient, defended: Runtime) -> None:
    sent: list[tuple[str, str]] = []
    defended.defense.ids.alert = lambda rule, subject, detail: sent.append((rule, subject))
    reseller = signed_in(web, defended, "shop", ["reseller"])
    admin = signed_in(web, defended, "boss", ["admin"])
    response = web.post(f"/api/v1/users/{admin.user_id}/disable", headers={**reseller.headers, **from_("198.51.100.3")})
    assert response.status_code == 403
    assert ("privilege_escalation", f"{reseller.user_id}") in sent


def _engine(rule: IdsRule, bans: BanList) -> tuple[Ids, Throttles, list[tuple[str, dict[str, Any]]]]:
    throttles = Throttles(0.1)
    ids = Ids(IdsConfig(rules=[rule]), MemoryWindows(), bans, throttles, lambda *a: None)
    quarantined: list[tuple[str, dict[str, Any]]] = []
    ids.quarantine_hooks.append(lambda subject, event: quarantined.append((subject, event)))
    return ids, throttles, quarantined


def test_throttle_and_quarantine_actions(defended: Runtime, tmp_path: Path) -> None:
    rate = IdsRule(name="busy", condition="execution_rate > 3/min", action="throttle", duration=timedelta(minutes=5))
    ids, throttles, _ = _engine(rate, defended.defense.bans)
    with_sink = audit.current_trail()
    audit.install([*with_sink.sinks, ids], with_sink.sensitive, with_sink.writer, with_sink.forwarders)
    try:
        for _ in range(4):
            audit.record("module_execute", actor_id="u-7", resource_type="module", resource_id="m-1")
        assert throttles.factor_for("u-7") == 0.1 and throttles.factor_for("u-8") == 1.0
        upload = IdsRule(
            name="suspicious_module_upload",
            condition="module_size > 50MB or contains_suspicious_patterns",
            action="quarantine",
        )
        ids2, _, quarantined = _engine(upload, defended.defense.bans)
        audit.install([*with_sink.sinks, ids2], with_sink.sensitive, with_sink.writer, with_sink.forwarders)
        audit.record(
            "module_upload", actor_id="u-7", resource_type="module", resource_id="small", details={"size": 1000}
        )
        audit.record(
            "module_upload", actor_id="u-7", resource_type="module", resource_id="huge", details={"size": 60_000_000}
        )
        assert [subject for subject, _ in quarantined] == ["huge"]
    finally:
        audit.install(with_sink.sinks, with_sink.sensitive, with_sink.writer, with_sink.forwarders)


def test_actions_do_not_feed_back_into_the_engine(defended: Runtime) -> None:
    # A rule matching its own action's audit event must not loop.
    rule = IdsRule(name="loop", condition="outcome = success", action="block_ip", duration=timedelta(hours=1))
    ids, _, _ = _engine(rule, defended.defense.bans)
    event = audit.AuditEvent(
        ts="t",
        action="x",
        outcome="success",
        actor_id=None,
        resource_type=None,
        resource_id=None,
        ip_address="198.51.100.44",
        user_agent=None,
        request_id=None,
        channel="test",
    )
    ids.write(event)
    ids.write(event)  # de-duplicated within a second, and already banned
    assert [b.network for b in defended.defense.bans.list(__import__("tests.helpers").helpers.HOST)] == [
        "198.51.100.44/32"
    ]


def test_a_ban_decided_inside_a_write_transaction_waits_for_it(defended: Runtime) -> None:
    """An event recorded inside a write transaction (a sign-in failure) can fire a ban, which is a
    write of its own: on SQLite the thread holding the only write lock waited for itself until the
    busy timeout (30 s per request, found by the live fuzz test) and the ban was lost. The ban now
    comes right after the transaction."""
    rule = IdsRule(name="inside", condition="outcome = failure", action="block_ip", duration=timedelta(hours=1))
    ids, _, _ = _engine(rule, defended.defense.bans)
    event = audit.AuditEvent(
        ts="t",
        action="login_failure",
        outcome="failure",
        actor_id=None,
        resource_type=None,
        resource_id=None,
        ip_address="198.51.100.45",
        user_agent=None,
        request_id=None,
        channel="test",
    )
    host = __import__("tests.helpers").helpers.HOST
    with defended.db.transaction(NOBODY) as s:
        s.execute(__import__("sqlalchemy").text("SELECT 1"))
        ids.write(event)
        assert defended.defense.bans.list(host) == []  # not yet: the transaction still holds the lock
    assert [b.network for b in defended.defense.bans.list(host)] == ["198.51.100.45/32"]
