"""A site's domain names: one spelling for each (IDNA 2008 with UTS #46 mapping, lower case, no
trailing dot), and only names a certificate authority could certify.

The ASCII form is what nginx's `server_name`, the ACME order and the agent's record hold, so
`Bücher.example`, `xn--bcher-kva.example` and `BÜCHER.EXAMPLE.` are one name and can belong to
one tenant only. Everything that reaches nginx's configuration is a run of [a-z0-9.-]: nothing
in a name can end a directive.
"""

from __future__ import annotations

import ipaddress
import re

import idna

MAX_LENGTH = 253
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class DomainRefused(ValueError):
    pass


def normalise(text: str) -> str:
    """The ASCII (A-label) form of `text`, or DomainRefused saying why not."""
    name = text.strip().rstrip(".")
    if not name:
        raise DomainRefused("a domain name is needed")
    if "*" in name:
        raise DomainRefused(f"{_shown(text)}: wildcard names are not issued over HTTP-01")
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise DomainRefused(f"{_shown(text)} is an address, not a domain name")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise DomainRefused(f"{_shown(text)} is not a valid domain name ({exc})") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_LENGTH or len(labels) < 2:
        raise DomainRefused(
            f"{_shown(text)}: a domain name has at least two labels and at most {MAX_LENGTH} characters"
        )
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise DomainRefused(f"{_shown(text)} is not a valid domain name (letters, digits and inner hyphens only)")
    return ascii_name


def _shown(text: str) -> str:
    """The name as given, made safe to repeat in an error (a terminal, a log line)."""
    return repr(text[:80])
