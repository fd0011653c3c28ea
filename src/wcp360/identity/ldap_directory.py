"""Sign-in against an LDAP directory (seed 003 `type: ldap`), with ldap3.

The usual three steps, each guarded: bind as the service account; search `user_base` with
`user_filter`, the username escaped (RFC 4515) so `*)(uid=*` is a name, not a filter; bind as the
entry found, with the person's password. An empty password is refused before anything is sent:
to most directories an empty simple bind is an anonymous bind, and it "succeeds".

Connections are TLS (ldaps:// or StartTLS) verified against `ca_file` or the system's CAs unless
the config says `insecure` or the server is on loopback. A connection is opened per check: a
sign-in is rare next to everything else the API does, and no bound connection lingers.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from wcp360.config.security import LdapSettings
from wcp360.errors import ProviderUnavailable, Unauthorized
from wcp360.identity.external import ExternalProfile

INVALID_CREDENTIALS = "invalid username or password"
# What a directory's administrator lock looks like (OpenLDAP ppolicy).
_LOCKED = "pwdAccountLockedTime"


@dataclass(frozen=True)
class DirectoryEntry:
    dn: str
    subject: str
    username: str
    email: str | None
    locked: bool


class Directory:
    def __init__(self, name: str, settings: LdapSettings) -> None:
        self.name = name
        self.settings = settings
        self.issuer = f"ldap:{name}"
        parts = urlsplit(settings.server)
        self.ldaps = parts.scheme == "ldaps"
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
        )
        self.server = ldap3.Server(
            parts.hostname or "",
            port=parts.port,
            use_ssl=self.ldaps,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=max(1, int(settings.timeout.total_seconds())),
        )

    # -- sign-in ---------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> ExternalProfile:
        if not password:
            raise Unauthorized(INVALID_CREDENTIALS)  # an empty simple bind is an anonymous bind
        with self._service() as connection:
            entry = self._find(connection, username)
            groups = self._groups(connection, entry.dn) if entry is not None and not entry.locked else ()
            # The person's bind on the same connection (one TLS handshake, not two). For an unknown
            # or locked name, a bind like a real one, so the answer comes no faster.
            dn = (
                entry.dn
                if entry is not None and not entry.locked
                else f"cn={secrets.token_hex(8)},{self.settings.user_base}"
            )
            if not connection.rebind(user=dn, password=password) or entry is None or entry.locked:
                raise Unauthorized(INVALID_CREDENTIALS)
        return ExternalProfile(
            provider=self.name,
            issuer=self.issuer,
            subject=entry.subject,
            username=entry.username,
            email=entry.email,
            groups=groups,
            external_name=entry.username,
        )

    def still_present(self, username: str, subject: str) -> bool:
        """Whether the person signed in as `username` is still in the directory, the same entry,
        and not locked: the recheck sweep ends the sessions of those who are not."""
        with self._service() as service:
            entry = self._find(service, username)
        return entry is not None and entry.subject == subject and not entry.locked

    def check(self) -> str:
        """Doctor: bind as the service account over the configured transport; what it found."""
        with self._service():
            pass
        transport = "ldaps" if self.ldaps else ("StartTLS" if self.settings.start_tls else "plain (no TLS)")
        return f"service bind to {self.settings.server} over {transport}"

    # -- helpers ---------------------------------------------------------------------------

    def _connection(self, user: str, password: str) -> ldap3.Connection:
        return ldap3.Connection(
            self.server,
            user=user,
            password=password,
            read_only=True,
            # ldap3 packs it into SO_RCVTIMEO: whole seconds.
            receive_timeout=max(1, int(self.settings.timeout.total_seconds())),
            raise_exceptions=False,
        )

    def _open(self, connection: ldap3.Connection) -> bool:
        """Connect, StartTLS when configured, bind; False when the directory refused the bind."""
        connection.open()
        # ldap3 leaves Nagle on: the first request after StartTLS then waits out the peer's
        # delayed ACK, 43 ms per connection here; with it off (and one connection, not two) a
        # directory sign-in went from 100 ms to 7 ms (benchmarks/bench_identity.py).
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.ldaps and self.settings.start_tls:
            connection.start_tls()
        return bool(connection.bind())

    @contextlib.contextmanager
    def _service(self) -> Iterator[ldap3.Connection]:
        """A connection bound as the service account, unbound when the block ends."""
        connection = self._connection(self.settings.bind_dn, self._bind_password())
        try:
            if not self._open(connection):
                raise ProviderUnavailable(f"the directory {self.name} refused the service account's bind")
            yield connection
        except LDAPException as error:
            raise self._unavailable(error) from None
        finally:
            _close(connection)

    def _unavailable(self, error: LDAPException) -> ProviderUnavailable:
        # The exception's class says what failed (socket, TLS, timeout); its text may hold the DN.
        return ProviderUnavailable(f"the directory {self.name} did not answer: {type(error).__name__}")

    def _find(self, service: ldap3.Connection, username: str) -> DirectoryEntry | None:
        settings = self.settings
        query = settings.user_filter.replace("%s", escape_filter_chars(username.strip()))
        attributes = [settings.id_attribute, settings.username_attribute, settings.email_attribute, _LOCKED]
        service.search(settings.user_base, query, ldap3.SUBTREE, attributes=attributes, size_limit=2)
        # Exactly one entry, or nobody: two matches mean the filter is too loose to trust.
        if len(service.entries) != 1:
            return None
        found = service.entries[0]
        values = found.entry_attributes_as_dict
        subject = _first(values.get(settings.id_attribute))
        if not subject:
            return None
        return DirectoryEntry(
            dn=found.entry_dn,
            subject=subject,
            username=_first(values.get(settings.username_attribute)) or username.strip(),
            email=_first(values.get(settings.email_attribute)),
            locked=bool(values.get(_LOCKED)),
        )

    def _groups(self, service: ldap3.Connection, dn: str) -> tuple[str, ...]:
        if not self.settings.group_base:
            return ()
        query = self.settings.group_filter.replace("%s", escape_filter_chars(dn))
        service.search(self.settings.group_base, query, ldap3.SUBTREE, attributes=["cn"])
        names: set[str] = set()
        for group in service.entries:
            names.add(group.entry_dn.lower())
            names.update(str(cn).lower() for cn in group.entry_attributes_as_dict.get("cn", []))
        return tuple(sorted(names))

    def _bind_password(self) -> str:
        settings = self.settings
        if settings.bind_password_file is not None:
            return settings.bind_password_file.read_text().strip()
        assert settings.bind_password is not None
        return settings.bind_password.get_secret_value()


def _close(connection: ldap3.Connection) -> None:
    # After a failed StartTLS or a dropped connection there is nothing left to unbind.
    with contextlib.suppress(LDAPException, OSError):
        connection.unbind()


def _first(values: object) -> str | None:
    if isinstance(values, list) and values:
        return str(values[0])
    return None
