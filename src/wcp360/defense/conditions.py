"""IDS rule conditions (seed 003 `ids.yml`) parsed into a small AST; never `eval`.

    failed_logins > 5 in 5m
    module_size > 50MB or contains_suspicious_patterns
    permission_denied and target_resource = admin
    execution_rate > 1000/min

Grammar (keywords case-insensitive):
    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison | flag
    comparison := NAME op value ["in" DURATION]
    value      := NUMBER [unit] | NUMBER "/" RATE_UNIT | NAME | QUOTED
Windowed names (counts of events in a sliding window) need a window: `in 5m` or a rate `/min`.
A recursive-descent parser is a few dozen lines; a parser library would be a dependency for that.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from wcp360.config.units import parse_duration, parse_size

# name -> what it counts: (audit actions, the event field that keys the window)
WINDOWED: dict[str, tuple[frozenset[str], str]] = {
    "failed_logins": (frozenset({"login_failure"}), "ip_address"),
    "failed_logins_for_user": (frozenset({"login_failure"}), "username"),
    "permission_denials": (frozenset({"permission_denied"}), "actor_id"),
    "execution_rate": (frozenset({"module_execute"}), "actor_id"),
    "requests_refused": (frozenset({"rate_limit_exceeded"}), "ip_address"),
}
# name -> how to read it from one event
FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "module_size": lambda e: (e.get("details") or {}).get("size"),
    "target_resource": lambda e: (e.get("details") or {}).get("target_resource"),
    "action": lambda e: e.get("action"),
    "outcome": lambda e: e.get("outcome"),
    "channel": lambda e: e.get("channel"),
}
FLAGS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "permission_denied": lambda e: e.get("action") == "permission_denied",
    "login_failure": lambda e: e.get("action") == "login_failure",
    "contains_suspicious_patterns": lambda e: bool((e.get("details") or {}).get("suspicious")),
}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
}
_RATE_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)(?P<unit>[A-Za-z]+)?(?:/(?P<rate>[A-Za-z]+))?"
    r"|(?P<op>>=|<=|==|!=|>|<|=)|(?P<paren>[()])|(?P<quoted>\"[^\"]*\"|'[^']*')|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)


class ConditionError(ValueError):
    def __init__(self, column: int, message: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    column: int
    value: Any = None
    window: timedelta | None = None


@dataclass(frozen=True)
class Flag:
    name: str


@dataclass(frozen=True)
class Compare:
    name: str
    op: str
    value: Any
    window: timedelta | None = None


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class All:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Node, ...]


Node = Flag | Compare | Not | All | Any_


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ConditionError(position + 1, f"unexpected character {text[position:].lstrip()[:1]!r}")
        column = match.start() + len(match.group(0)) - len(match.group(0).lstrip()) + 1
        if match.group("number") is not None:
            tokens.append(_number(match, column))
        elif match.group("op"):
            tokens.append(Token("op", match.group("op"), column))
        elif match.group("paren"):
            tokens.append(Token(match.group("paren"), match.group("paren"), column))
        elif match.group("quoted"):
            tokens.append(Token("value", match.group("quoted"), column, match.group("quoted")[1:-1]))
        else:
            word = match.group("name")
            kind = word.lower() if word.lower() in {"and", "or", "not", "in"} else "name"
            tokens.append(Token(kind, word, column))
        position = match.end()
    return tokens


def _number(match: re.Match[str], column: int) -> Token:
    number, unit, rate = match.group("number"), match.group("unit"), match.group("rate")
    text = match.group(0).strip()
    if rate is not None:
        if unit or rate.lower() not in _RATE_UNITS:
            raise ConditionError(column, f"unknown rate {text!r}: use /s, /min, /h or /d")
        return Token("value", text, column, float(number), timedelta(seconds=_RATE_UNITS[rate.lower()]))
    if unit is None:
        return Token("value", text, column, float(number))
    if unit in {"s", "m", "h", "d", "w", "y", "ms"}:
        return Token("duration", text, column, parse_duration(text))
    try:
        return Token("value", text, column, float(parse_size(text)))
    except ValueError:
        raise ConditionError(column, f"unknown unit in {text!r}") from None


class _Parser:
    def __init__(self, tokens: list[Token], length: int) -> None:
        self.tokens = tokens
        self.index = 0
        self.end_column = length + 1

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str | None = None) -> Token:
        token = self.peek()
        if token is None:
            raise ConditionError(self.end_column, f"expected {kind or 'more'} at the end")
        if kind is not None and token.kind != kind:
            raise ConditionError(token.column, f"expected {kind}, found {token.text!r}")
        self.index += 1
        return token

    def expression(self) -> Node:
        items = [self.conjunction()]
        while (token := self.peek()) is not None and token.kind == "or":
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Any_(tuple(items))

    def conjunction(self) -> Node:
        items = [self.negation()]
        while (token := self.peek()) is not None and token.kind == "and":
            self.take()
            items.append(self.negation())
        return items[0] if len(items) == 1 else All(tuple(items))

    def negation(self) -> Node:
        token = self.peek()
        if token is not None and token.kind == "not":
            self.take()
            return Not(self.negation())
        if token is not None and token.kind == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        return self.atom()

    def atom(self) -> Node:
        name = self.take("name")
        following = self.peek()
        if following is None or following.kind != "op":
            if name.text in FLAGS:
                return Flag(name.text)
            raise ConditionError(name.column, f"unknown condition {name.text!r}")
        op = self.take("op")
        value_token = self.take()
        if value_token.kind not in {"value", "name"}:
            raise ConditionError(value_token.column, f"expected a value, found {value_token.text!r}")
        value = value_token.value if value_token.kind == "value" else value_token.text
        window = value_token.window
        if (token := self.peek()) is not None and token.kind == "in":
            self.take()
            window = self.take("duration").value
        return self._check(name, op, value, window)

    def _check(self, name: Token, op: Token, value: Any, window: timedelta | None) -> Compare:
        if name.text in WINDOWED:
            if window is None:
                raise ConditionError(name.column, f"{name.text} counts events: give a window (`in 5m` or `/min`)")
            if not isinstance(value, float):
                raise ConditionError(op.column, f"{name.text} compares with a number")
        elif name.text in FIELDS:
            if window is not None:
                raise ConditionError(name.column, f"{name.text} is a field of one event; it takes no window")
        else:
            raise ConditionError(name.column, f"unknown name {name.text!r}")
        return Compare(name.text, op.text, value, window)


def parse(text: str) -> Node:
    tokens = tokenize(text)
    if not tokens:
        raise ConditionError(1, "empty condition")
    parser = _Parser(tokens, len(text))
    node = parser.expression()
    if (extra := parser.peek()) is not None:
        raise ConditionError(extra.column, f"unexpected {extra.text!r}")
    return node


def windows_of(node: Node) -> set[tuple[str, timedelta]]:
    """The (counter, window) pairs a condition reads, so the engine knows what to count."""
    if isinstance(node, Compare):
        return {(node.name, node.window)} if node.window is not None else set()
    if isinstance(node, Not):
        return windows_of(node.item)
    if isinstance(node, All | Any_):
        return set().union(*(windows_of(i) for i in node.items))
    return set()


Counts = Callable[[str, timedelta], int]


def evaluate(node: Node, event: dict[str, Any], counts: Counts) -> bool:
    if isinstance(node, Flag):
        return FLAGS[node.name](event)
    if isinstance(node, Not):
        return not evaluate(node.item, event, counts)
    if isinstance(node, All):
        return all(evaluate(i, event, counts) for i in node.items)
    if isinstance(node, Any_):
        return any(evaluate(i, event, counts) for i in node.items)
    if node.window is not None:
        actual: Any = counts(node.name, node.window)
    else:
        actual = FIELDS[node.name](event)
    if actual is None:
        return False
    expected = node.value
    if isinstance(expected, float) and not isinstance(actual, int | float):
        try:
            actual = float(actual)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, str) and not isinstance(actual, str):
        return False
    return _OPS[node.op](actual, expected)
