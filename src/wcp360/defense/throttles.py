"""Temporarily reduced rate limits for actors an IDS `throttle` rule singled out."""

from __future__ import annotations

import threading
import time
from datetime import timedelta


class Throttles:
    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, subject: str, duration: timedelta) -> None:
        with self._lock:
            self._until[subject] = time.monotonic() + duration.total_seconds()

    def factor_for(self, *subjects: str | None) -> float:
        now = time.monotonic()
        for subject in subjects:
            if subject is not None and self._until.get(subject, 0.0) > now:
                return self.factor
        return 1.0
