"""Kernel-level blocking with nftables: WCP360 owns exactly one table, `inet wcp360`.

The table is replaced atomically (one `nft -f` transaction: add, delete, define), so the host is
never left half-configured; bans are elements of two sets (IPv4, IPv6) with per-element timeouts,
added and removed one by one. Without CAP_NET_ADMIN (the unprivileged server) nothing here can run:
the application-level block still applies, and `status` says why the firewall is degraded.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from wcp360.config.server import FirewallConfig
from wcp360.store.types import utcnow

TABLE = "wcp360"
_log = structlog.get_logger("wcp360.firewall")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FirewallStatus:
    active: bool
    reason: str


def allowed_ports(config: FirewallConfig) -> list[int]:
    ports = {443}
    if config.http:
        ports.add(80)
    if config.ssh:
        ports.add(22)
    if config.mail:
        ports.update({25, 465, 587})
    ports.update(config.extra_tcp_ports)
    return sorted(ports)


def ruleset(config: FirewallConfig) -> str:
    ports = ", ".join(str(p) for p in allowed_ports(config))
    return f"""add table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
    set banned_v4 {{ type ipv4_addr; flags interval, timeout; }}
    set banned_v6 {{ type ipv6_addr; flags interval, timeout; }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ip saddr @banned_v4 drop
        ip6 saddr @banned_v6 drop
        ct state established,related accept
        ct state invalid drop
        meta l4proto {{ icmp, ipv6-icmp }} accept
        tcp dport {{ {ports} }} accept
    }}
}}
"""


class Firewall(Protocol):
    """What the ban list mirrors into: nftables in the system agent (the panel's `AgentFirewall`),
    or directly where the process may (the agent's own `NftFirewall`)."""

    status: FirewallStatus

    def apply(self) -> FirewallStatus: ...

    def ban(self, network: Network, expires_at: datetime | None) -> bool: ...

    def unban(self, network: Network) -> bool: ...


class NftFirewall:
    def __init__(self, config: FirewallConfig) -> None:
        self.config = config
        self.status = FirewallStatus(False, "not applied yet")

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        nft = shutil.which("nft")
        if nft is None:
            raise FileNotFoundError("nft is not installed (Debian package nftables)")
        command = [nft, *args]
        if self.config.netns:
            command = ["ip", "netns", "exec", self.config.netns, *command]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603

    def apply(self) -> FirewallStatus:
        """Install the table (replacing ours, never touching anything else)."""
        try:
            result = self._run(["-f", "-"], ruleset(self.config))
        except (OSError, subprocess.SubprocessError) as exc:
            self.status = FirewallStatus(False, str(exc))
        else:
            ok = result.returncode == 0
            reason = "applied" if ok else (result.stderr.strip().splitlines() or ["nft failed"])[-1]
            if not ok and "Operation not permitted" in result.stderr:
                reason = "no CAP_NET_ADMIN: bans are enforced by the application only"
            self.status = FirewallStatus(ok, reason)
        if not self.status.active:
            _log.warning("firewall degraded", reason=self.status.reason)
        return self.status

    def replace(self, bans: list[tuple[Network, int | None]]) -> FirewallStatus:
        """Install the table with exactly `bans` in its sets (seconds left, None: permanent), in one
        transaction: the system agent's `firewall.sync`."""
        elements = []
        for network, seconds in bans:
            family = "banned_v4" if network.version == 4 else "banned_v6"
            timeout = f" timeout {seconds}s" if seconds is not None else ""
            elements.append(f"add element inet {TABLE} {family} {{ {network}{timeout} }}")
        try:
            result = self._run(["-f", "-"], ruleset(self.config) + "\n".join(elements) + "\n")
        except (OSError, subprocess.SubprocessError) as exc:
            self.status = FirewallStatus(False, str(exc))
            return self.status
        ok = result.returncode == 0
        reason = "applied" if ok else (result.stderr.strip().splitlines() or ["nft failed"])[-1]
        if not ok and "Operation not permitted" in result.stderr:
            reason = "no CAP_NET_ADMIN: bans are enforced by the application only"
        self.status = FirewallStatus(ok, reason)
        return self.status

    def ban(self, network: Network, expires_at: datetime | None) -> bool:
        if not self.status.active:
            return False
        element = str(network)
        if expires_at is not None:
            element += f" timeout {max(1, int((expires_at - utcnow()).total_seconds()))}s"
        return self._element("add", network, element)

    def unban(self, network: Network) -> bool:
        return self.status.active and self._element("delete", network, str(network))

    def _element(self, verb: str, network: Network, element: str) -> bool:
        family = "banned_v4" if network.version == 4 else "banned_v6"
        result = self._run([verb, "element", "inet", TABLE, family, "{", element, "}"])
        if result.returncode != 0:
            _log.warning(
                "firewall element change failed", verb=verb, network=str(network), error=result.stderr.strip()[:200]
            )
        return result.returncode == 0

    def list_rules(self) -> str:
        return self._run(["list", "table", "inet", TABLE]).stdout
