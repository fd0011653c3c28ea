"""The IDS condition language: the seed's rules, errors with columns, and no crash on any input."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wcp360.defense.conditions import All, Any_, Compare, ConditionError, Flag, evaluate, parse

SEED = {
    "failed_logins > 5 in 5m": Compare("failed_logins", ">", 5.0, timedelta(minutes=5)),
    "module_size > 50MB or contains_suspicious_patterns": Any_(
        (Compare("module_size", ">", 50e6), Flag("contains_suspicious_patterns"))
    ),
    "permission_denied and target_resource = admin": All(
        (Flag("permission_denied"), Compare("target_resource", "=", "admin"))
    ),
    "execution_rate > 1000/min": Compare("execution_rate", ">", 1000.0, timedelta(minutes=1)),
}


@pytest.mark.parametrize("text", list(SEED))
def test_seed_conditions(text: str) -> None:
    assert parse(text) == SEED[text]


def test_evaluation() -> None:
    counts = {"failed_logins": 6}
    node = parse("failed_logins > 5 in 5m")
    assert evaluate(node, {"action": "login_failure"}, lambda name, window: counts[name])
    counts["failed_logins"] = 5
    assert not evaluate(node, {"action": "login_failure"}, lambda name, window: counts[name])
    escalation = parse("permission_denied and target_resource = admin")
    denied = {"action": "permission_denied", "details": {"target_resource": "admin"}}
    assert evaluate(escalation, denied, lambda *_: 0)
    assert not evaluate(escalation, {**denied, "details": {"target_resource": "user"}}, lambda *_: 0)
    upload = parse("module_size > 50MB or contains_suspicious_patterns")
    assert evaluate(upload, {"details": {"size": 60_000_000}}, lambda *_: 0)
    assert evaluate(upload, {"details": {"size": 10, "suspicious": True}}, lambda *_: 0)
    assert not evaluate(upload, {"details": {"size": 10}}, lambda *_: 0)
    assert evaluate(parse("not (login_failure or permission_denied)"), {"action": "x"}, lambda *_: 0)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("failed_logins > 5", 1, "give a window"),
        ("failed_logins > 5 in", 21, "expected duration"),
        ("failed_logins >> 5 in 5m", 16, "expected a value"),
        ("module_size > 5 in 5m", 1, "takes no window"),
        ("evil_thing", 1, "unknown condition"),
        ("__import__('os') > 1", 1, "unknown condition"),
        ("failed_logins > 5 in 5m; rm", 24, "unexpected character"),
        ("a and", 1, "unknown condition"),
        ("(permission_denied", 19, "expected )"),
        ("permission_denied permission_denied", 19, "unexpected"),
        ("execution_rate > 5/fortnight", 18, "unknown rate"),
        ("module_size > 5XB", 15, "unknown unit"),
        ("", 1, "empty"),
    ],
)
def test_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(text)
    assert caught.value.column == column, str(caught.value)
    assert fragment in str(caught.value)


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_condition_error(text: str) -> None:
    with contextlib.suppress(ConditionError):
        parse(text)


atoms = st.sampled_from(
    [
        "permission_denied",
        "login_failure",
        "contains_suspicious_patterns",
        "failed_logins > 3 in 5m",
        "module_size >= 1KB",
        "target_resource = admin",
        "execution_rate > 10/s",
        "outcome != success",
    ]
)


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(atoms)
    left, right = draw(expressions(depth + 1)), draw(expressions(depth + 1))
    form = draw(st.sampled_from(["{} and {}", "{} or {}", "not ({})", "({}) or ({})"]))
    return form.format(left, right) if form.count("{}") == 2 else form.format(left)


@given(expressions())
def test_generated_expressions_parse_and_evaluate(text: str) -> None:
    node = parse(text)
    assert evaluate(node, {"action": "login_failure", "details": {"size": 2048}}, lambda *_: 4) in (True, False)
