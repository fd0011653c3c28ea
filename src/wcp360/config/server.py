"""`wcp360.yml`: mode, listener, paths and HTTP limits of this installation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from wcp360.config.base import ByteSize, ConfigPath, Duration, Network, Section
from wcp360.config.websites import WebsitesConfig


class Paths(Section):
    data_dir: ConfigPath = Path("/var/lib/wcp360")
    log_dir: ConfigPath | None = None  # default: <data_dir>/log
    run_dir: ConfigPath = Path("/run/wcp360")


class HttpConfig(Section):
    max_body_size: ByteSize = 1024**2
    # Per-route overrides, e.g. uploads: {"/api/v1/modules": "64MiB"}. `*` matches one segment.
    body_limits: dict[str, ByteSize] = {"/api/v1/modules": 100 * 1000**2}
    # A connection whose request headers are not complete this long after it opened (or after its
    # previous response) is closed: slow-header clients (slowloris) cannot hold connections.
    header_timeout: Duration = timedelta(seconds=10)
    # Open connections per client address; more are closed at once.
    max_connections_per_address: int = Field(default=64, ge=1)


class MetricsConfig(Section):
    # Scrapers at these addresses may read /metrics without a token; everyone else needs metrics:read.
    allow_from: list[Network] = []


class FirewallConfig(Section):
    """The nftables table WCP360 owns (seed 000 "NFTables Integration", seed 001 firewall ports).

    Opt-in: it sets the host's input policy to drop. 443 is always open; loopback and
    established connections are allowed; everything else is dropped."""

    enabled: bool = False
    http: bool = True  # 80, for the HTTPS redirect and ACME
    ssh: bool = True  # 22
    mail: bool = False  # 25, 465, 587
    extra_tcp_ports: list[int] = []
    # Apply inside this network namespace instead of the host's (tests, containers).
    netns: str | None = None


class SchedulerConfig(Section):
    """Scheduled module runs (tasks). Every server process runs a scheduler; they share the work
    through the database (each occurrence is claimed by exactly one)."""

    enabled: bool = True
    tick: Duration = timedelta(seconds=1)
    # Occurrences claimed per tick and process.
    batch: int = Field(default=16, ge=1, le=1000)
    # Scheduled runs of one user queued or running at once, across all processes.
    max_concurrent_per_user: int = Field(default=2, ge=1, le=1000)
    # The shortest `interval` a task may have.
    min_interval: Duration = timedelta(seconds=1)
    # An occurrence later than this was missed (no scheduler was running): the task's `missed`
    # policy decides whether it is skipped or run once.
    missed_after: Duration = timedelta(seconds=60)


class AgentConfig(Section):
    """The system tier (seed 000 "Three-Tier Domain Separation"): `wcp360 agent`, root, the only
    process that does privileged work, reached over a Unix socket."""

    socket: ConfigPath = Path("/run/wcp360/agent.sock")
    # `socket`: always the agent at `socket` (production); `in_process`: the panel does the
    # agent's work itself, with what its own privileges allow (development); `auto`: the socket
    # when an agent listens there, else in process (doctor says which, and what is degraded).
    mode: Literal["auto", "socket", "in_process"] = "auto"
    # Where the agent keeps its own state (tenant limits); root 0700.
    state_dir: ConfigPath = Path("/var/lib/wcp360-agent")


class TenantLimits(Section):
    """Per-tenant limits, stored with the tenant and enforced by its jail (cgroups, quotas)."""

    disk: ByteSize = 10 * 1024**3
    processes: int = Field(default=256, ge=1, le=65536)
    memory: ByteSize = 1024**3
    cpu_percent: int = Field(default=100, ge=1, le=100_000)  # 100 = one full CPU
    io_weight: int = Field(default=100, ge=1, le=10_000)


class ProcessesConfig(Section):
    """Tenants' supervised processes (PHP-FPM pools, Node apps): how many, restarts, logs."""

    max_per_tenant: int = Field(default=8, ge=0, le=256)
    # A process that exits is started again after restart_delay, doubling each time it exits
    # within stable_after of its start, up to restart_max_delay; after max_quick_exits such exits
    # in a row it is left `failed` until someone starts it again.
    restart_delay: Duration = timedelta(seconds=1)
    restart_max_delay: Duration = timedelta(seconds=60)
    stable_after: Duration = timedelta(seconds=30)
    max_quick_exits: int = Field(default=10, ge=1)
    # Its output goes to logs/<name>.log in the tenant's home, rotated at log_max_size, log_keep kept.
    log_max_size: ByteSize = 10 * 1024**2
    log_keep: int = Field(default=5, ge=1, le=100)
    php_max_children: int = Field(default=5, ge=1, le=1000)


class MariaDBEngine(Section):
    """A MariaDB (or MySQL) server on this host, administered by the agent through its socket."""

    enabled: bool = True
    socket: ConfigPath = Path("/run/mysqld/mysqld.sock")
    admin_user: str = "root"
    # The admin's password, read by the agent only; none: unix_socket authentication as root.
    admin_password_file: ConfigPath | None = None


class PostgreSQLEngine(Section):
    """A PostgreSQL server on this host, administered by the agent through its socket directory."""

    enabled: bool = True
    socket_dir: ConfigPath = Path("/var/run/postgresql")
    port: int = Field(default=5432, ge=1, le=65535)
    admin_user: str = "postgres"
    admin_password_file: ConfigPath | None = None
    # Tenants' roles sign in with their password (scram-sha-256) from the socket and loopback only:
    # the agent keeps a block of its own at the top of this file (None: leave pg_hba alone).
    hba_file: ConfigPath | None = None


class DatabasesConfig(Section):
    """Tenants' databases (seed 000 §4 "One User, One DB", seed 001 §5)."""

    mariadb: MariaDBEngine = MariaDBEngine()
    postgresql: PostgreSQLEngine = PostgreSQLEngine()
    max_per_tenant: int = Field(default=10, ge=0, le=1000)
    # Passwords older than this are rotated by the agent (checked hourly); null: on demand only.
    # Every password (made, rotated on demand or by age) is also written for the tenant's own
    # applications to read: <home>/.wcp360/databases/<engine>-<name>.env, 0600, the tenant's.
    password_max_age: Duration | None = None
    # A database over this size (checked hourly) takes no more writes: MariaDB keeps its user
    # SELECT, DELETE and DROP only; PostgreSQL (where a table's owner cannot be refused writes)
    # locks its role. Back under the size (or the size raised), it is given back. null: no limit.
    max_size: ByteSize | None = 1024**3


class TenantNetworkConfig(Section):
    """What a jail started with `network` may reach: TCP connections only to these ports (any
    address; enforced by Landlock, ABI 4+). An empty list refuses every TCP connection; UDP
    (DNS) is not narrowed by Landlock. Without `network` a jail has no network at all."""

    allow_tcp_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default=[53, 80, 443, 465, 587], max_length=64
    )
    # Every port: no port rule at all (an explicit choice, reported by doctor).
    allow_all_tcp_ports: bool = False


class TenantsConfig(Section):
    """Tenants are Linux users and groups with a home beneath `home_root` (seed 000 §2, 001 §6)."""

    home_root: ConfigPath = Path("/srv/www")
    uid_min: int = Field(default=20000, ge=1000, le=2**31 - 2)
    uid_max: int = Field(default=29999, ge=1000, le=2**31 - 2)
    # A deleted tenant's home is archived here and kept this long.
    archive_dir: ConfigPath = Path("/var/backups/wcp360/tenants")
    archive_retention: Duration = timedelta(days=30)
    # Names no tenant may take (beyond every existing system user and group, always refused).
    reserved_names: list[str] = [
        "root", "admin", "administrator", "wcp360", "www", "www-data", "nginx", "nobody", "postgres",
        "mysql", "mariadb", "redis", "rabbitmq", "nats", "mail", "postmaster", "hostmaster", "webmaster",
        "abuse", "daemon", "bin", "sys", "sync", "games", "man", "lp", "news", "uucp", "proxy", "backup",
        "list", "irc", "gnats", "systemd", "sshd", "ftp", "api", "panel", "localhost",
    ]  # fmt: skip
    max_per_owner: int = Field(default=100, ge=1)
    default_limits: TenantLimits = TenantLimits()
    processes: ProcessesConfig = ProcessesConfig()
    network: TenantNetworkConfig = TenantNetworkConfig()
    databases: DatabasesConfig = DatabasesConfig()
    websites: WebsitesConfig = WebsitesConfig()

    @field_validator("uid_max")
    @classmethod
    def _range(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("uid_min", 0):
            raise ValueError("uid_max must not be below uid_min")
        return value


class BootstrapAdmin(Section):
    username: str = "admin"
    email: str = "admin@localhost"


class ServerFile(Section):
    mode: Literal["dev", "production"] = "production"
    listen: str = "127.0.0.1:8080"
    paths: Paths = Paths()
    http: HttpConfig = HttpConfig()
    metrics: MetricsConfig = MetricsConfig()
    firewall: FirewallConfig = FirewallConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    bootstrap_admin: BootstrapAdmin = BootstrapAdmin()
    # `serve` started as root binds its listener, then runs as this user and its group (seed 001
    # "Never run WCP360 as root"); `wcp360 install` creates it.
    user: str = Field(default="wcp360", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    agent: AgentConfig = AgentConfig()
    tenants: TenantsConfig = TenantsConfig()

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        from wcp360.net import parse_listen

        parse_listen(value)
        return value
