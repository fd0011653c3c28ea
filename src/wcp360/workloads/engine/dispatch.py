"""Who runs next: how many runs one account may have in flight, and which waiting run gets the
next free worker.

One developer flooding runs (sixty runs sleeping in WASI `poll_oneoff`, from a session and two API
tokens) used to hold every worker and, through the threads waiting for them, the whole HTTP API.
Now:
- `Admission` counts an account's runs in flight (synchronous and queued, from every credential:
  the key is the account) against `sandbox.yml` `max_concurrent_runs_per_user`. A synchronous run
  over the limit is refused at once (429); a queued run over it waits in the account's backlog,
  holding no thread and no worker.
- `FairQueue` hands each worker that becomes free to the waiting run whose account holds the fewest
  workers, then whose account was served longest ago (round robin), then the oldest: a flood queues
  behind itself, not in front of others.
- Waiting is a Future: the API awaits it on the event loop (with `max_worker_wait`, then 503), so no
  thread of the shared pool is held while a run waits for a worker.
- Among idle workers, a run takes one that already holds its module (`prefers`): loading a large
  module's artifact costs a worker about 0.6 s for 33 MB (issue 18). Only idle workers are chosen this
  way: a run never waits for a particular worker, and fairness decides who gets a freed one.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from wcp360 import metrics
from wcp360.errors import ServiceBusy, TooManyRequests

T = TypeVar("T")


class RunLimitReached(TooManyRequests):
    code = "run-limit"
    title = "Too many runs in flight"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this account already has {limit} runs in flight (sandbox.yml max_concurrent_runs_per_user); "
            "wait for one to finish",
            headers={"Retry-After": "1"},
        )


class NoWorkerFree(ServiceBusy):
    code = "no-worker"
    title = "No sandbox worker free"

    def __init__(self, waited: float) -> None:
        super().__init__(
            f"no sandbox worker became free within {waited:g} s (sandbox.yml max_worker_wait); retry later",
            headers={"Retry-After": str(max(1, math.ceil(waited)))},
        )


@dataclass(eq=False)
class _Waiter(Generic[T]):
    user: str
    seq: int
    future: Future[T] = field(default_factory=Future)


class FairQueue(Generic[T]):
    """Idle items (workers) and the runs waiting for one, handed out fairly between accounts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: deque[T] = deque()
        self._waiters: list[_Waiter[T]] = []
        self._held: Counter[str] = Counter()
        self._served: dict[str, int] = {}  # account -> when it last got an item (a counter)
        self._order = itertools.count()

    def request(self, user: str, prefers: Callable[[T], bool] | None = None) -> Future[T]:
        """A future that completes with an item held for `user` (give it back with `put`); an idle
        item that `prefers` accepts first, if there is one."""
        waiter: _Waiter[T] = _Waiter(user, next(self._order))
        with self._lock:
            if self._idle:
                item = next((i for i in self._idle if prefers(i)), self._idle[0]) if prefers else self._idle[0]
                self._idle.remove(item)
                self._hold(user)
            else:
                self._waiters.append(waiter)
                metrics.EXECUTION_QUEUE.set(len(self._waiters))
                return waiter.future
        waiter.future.set_result(item)
        return waiter.future

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def withdraw(self, future: Future[T]) -> bool:
        """Stop waiting. False when the item was handed over meanwhile: the caller holds it then."""
        with self._lock:
            for waiter in self._waiters:
                if waiter.future is future:
                    self._waiters.remove(waiter)
                    metrics.EXECUTION_QUEUE.set(len(self._waiters))
                    return True
        return False

    def put(self, item: T, from_user: str | None = None) -> None:
        """`item` is free (given back by `from_user`, or new): to the fairest waiter, else idle."""
        with self._lock:
            self._release(from_user)
            waiter = min(
                self._waiters, key=lambda w: (self._held[w.user], self._served.get(w.user, -1), w.seq), default=None
            )
            if waiter is None:
                self._idle.append(item)
                return
            self._waiters.remove(waiter)
            metrics.EXECUTION_QUEUE.set(len(self._waiters))
            self._hold(waiter.user)
        try:
            waiter.future.set_result(item)  # outside the lock: its callbacks may start the run
        except InvalidStateError:  # the waiter was cancelled meanwhile: the next one gets it
            self.put(item, waiter.user)

    def drop(self, from_user: str) -> None:
        """`from_user` gave up an item that does not come back (a killed worker)."""
        with self._lock:
            self._release(from_user)

    def close(self, reason: BaseException) -> None:
        """Fail every waiter (the pool is closing: nothing will be handed out again)."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
            self._idle.clear()
            metrics.EXECUTION_QUEUE.set(0)
        for waiter in waiters:
            waiter.future.set_exception(reason)

    def _hold(self, user: str) -> None:
        self._held[user] += 1
        self._served[user] = next(self._order)
        if len(self._served) > 10_000:  # forget accounts served long ago (they sort first anyway)
            for old in sorted(self._served, key=self._served.__getitem__)[:5_000]:
                del self._served[old]

    def _release(self, user: str | None) -> None:
        if user is not None:
            self._held[user] -= 1
            if self._held[user] <= 0:
                del self._held[user]


class Admission:
    """Runs in flight per account; queued runs past the limit wait in the account's backlog."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._backlog: dict[str, deque[Callable[[], None]]] = {}

    def enter(self, user: str) -> None:
        """A synchronous run: in flight now, or RunLimitReached."""
        with self._lock:
            if self._in_flight[user] >= self.limit:
                raise RunLimitReached(self.limit)
            self._in_flight[user] += 1

    def enter_or_wait(self, user: str, start: Callable[[], None]) -> None:
        """A queued run: `start()` now if the account is under its limit, else when a run of its ends."""
        with self._lock:
            if self._in_flight[user] >= self.limit:
                self._backlog.setdefault(user, deque()).append(start)
                return
            self._in_flight[user] += 1
        start()

    def leave(self, user: str) -> None:
        with self._lock:
            waiting = self._backlog.get(user)
            if waiting:
                start = waiting.popleft()  # the slot passes straight to the account's next run
                if not waiting:
                    del self._backlog[user]
            else:
                self._in_flight[user] -= 1
                if self._in_flight[user] <= 0:
                    del self._in_flight[user]
                return
        start()

    def in_flight(self, user: str) -> int:
        with self._lock:
            return self._in_flight[user]

    def drain_backlog(self) -> list[Callable[[], None]]:
        """Every run still waiting for a slot (closing: they will not start)."""
        with self._lock:
            starts = [start for waiting in self._backlog.values() for start in waiting]
            self._backlog.clear()
            return starts
