"""Everything a running WCP360 needs, built once from the config: the API and the CLI share it."""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass, field

from sqlalchemy import select

from wcp360.authz import Policy, Principal
from wcp360.config import Config
from wcp360.defense.alerts import Alerter, senders_for
from wcp360.defense.bans import BanList
from wcp360.defense.gcra import limiter_for
from wcp360.defense.ids import Ids
from wcp360.defense.login_guard import LoginGuard
from wcp360.defense.policy import Defense
from wcp360.defense.throttles import Throttles
from wcp360.defense.windows import windows_for
from wcp360.hosting.databases import DatabaseService
from wcp360.hosting.processes import ProcessService
from wcp360.hosting.sites import SiteService
from wcp360.hosting.tenants import TenantService
from wcp360.identity.api_tokens import ApiTokenService
from wcp360.identity.auth import AuthService
from wcp360.identity.directory_sweep import DirectorySweep
from wcp360.identity.jwt_codec import JwtCodec
from wcp360.identity.oidc_flows import OidcFlows
from wcp360.identity.passwords import PasswordHasher, policy_violations
from wcp360.identity.providers import Providers
from wcp360.identity.two_factor import TwoFactor
from wcp360.identity.users import ADMIN_ROLE, UserService
from wcp360.keys import HostKeys, ensure_private_dir
from wcp360.store import migrate
from wcp360.store.database import Database
from wcp360.store.models import User
from wcp360.store.scope import NOBODY
from wcp360.system.client import AgentClient, connect_agent, upload_spool
from wcp360.workloads.execution import Executor
from wcp360.workloads.modules import ModuleService
from wcp360.workloads.scheduler import Scheduler
from wcp360.workloads.snapshots import SnapshotService
from wcp360.workloads.tasks import TaskService


@dataclass
class Runtime:
    config: Config
    keys: HostKeys
    db: Database
    policy: Policy
    hasher: PasswordHasher
    codec: JwtCodec
    two_factor: TwoFactor
    auth: AuthService
    users: UserService
    api_tokens: ApiTokenService
    defense: Defense
    modules: ModuleService
    executor: Executor
    tasks: TaskService
    scheduler: Scheduler
    agent: AgentClient
    tenants: TenantService
    oidc: OidcFlows
    processes: ProcessService = field(init=False)
    databases: DatabaseService = field(init=False)
    sites: SiteService = field(init=False)
    directory_sweep: DirectorySweep | None = field(init=False)

    @classmethod
    def open(cls, config: Config, upgrade: bool = True) -> Runtime:
        ensure_private_dir(config.data_dir)
        keys = HostKeys(config.secrets_dir)
        if upgrade:
            migrate.upgrade(config.database, config.data_dir)
        db = Database.open(config.database, config.data_dir)
        policy = Policy(config.rbac)
        hasher = PasswordHasher(config.auth.argon2)
        codec = JwtCodec(config.auth.jwt, keys.jwt_secret)
        two_factor = TwoFactor(db, policy, keys, hasher, config.auth.two_factor)
        modules = ModuleService(db, policy, config.data_dir / "modules", config.sandbox, config.static_analysis)
        executor = Executor(
            db,
            modules,
            SnapshotService(db, policy, modules, config.data_dir / "snapshots"),
            config.sandbox,
            config.data_dir / "workers",
            keys.derive("wcp360 compiled wasm artifacts"),
        )
        agent = connect_agent(config)
        providers = Providers(config.auth)
        return cls(
            config=config,
            keys=keys,
            db=db,
            policy=policy,
            hasher=hasher,
            codec=codec,
            two_factor=two_factor,
            auth=AuthService(
                db,
                policy,
                hasher,
                codec,
                two_factor,
                config.auth,
                keys.derive("wcp360 unknown usernames"),
                providers,
            ),
            users=UserService(db, policy, hasher, config.auth.password_policy()),
            api_tokens=ApiTokenService(db, policy, two_factor, config.auth.api_tokens),
            defense=build_defense(config, db, policy, codec),
            modules=modules,
            executor=executor,
            tasks=TaskService(db, policy, modules, config.server.scheduler, keys),
            scheduler=Scheduler(db, executor, config.server.scheduler, keys),
            agent=agent,
            tenants=TenantService(db, policy, agent, config.server.tenants),
            oidc=OidcFlows(db, keys, providers.oidc),
        )

    def __post_init__(self) -> None:
        self.processes = ProcessService(self.tenants)
        self.databases = DatabaseService(self.tenants)
        uploads = self.config.server.tenants.websites.uploads
        self.sites = SiteService(self.tenants, upload_spool(self.config), uploads.max_size, self.defense.alerter)
        # The IDS `quarantine` action (e.g. the seed's suspicious_module_upload rule) lands here.
        self.defense.ids.quarantine_hooks.append(
            lambda subject, event: self.modules.quarantine(subject, f"ids rule on {event.get('action')}")
        )
        self.modules.on_stored.append(self.executor.precompile)
        self.modules.on_discarded.append(self.executor.forget)
        self.auth.on_api_token_verified.append(self.defense.verified.remember)
        directory = self.auth.providers.directory
        self.directory_sweep = DirectorySweep(self.db, directory) if directory is not None else None

    def close(self) -> None:
        if self.directory_sweep is not None:
            self.directory_sweep.stop()
        self.defense.bans.stop()
        self.scheduler.stop()
        self.executor.close()
        self.defense.alerter.close()
        self.db.dispose()

    def bootstrap_admin(self, password: str | None = None) -> str | None:
        """Create the first admin when no user exists yet. Returns a generated password, else None."""
        with self.db.transaction(NOBODY) as s:
            if s.scalar(select(User.id).limit(1)) is not None:
                return None
        wanted = self.config.server.bootstrap_admin
        generated = None
        if password is None:
            password = os.environ.get("WCP360_ADMIN_PASSWORD") or None
        if password is None:
            password = generated = generate_password(self)
        self.users.create(Principal.host_admin("bootstrap"), wanted.username, wanted.email, password, [ADMIN_ROLE])
        return generated


def generate_password(runtime: Runtime, length: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits + "!#%+-.:=?@^_~"
    policy = runtime.config.auth.password_policy()
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(max(length, policy.min_length)))
        if not policy_violations(policy, candidate, runtime.config.server.bootstrap_admin.username):
            return candidate


def build_defense(config: Config, db: Database, policy: Policy, codec: JwtCodec) -> Defense:
    ids_config = config.intrusion_detection
    rate = config.rate_limiting
    windows = windows_for(ids_config.storage)
    bans = BanList(db, policy, ids_config.ban_escalation, list(rate.ip_whitelist))
    throttles = Throttles(ids_config.throttle.factor)
    alerter = Alerter(senders_for(ids_config.alerts), ids_config.alert_dedupe.total_seconds())
    return Defense(
        rate=rate,
        limiter=limiter_for(rate.storage),
        windows=windows,
        bans=bans,
        throttles=throttles,
        ids=Ids(ids_config, windows, bans, throttles, alerter),
        guard=LoginGuard(windows, ids_config.brute_force),
        alerter=alerter,
        subject_of=lambda token: str(codec.verify(token).subject),
    )
