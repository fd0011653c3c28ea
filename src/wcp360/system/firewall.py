"""The panel's firewall: every change to the ban list becomes one `firewall.sync` to the agent.

The panel runs without CAP_NET_ADMIN; the agent owns the nftables table. Each sync carries the
whole list of active bans (they are few: bans expire), so the agent's table is exactly the list
after every call, whatever calls were lost before it.
"""

from __future__ import annotations

import threading
from datetime import datetime

from wcp360.defense.firewall import FirewallStatus, Network
from wcp360.store.types import utcnow
from wcp360.system.client import AgentClient, AgentRefused, AgentUnavailable
from wcp360.system.protocol import Ban, FirewallState, FirewallSync


class AgentFirewall:
    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent
        self.status = FirewallStatus(False, "not applied yet")
        self._bans: dict[Network, datetime | None] = {}
        self._lock = threading.Lock()

    def apply(self) -> FirewallStatus:
        return self._sync()

    def ban(self, network: Network, expires_at: datetime | None) -> bool:
        with self._lock:
            self._bans[network] = expires_at
        return self._sync().active

    def unban(self, network: Network) -> bool:
        with self._lock:
            self._bans.pop(network, None)
        return self._sync().active

    def _sync(self) -> FirewallStatus:
        now = utcnow()
        with self._lock:
            self._bans = {n: e for n, e in self._bans.items() if e is None or e > now}
            bans = [
                Ban(network=n, expires_in=None if e is None else max(1, int((e - now).total_seconds())))
                for n, e in self._bans.items()
            ]
            try:
                state = self.agent.call(FirewallSync(bans=bans), "system")
            except (AgentRefused, AgentUnavailable) as exc:
                self.status = FirewallStatus(False, f"the agent did not apply it: {exc}")
                return self.status
            assert isinstance(state, FirewallState)
            self.status = FirewallStatus(state.active, state.reason)
            return self.status
