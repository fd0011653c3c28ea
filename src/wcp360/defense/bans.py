"""Bans: persisted in the database (they survive restarts; the CLI and every server see the same
set), enforced per request from an in-memory view refreshed every `refresh_seconds` and at once
after a local change, and mirrored to the firewall when one is attached."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, or_, select

from wcp360 import audit
from wcp360.authz import Policy, Principal
from wcp360.config.ids import BanEscalation
from wcp360.defense.views import BanView
from wcp360.errors import InvalidInput, NotFound
from wcp360.store.database import Database
from wcp360.store.models import Ban
from wcp360.store.scope import NOBODY, SYSTEM
from wcp360.store.types import utcnow

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: str) -> Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise InvalidInput(f"not an IP address or network: {value!r}") from None


@dataclass(frozen=True)
class ActiveBan:
    network: Network
    expires_at: datetime | None
    reason: str


def _inside(network: Network, container: Network) -> bool:
    return network.version == container.version and network.subnet_of(container)  # type: ignore[arg-type]


def ban_view(ban: Ban) -> BanView:
    return BanView(
        id=str(ban.id),
        network=ban.network,
        reason=ban.reason,
        rule=ban.rule,
        created_by=ban.created_by,
        created_at=ban.created_at.isoformat(),
        expires_at=ban.expires_at.isoformat() if ban.expires_at else None,
    )


_log = structlog.get_logger("wcp360.bans")


class BanList:
    def __init__(
        self,
        db: Database,
        policy: Policy,
        escalation: BanEscalation,
        whitelist: list[Network],
        refresh_seconds: float = 2.0,
    ) -> None:
        self.db = db
        self.policy = policy
        self.escalation = escalation
        self.whitelist = whitelist
        self.refresh_seconds = refresh_seconds
        self._active: list[ActiveBan] = []
        self.loaded_at = 0.0
        self._lock = threading.Lock()
        # Called with (network, expires_at) / (network) so a firewall can mirror the list.
        self.on_ban: list[Callable[[Network, datetime | None], object]] = []
        self.on_unban: list[Callable[[Network], object]] = []
        self._reloading = threading.Lock()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def mirror(
        self, on_ban: Callable[[Network, datetime | None], object], on_unban: Callable[[Network], object]
    ) -> None:
        """Tell `on_ban`/`on_unban` of every ban from now on, starting with all active ones."""
        with self._lock:
            self.on_ban.append(on_ban)
            self.on_unban.append(on_unban)
            self._active = []  # so the next reload reports every active ban as new
        self.reload()

    def refresh_if_stale(self) -> None:
        """Never blocks a request: a stale view is reloaded on a thread of its own (at most one at a
        time) while requests go on against the current view."""
        if time.monotonic() - self.loaded_at <= self.refresh_seconds or not self._reloading.acquire(blocking=False):
            return

        def reload_once() -> None:
            try:
                self.reload()
            except Exception as exc:  # the database is away: the next request tries again
                _log.warning("ban list reload failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            finally:
                self._reloading.release()

        threading.Thread(target=reload_once, name="ban-reload", daemon=True).start()

    def start_refresher(self) -> None:
        """Reload every `refresh_seconds` whether or not requests come (the firewall must mirror a
        ban made by the CLI or another server on an idle server too)."""

        def refresh() -> None:
            while not self._stop.wait(self.refresh_seconds):
                self.refresh_if_stale()

        self._refresher = threading.Thread(target=refresh, name="ban-refresher", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        self._stop.set()

    # -- enforcement ---------------------------------------------------------------------

    def banned(self, address: str | None) -> ActiveBan | None:
        """The active ban covering `address`, from the view last loaded (see `reload`)."""
        if address is None:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        now = utcnow()
        for ban in self._active:
            if ip in ban.network and (ban.expires_at is None or ban.expires_at > now):
                return ban
        return None

    def whitelisted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address) if address else None
        except ValueError:
            return False
        return ip is not None and any(ip in network for network in self.whitelist)

    def reload(self) -> None:
        now = utcnow()
        with self.db.transaction(NOBODY, readonly=True) as s:
            rows = s.execute(
                select(Ban.network, Ban.expires_at, Ban.reason).where(
                    Ban.lifted_at.is_(None), or_(Ban.expires_at.is_(None), Ban.expires_at > now)
                )
            ).all()
        fresh = [ActiveBan(ipaddress.ip_network(r.network), r.expires_at, r.reason) for r in rows]
        with self._lock:
            before = {b.network: b for b in self._active}
            self._active = fresh
            self.loaded_at = time.monotonic()
        # Mirror changes made by any process (this one, the CLI, another server) to the firewall.
        after = {b.network: b for b in fresh}
        for network, added in after.items():
            if network not in before:
                for on_ban in self.on_ban:
                    on_ban(network, added.expires_at)
        for network, gone in before.items():
            if network not in after and (gone.expires_at is None or gone.expires_at > now):
                for on_unban in self.on_unban:
                    on_unban(network)

    # -- management (CLI, API, IDS) -------------------------------------------------------

    def list(self, actor: Principal) -> list[BanView]:
        self.policy.require(actor, ("system:bans", "bans:read"))
        now = utcnow()
        with self.db.transaction(NOBODY, readonly=True) as s:
            rows = s.scalars(
                select(Ban)
                .where(Ban.lifted_at.is_(None), or_(Ban.expires_at.is_(None), Ban.expires_at > now))
                .order_by(Ban.created_at)
            ).all()
            return [ban_view(b) for b in rows]

    def block(
        self,
        actor: Principal | None,
        target: str,
        duration: timedelta | None,
        reason: str,
        rule: str | None = None,
        escalate: bool = False,
    ) -> BanView:
        """Ban an address or network. `actor` None means the IDS itself (already authorised)."""
        if actor is not None:
            self.policy.require(actor, ("system:bans", "bans:create"))
        network = parse_network(target)
        if any(_inside(network, w) for w in self.whitelist):
            raise InvalidInput(f"{network} is whitelisted in rate_limit.yml and cannot be banned")
        reason = reason.strip()[:256] or "no reason given"
        with self.db.transaction(SYSTEM) as s:
            if escalate and duration is not None:
                duration = self._escalated(s, str(network), duration)
            expires = utcnow() + duration if duration is not None else None
            ban = Ban(
                network=str(network),
                reason=reason,
                rule=rule,
                expires_at=expires,
                created_by=actor.actor_label if actor else f"ids:{rule}",
            )
            s.add(ban)
            s.flush()
            view = ban_view(ban)
            audit.record(
                "ip_block",
                actor=actor,
                actor_id=None if actor else "ids",
                resource_type="ip",
                resource_id=str(network),
                details={"reason": reason, "rule": rule, "expires_at": view.expires_at},
            )
        self.reload()
        return view

    def unblock(self, actor: Principal, target: str) -> int:
        self.policy.require(actor, ("system:bans", "bans:delete"))
        network = parse_network(target)
        with self.db.transaction(SYSTEM) as s:
            rows = s.scalars(select(Ban).where(Ban.network == str(network), Ban.lifted_at.is_(None))).all()
            if not rows:
                raise NotFound(f"{network} is not banned")
            for ban in rows:
                ban.lifted_at = utcnow()
                ban.lifted_by = actor.actor_label
            audit.record(
                "ip_unblock",
                actor=actor,
                resource_type="ip",
                resource_id=str(network),
                details={"bans_lifted": len(rows)},
            )
        self.reload()
        return len(rows)

    def _escalated(self, s: Any, network: str, base: timedelta) -> timedelta:
        since = utcnow() - self.escalation.lookback
        previous = (
            s.scalar(select(func.count()).select_from(Ban).where(Ban.network == network, Ban.created_at >= since)) or 0
        )
        scaled = base * (self.escalation.factor**previous)
        return min(scaled, max(base, self.escalation.max_duration))
