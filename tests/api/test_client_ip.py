"""The client address: socket peer unless a trusted proxy, then X-Forwarded-For right to left."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from wcp360.api.client_ip import client_address

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


def test_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    assert client_address("203.0.113.9", "1.2.3.4", TRUSTED) == "203.0.113.9"


def test_trusted_proxy_chain_is_read_right_to_left() -> None:
    # The left end is attacker-chosen; the first untrusted hop from the right is the client.
    assert client_address("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.5", TRUSTED) == "198.51.100.7"


def test_no_trusted_proxies_means_no_header_is_read() -> None:
    assert client_address("10.0.0.2", "198.51.100.7", []) == "10.0.0.2"


def test_malformed_chain_falls_back_to_peer() -> None:
    assert client_address("10.0.0.2", "198.51.100.7, garbage", TRUSTED) == "10.0.0.2"


@given(st.lists(st.ip_addresses(v=4).map(str), max_size=5), st.ip_addresses(v=4).map(str))
def test_result_is_never_a_trusted_hop_unless_all_are(chain: list[str], peer: str) -> None:
    result = client_address(peer, ", ".join(chain), TRUSTED)
    assert result == peer or result in chain
