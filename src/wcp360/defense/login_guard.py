"""Per-account brute-force protection that throttles attackers without locking the owner out.

Counted per source address and per username (fed by the IDS from login events):
- one (address, username) pair with `pair_failures` failures in the window is refused outright
  (the refusal counts as a failure, so the address-level IDS rule goes on to ban it);
- a username with `user_failures` failures from anywhere is "under attack": attempts from addresses
  that have not signed in to it successfully lately are delayed (growing, capped), and its owner is
  notified once per window; the owner's known address, with the right password and 2FA, gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from wcp360.config.ids import BruteForce
from wcp360.defense.ids import PAIR, SUCCESS_PAIR
from wcp360.defense.windows import Windows
from wcp360.errors import ServiceBusy

KNOWN_ADDRESS_WINDOW = 30 * 86400.0
T = TypeVar("T")


def _lower_priority() -> None:
    # Linux schedules threads as tasks: nice this one thread only. Lowering needs no privilege.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


@dataclass(frozen=True)
class Guard:
    refused: bool
    delay: float
    retry_after: float
    under_attack: bool


class LoginGuard:
    def __init__(self, windows: Windows, settings: BruteForce) -> None:
        self.windows = windows
        self.settings = settings
        slots = settings.max_concurrent_checks or max(1, (os.cpu_count() or 2) // 2)
        self.slots = asyncio.Semaphore(slots)
        self.waiting = 0
        # Password checks run on their own threads at a lower CPU priority, so a flood of guesses
        # yields the CPU to every other request instead of competing with it.
        self.executor = ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix="password-check", initializer=_lower_priority
        )

    async def run_check(self, function: Callable[..., T], *args: Any) -> T:
        """Run a password check on the low-priority executor, keeping the request's context."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(context.run, function, *args))

    @contextlib.asynccontextmanager
    async def password_check_slot(self) -> AsyncIterator[None]:
        """Bound the CPU spent on password hashing; refuse when too many are already queued."""
        if self.slots.locked() and self.waiting >= self.settings.max_waiting:
            raise ServiceBusy("too many sign-ins in progress; retry shortly", headers={"Retry-After": "1"})
        self.waiting += 1
        entered = False
        try:
            async with self.slots:
                self.waiting -= 1
                entered = True
                yield
        finally:
            if not entered:
                self.waiting -= 1  # cancelled while queued

    def check(self, address: str | None, username: str) -> Guard:
        window = self.settings.window.total_seconds()
        name = username.strip().lower()
        pair = f"{address}|{name}"
        if self.windows.count(PAIR, pair, window) >= self.settings.pair_failures:
            return Guard(True, 0.0, window, False)
        failures = self.windows.count("failed_logins_for_user", name, window)
        if failures < self.settings.user_failures:
            return Guard(False, 0.0, 0.0, False)
        if self.windows.count(SUCCESS_PAIR, pair, KNOWN_ADDRESS_WINDOW):
            return Guard(False, 0.0, 0.0, True)
        excess = failures - self.settings.user_failures
        delay = min(self.settings.max_delay.total_seconds(), 0.25 * 2 ** min(excess, 10))
        return Guard(False, delay, 0.0, True)
