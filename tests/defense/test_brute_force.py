"""Brute force over HTTP: one client guessing, and many addresses guessing one account."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import problem_of
from tests.defense.conftest import from_
from tests.helpers import HOST, STRONG, make_user, signed_in
from wcp360.audit.setup import audit_file
from wcp360.audit.tail import iter_events
from wcp360.runtime import Runtime


def test_scripted_guessing_ends_blocked_after_the_fifth_failure(web: TestClient, defended: Runtime) -> None:
    make_user(defended, "victim", ["viewer"])
    guesses = [f"Guess!{i:04d}xYz" for i in range(200)]
    guesses[150] = STRONG  # the right password is in the list: it must never get through
    statuses = [
        web.post(
            "/api/v1/auth/login", json={"username": "victim", "password": g}, headers=from_("198.51.100.7")
        ).status_code
        for g in guesses
    ]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429  # the sixth attempt is refused, and counted
    assert set(statuses[6:]) == {403}  # then the address is banned on every route
    assert 200 not in statuses
    assert web.get("/healthz", headers=from_("198.51.100.7")).status_code == 403
    bans = defended.defense.bans.list(HOST)
    assert [(b.network, b.rule) for b in bans] == [("198.51.100.7/32", "brute_force_login")]
    # The owner, from elsewhere, is not locked out.
    ok = web.post("/api/v1/auth/login", json={"username": "victim", "password": STRONG}, headers=from_("198.51.100.8"))
    assert ok.status_code == 200


def test_distributed_guessing_is_throttled_but_the_owner_gets_through(web: TestClient, defended: Runtime) -> None:
    owner = signed_in(web, defended, "target", ["developer"], with_totp=True)
    assert owner.device is not None
    home = "198.51.100.200"
    good = web.post(
        "/api/v1/auth/login",
        json={"username": "target", "password": STRONG, "totp": owner.device.code()},
        headers=from_(home),
    )
    assert good.status_code == 200
    # Twelve addresses, one wrong guess each: no single address trips the per-address rule.
    for i in range(12):
        response = web.post(
            "/api/v1/auth/login",
            json={"username": "target", "password": f"Wrong!{i}abcdefg"},
            headers=from_(f"203.0.113.{i + 1}"),
        )
        assert response.status_code in (401, 429), problem_of(response)
    guard = defended.defense.guard
    attacker = guard.check("203.0.113.99", "target")
    assert attacker.under_attack and attacker.delay > 0 and not attacker.refused
    assert not defended.defense.bans.list(HOST)  # throttled, nobody banned (and nobody locked out)
    directory, name, _ = audit_file(defended.config)
    assert any(e["action"] == "account_under_attack" for e in iter_events(directory, name))
    # The owner's known address with the right password and second factor is not slowed.
    home_guard = guard.check(home, "target")
    assert home_guard.under_attack and home_guard.delay == 0 and not home_guard.refused
    again = web.post(
        "/api/v1/auth/login",
        json={"username": "target", "password": STRONG, "totp": owner.device.code()},
        headers=from_(home),
    )
    assert again.status_code == 200


def test_password_checks_are_bounded_and_the_queue_too() -> None:
    import asyncio

    from wcp360.config.ids import BruteForce
    from wcp360.defense.login_guard import LoginGuard
    from wcp360.defense.windows import MemoryWindows
    from wcp360.errors import ServiceBusy

    guard = LoginGuard(MemoryWindows(), BruteForce(max_concurrent_checks=2, max_waiting=3))
    running = 0
    peak = 0
    outcomes: list[str] = []

    async def attempt(release: asyncio.Event) -> None:
        nonlocal running, peak
        try:
            async with guard.password_check_slot():
                running += 1
                peak = max(peak, running)
                await release.wait()
                running -= 1
            outcomes.append("checked")
        except ServiceBusy:
            outcomes.append("busy")

    async def main() -> None:
        release = asyncio.Event()
        tasks = [asyncio.create_task(attempt(release)) for _ in range(8)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert peak == 2
    assert outcomes.count("busy") == 3 and outcomes.count("checked") == 5  # 2 running + 3 waiting
    assert guard.waiting == 0
