"""FairQueue, the policy that hands free workers to waiting runs, under random sequences of
requests, hand-backs and withdrawals: no worker is ever given to two runs or lost, a run that
prefers a worker (one that holds its module) gets one whenever one is idle, and a freed worker
goes to the waiting account holding the fewest."""

from __future__ import annotations

from concurrent.futures import Future

from hypothesis import given, settings
from hypothesis import strategies as st

from wcp360.workloads.engine.dispatch import FairQueue

WORKERS = 3
USERS = ("alice", "bob", "carol")

operations = st.lists(
    st.one_of(
        # request: (user, the workers it prefers)
        st.tuples(st.just("request"), st.sampled_from(USERS), st.frozensets(st.integers(0, WORKERS - 1))),
        st.tuples(st.just("give_back"), st.integers(0, 50), st.just(frozenset())),
        st.tuples(st.just("withdraw"), st.integers(0, 50), st.just(frozenset())),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_every_worker_is_idle_or_held_by_exactly_one_run(steps: list[tuple[str, object, frozenset[int]]]) -> None:
    queue: FairQueue[int] = FairQueue()
    for worker in range(WORKERS):
        queue.put(worker)
    idle = set(range(WORKERS))
    held: list[tuple[str, int]] = []  # (user, worker) for every run holding one
    waiting: list[tuple[str, Future[int]]] = []

    def settle() -> None:
        for user, future in list(waiting):
            if future.done():
                waiting.remove((user, future))
                held.append((user, future.result()))

    for kind, subject, prefers in steps:
        if kind == "request":
            assert isinstance(subject, str)
            before = set(idle)
            future = queue.request(subject, (lambda w, p=prefers: w in p) if prefers else None)
            if future.done():
                worker = future.result()
                assert worker in before
                if prefers & before:  # a preferred worker was idle: it is the one given
                    assert worker in prefers
                idle.discard(worker)
                held.append((subject, worker))
            else:
                assert not before, "a run waited while a worker was idle"
                waiting.append((subject, future))
        elif kind == "give_back" and held:
            assert isinstance(subject, int)
            user, worker = held.pop(subject % len(held))
            fewest = min((sum(1 for u, _ in held if u == w) for w, _ in waiting), default=None)
            queue.put(worker, user)
            settle()
            if fewest is None:
                idle.add(worker)
            else:
                taker = next(u for u, w in held if w == worker)
                assert sum(1 for u, _ in held if u == taker) - 1 == fewest, "not the account holding fewest"
        elif kind == "withdraw" and waiting:
            assert isinstance(subject, int)
            user, future = waiting[subject % len(waiting)]
            assert queue.withdraw(future)
            waiting.remove((user, future))
        given_out = [worker for _, worker in held]
        assert len(given_out) == len(set(given_out)), "a worker given to two runs"
        assert set(given_out) | idle == set(range(WORKERS)) and not set(given_out) & idle
        assert queue.waiting == len(waiting)
