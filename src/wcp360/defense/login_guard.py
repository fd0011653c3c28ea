"""Per-account brute-force protection that throttles attackers without locking the owner out.

Counted per source address and per username (fed by the IDS from login events):
- one (address, username) pair with `pair_failures` failures in the window is refused outright
  (the refusal counts as a failure, so the address-level IDS rule goes on to ban it);
- a username with `user_failures` failures from anywhere is "under attack": attempts from addresses
  that have not signed in to it successfully lately are delayed (growing, capped), and its owner is
  notified once per window; the owner's known address, with the right password and 2FA, gets through.
"""

from __future__ import annotations

from dataclasses import dataclass

from wcp360.config.ids import BruteForce
from wcp360.defense.ids import PAIR, SUCCESS_PAIR
from wcp360.defense.windows import Windows

KNOWN_ADDRESS_WINDOW = 30 * 86400.0


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
