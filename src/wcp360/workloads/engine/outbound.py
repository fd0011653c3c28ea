"""Outbound HTTP for modules granted `network_access`: only to their `allowed_hosts`.

Modules call the host function `wcp360.http_get`. Workers never open sockets (they are confined);
they pass the URL to the pool in the API process, which checks it here and fetches:

- the scheme, host and port must match an `allowed_hosts` entry: `host` means https on 443,
  `http://host` or `https://host:8443` say otherwise;
- the address is resolved once and that address is connected to (no second lookup for a DNS
  rebinding to change); loopback, private, link-local and other non-global addresses are refused
  unless the entry names that IP address itself;
- redirects are not followed (the module sees the 3xx and can ask again, through the same check);
- a timeout and a response size cap bound what one call can cost.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class OutboundDenied(Exception):
    """The URL is not one this module may reach."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Allowed:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, entry: str) -> Allowed:
        text = entry.strip().lower()
        parts = urlsplit(text if "://" in text else f"https://{text}")
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"allowed_hosts entry must be host, host:port or scheme://host[:port]: {entry!r}")
        return cls(parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])


def check(url: str, allowed_hosts: list[str]) -> Target:
    """The target of `url` if an allowed_hosts entry matches its scheme, host and port."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise OutboundDenied(f"not an http(s) URL: {url[:200]!r}")
    if parts.username or parts.password:
        raise OutboundDenied("credentials in URLs are not allowed")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise OutboundDenied(f"bad port in {url[:200]!r}") from None
    target = Target(
        parts.scheme, parts.hostname.lower(), port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    )
    for entry in allowed_hosts:
        if Allowed.parse(entry) == Allowed(target.scheme, target.host, target.port):
            return target
    raise OutboundDenied(f"{target.scheme}://{target.host}:{target.port} is not in allowed_hosts")


def resolve(target: Target) -> str:
    """The address to connect to; non-global addresses only when the entry was that literal IP."""
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        return str(literal)  # listed as an IP literal: the administrator chose this address
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundDenied(f"cannot resolve {target.host}: {exc.strerror}") from None
    address = str(infos[0][4][0])
    if not ipaddress.ip_address(address).is_global:
        raise OutboundDenied(f"{target.host} resolves to a non-public address ({address})")
    return address


def fetch(url: str, allowed_hosts: list[str], timeout: float = 10.0, limit: int = 1024**2) -> tuple[int, bytes]:
    """GET `url` after the checks above; returns (status, at most `limit` bytes of body)."""
    target = check(url, allowed_hosts)
    address = resolve(target)
    sock = socket.create_connection((address, target.port), timeout=timeout)
    try:
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        connection.sock = sock  # the checked address, not a second lookup
        connection.request("GET", target.path, headers={"User-Agent": "wcp360-module", "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read(limit)
    finally:
        sock.close()
