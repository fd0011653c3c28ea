"""Which databases each tenant has, kept by the agent, and the verbs on them: create (with its
user and a password answered once), rotate, drop; suspension locks them all, resumption unlocks
them, deleting the tenant drops them.

The agent's record (`<state_dir>/databases/<tenant>.json`, root 0600) lists names and engines,
never a password.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from wcp360.config.server import DatabasesConfig
from wcp360.system.credentials_file import credentials_text, write_credentials
from wcp360.system.databases import DatabaseFailed, DatabaseRefused, DatabaseServer, Engine, full_name, new_password
from wcp360.system.databases import servers as offered_servers
from wcp360.system.protocol import DatabaseHost, TenantHost
from wcp360.system.statefile import read_json, write_json


def _now() -> str:
    return datetime.now(UTC).isoformat()


class TenantDatabases:
    def __init__(self, config: DatabasesConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir / "databases"
        self.servers: dict[Engine, DatabaseServer] = offered_servers(config)

    def create(self, host: TenantHost, engine: Engine, part: str) -> DatabaseHost:
        tenant = host.name
        server = self._server(engine)
        name = full_name(tenant, part)
        kept = self._load(tenant)
        if any(entry["name"] == name and entry["engine"] == engine for entry in kept):
            raise DatabaseRefused(f"{tenant} has a {engine} database {part} already", "conflict")
        if len(kept) >= self.config.max_per_tenant:
            raise DatabaseRefused(
                f"{tenant} has {len(kept)} databases, the limit (tenants.databases.max_per_tenant)", "conflict"
            )
        password = new_password()
        server.create(name, password)  # refuses a name the server has; undoes itself when a step fails
        try:
            self._save(tenant, [*kept, {"engine": engine, "name": name, "rotated_at": _now()}])
            made = self._view(engine, name, password=password)
            self._deliver(host, made)
        except BaseException:
            server.drop(name)
            self._save(tenant, kept)
            raise
        return made

    def rotate(self, host: TenantHost, engine: Engine, part: str) -> DatabaseHost:
        name = self._existing(host.name, engine, part)
        return self._rotate(host, engine, name)

    def rotate_due(self, host: TenantHost, now: datetime | None = None) -> list[DatabaseHost]:
        """Rotate every database of the tenant whose password is older than password_max_age."""
        max_age = self.config.password_max_age
        if max_age is None:
            return []
        moment = now or datetime.now(UTC)
        due = [
            entry
            for entry in self._load(host.name)
            if moment - datetime.fromisoformat(entry.get("rotated_at", "1970-01-01T00:00:00+00:00")) >= max_age
        ]
        return [self._rotate(host, entry["engine"], entry["name"], moment) for entry in due]  # type: ignore[arg-type]

    def enforce_sizes(self, tenant: str) -> list[tuple[str, str, bool]]:
        """Restrict the databases over tenants.databases.max_size, give back those under it;
        (engine, database, over) of each change."""
        limit = self.config.max_size
        entries = self._load(tenant)
        changed: list[tuple[str, str, bool]] = []
        for entry in entries:
            engine: Engine = entry["engine"]  # type: ignore[assignment]
            over = limit is not None and self._server(engine).size(entry["name"]) > limit
            if over != bool(entry.get("over_size")):
                self._server(engine).restrict(entry["name"], over)
                entry["over_size"] = over  # type: ignore[assignment]
                changed.append((engine, entry["name"], over))
        if changed:
            self._save(tenant, entries)
        return changed

    def _rotate(self, host: TenantHost, engine: Engine, name: str, now: datetime | None = None) -> DatabaseHost:
        password = new_password()
        self._server(engine).rotate(name, password)
        stamp = (now or datetime.now(UTC)).isoformat()
        entries = self._load(host.name)
        for entry in entries:
            if entry["name"] == name and entry["engine"] == engine:
                entry["rotated_at"] = stamp
        self._save(host.name, entries)
        rotated = self._view(engine, name, password=password)
        self._deliver(host, rotated)
        return rotated

    def _deliver(self, host: TenantHost, made: DatabaseHost) -> None:
        """The tenant's applications read the current password from its home (not when the
        agent runs without root: development mode has no tenant users to own it)."""
        if os.geteuid() != 0 or made.password is None:
            return
        text = credentials_text(made.engine, made.database, made.user, made.password, made.socket)
        file = f"{made.engine}-{made.database.removeprefix(host.name.replace('-', '_') + '_')}.env"
        write_credentials(Path(host.home).parent, host.name, host.uid, host.gid, file, text)

    def drop(self, tenant: str, engine: Engine, part: str) -> DatabaseHost:
        """The database and its user; the credentials file stays with the home (the tenant's own)."""
        name = self._existing(tenant, engine, part)
        self._server(engine).drop(name)
        self._save(tenant, [e for e in self._load(tenant) if not (e["name"] == name and e["engine"] == engine)])
        return self._view(engine, name)

    def lock_all(self, tenant: str, locked: bool) -> list[str]:
        """Lock (suspension) or unlock every database user of the tenant; what could not be done.
        A PostgreSQL database over its size stays locked when the tenant is resumed."""
        failed = []
        for entry in self._load(tenant):
            if not locked and entry.get("over_size") and entry["engine"] == "postgresql":
                continue
            try:
                self._server(entry["engine"]).lock(entry["name"], locked)  # type: ignore[arg-type]
            except (DatabaseFailed, DatabaseRefused) as exc:
                failed.append(f"{entry['engine']} {entry['name']}: {exc}")
        return failed

    def drop_all(self, tenant: str) -> None:
        for entry in self._load(tenant):
            self._server(entry["engine"]).drop(entry["name"])  # type: ignore[arg-type]
        (self.state_dir / f"{tenant}.json").unlink(missing_ok=True)

    def listing(self, tenant: str, locked: bool) -> list[DatabaseHost]:
        """The tenant's databases with their sizes (None where the server does not answer)."""
        found = []
        for entry in self._load(tenant):
            engine: Engine = entry["engine"]  # type: ignore[assignment]
            view = self._view(engine, entry["name"])
            try:
                size: int | None = self._server(engine).size(entry["name"])
            except (DatabaseFailed, DatabaseRefused):
                size = None
            over = bool(entry.get("over_size"))
            found.append(view.model_copy(update={"size_bytes": size, "locked": locked, "over_size": over}))
        return found

    def socket_dirs(self) -> tuple[Path, ...]:
        """Where the offered servers' sockets are, for the tenants' jails (their apps connect)."""
        found = []
        for server in self.servers.values():
            location = Path(server.location)
            directory = location if location.is_dir() else location.parent
            if directory.is_dir() and directory not in found:
                found.append(directory)
        return tuple(found)

    def names(self, tenant: str) -> list[tuple[str, str]]:
        return [(entry["engine"], entry["name"]) for entry in self._load(tenant)]

    # -- helpers ---------------------------------------------------------------------------------

    def _server(self, engine: Engine) -> DatabaseServer:
        server = self.servers.get(engine)
        if server is None:
            raise DatabaseRefused(f"{engine} is not offered on this host (tenants.databases.{engine}.enabled)")
        return server

    def _existing(self, tenant: str, engine: Engine, part: str) -> str:
        name = full_name(tenant, part)
        if not any(e["name"] == name and e["engine"] == engine for e in self._load(tenant)):
            raise LookupError(f"{tenant} has no {engine} database {part}")
        return name

    def _view(self, engine: Engine, name: str, password: str | None = None) -> DatabaseHost:
        location = self.servers[engine].location
        return DatabaseHost(engine=engine, database=name, user=name, socket=location, password=password)

    def _load(self, tenant: str) -> list[dict[str, str]]:  # engine, name, rotated_at, over_size
        kept: list[dict[str, str]] = read_json(self.state_dir / f"{tenant}.json", [])
        return kept

    def _save(self, tenant: str, entries: list[dict[str, str]]) -> None:
        write_json(self.state_dir / f"{tenant}.json", entries)
