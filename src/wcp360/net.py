"""Small address helpers shared by the config, the listener and the API."""

from __future__ import annotations

import ipaddress


def parse_listen(value: str) -> tuple[str, int]:
    """Split "HOST:PORT" or "[V6]:PORT" into host and port, with a clear error."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"invalid listen address {value!r}: expected HOST:PORT")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port} in {value!r}")
    return host.strip("[]"), port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
