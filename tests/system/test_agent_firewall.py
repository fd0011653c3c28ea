"""Bans reach the kernel through the agent's `firewall.sync` (the panel holds no CAP_NET_ADMIN),
in a network namespace this test creates, never the host's ruleset."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.conftest import CapturingSink
from tests.defense.test_firewall import CLIENT, can_connect, listener, namespaces  # noqa: F401 - fixtures
from wcp360.config.server import FirewallConfig, TenantsConfig
from wcp360.defense.bans import parse_network
from wcp360.store.types import utcnow
from wcp360.system.client import InProcessAgent
from wcp360.system.dispatch import Dispatcher
from wcp360.system.firewall import AgentFirewall
from wcp360.system.host import HostAgent


def test_bans_go_through_the_agent_to_the_kernel(
    namespaces: tuple[str, str],  # noqa: F811
    listener: None,  # noqa: F811
    tmp_path: Path,
    audit_events: CapturingSink,
) -> None:
    server_ns, client_ns = namespaces
    good, bad = CLIENT
    host = HostAgent(TenantsConfig(home_root=tmp_path / "www"), FirewallConfig(netns=server_ns, ssh=False), tmp_path)
    firewall = AgentFirewall(InProcessAgent(Dispatcher(host)))
    assert firewall.apply().active, firewall.status.reason
    assert can_connect(client_ns, bad, 443) and not can_connect(client_ns, good, 8080)
    assert firewall.ban(parse_network(bad), utcnow() + timedelta(hours=1))
    assert not can_connect(client_ns, bad, 443) and can_connect(client_ns, good, 443)
    assert firewall.unban(parse_network(bad))
    assert can_connect(client_ns, bad, 443)
    syncs = audit_events.of("agent_firewall_sync")
    assert len(syncs) == 3 and all(e.channel == "agent" and e.outcome == "success" for e in syncs)
    assert syncs[1].details["arguments"] == {"bans": 1}
