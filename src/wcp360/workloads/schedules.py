"""When a task runs: a five-field cron expression (croniter), an interval in seconds, or once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from croniter import croniter

Kind = Literal["cron", "interval", "once"]


class ScheduleError(ValueError):
    """A schedule that cannot be parsed or is not allowed."""


@dataclass(frozen=True)
class Schedule:
    kind: Kind
    expression: str

    @classmethod
    def parse(cls, kind: str, expression: str, min_interval: timedelta = timedelta(seconds=1)) -> Schedule:
        expression = expression.strip()
        if kind == "cron":
            # Five fields only: croniter also takes a sixth (seconds) field, which would let a
            # tenant schedule faster than min_interval.
            if len(expression.split()) != 5 or not croniter.is_valid(expression):
                raise ScheduleError(f"not a five-field cron expression: {expression!r}")
        elif kind == "interval":
            try:
                seconds = int(expression)
            except ValueError:
                raise ScheduleError(f"interval must be a whole number of seconds: {expression!r}") from None
            if seconds < min_interval.total_seconds():
                raise ScheduleError(f"interval must be at least {int(min_interval.total_seconds())} seconds")
            if seconds > 366 * 86400:
                raise ScheduleError("interval must be at most a year")
        elif kind == "once":
            instant = _instant(expression)
            expression = instant.isoformat()
        else:
            raise ScheduleError(f"kind must be cron, interval or once, not {kind!r}")
        return cls(kind, expression)  # type: ignore[arg-type]

    def first(self, now: datetime) -> datetime:
        """The first occurrence at or after `now`."""
        if self.kind == "once":
            return _instant(self.expression)
        if self.kind == "interval":
            return now
        following: datetime = croniter(self.expression, (now - timedelta(seconds=1)).astimezone(UTC)).get_next(datetime)
        return following

    def after(self, occurrence: datetime) -> datetime | None:
        """The occurrence following `occurrence`; None when there is none."""
        if self.kind == "once":
            return None
        if self.kind == "interval":
            return occurrence + timedelta(seconds=int(self.expression))
        following: datetime = croniter(self.expression, occurrence.astimezone(UTC)).get_next(datetime)
        return following

    def next_after_now(self, occurrence: datetime, now: datetime) -> datetime | None:
        """The first occurrence after `occurrence` that is later than `now` (skipping missed ones)."""
        following = self.after(occurrence)
        if following is None or following > now:
            return following
        if self.kind == "interval":
            step = timedelta(seconds=int(self.expression))
            behind = (now - following) // step + 1
            return following + behind * step
        return self.after(now)


def _instant(text: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"once needs an ISO 8601 date and time with an offset: {text!r}") from None
    if instant.tzinfo is None:
        raise ScheduleError(f"once needs a time zone offset (e.g. Z or +01:00): {text!r}")
    return instant.astimezone(UTC)
