"""`security.yml`: JWT settings, identity providers, password policy, 2FA and API tokens (seed 003)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from wcp360.config.base import ConfigPath, Duration, Section
from wcp360.net import is_loopback

JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "ES256", "EdDSA"]


class JwtConfig(Section):
    # None means: use the secret generated into the data dir on first start.
    secret: SecretStr | None = None
    algorithm: JwtAlgorithm = "HS256"
    private_key_file: ConfigPath | None = None
    public_key_file: ConfigPath | None = None
    expiry: Duration = timedelta(minutes=15)
    refresh_expiry: Duration = timedelta(days=7)
    issuer: str = "wcp360"
    audience: str = "wcp360-api"
    leeway: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _keys_match_algorithm(self) -> JwtConfig:
        asymmetric = not self.algorithm.startswith("HS")
        if asymmetric and (self.private_key_file is None or self.public_key_file is None):
            raise ValueError(f"algorithm {self.algorithm} needs private_key_file and public_key_file")
        if not asymmetric and (self.private_key_file or self.public_key_file):
            raise ValueError(f"algorithm {self.algorithm} uses `secret`, not key files")
        return self


class PasswordPolicy(Section):
    # Seed 001 asks for 12; seed 003's example file says 8. The file wins when it is given.
    min_length: int = Field(default=12, ge=8, le=128)
    max_length: int = Field(default=128, ge=16, le=1024)
    require_uppercase: bool = True
    require_lowercase: bool = True
    require_numbers: bool = True
    require_symbols: bool = True
    block_common: bool = True
    block_personal_info: bool = True


class LocalProviderSettings(Section):
    password_policy: PasswordPolicy = PasswordPolicy()


class LocalProvider(Section):
    type: Literal["local"]
    enabled: bool = True
    config: LocalProviderSettings = LocalProviderSettings()


class AccountMapping(Section):
    """How an identity from a directory or identity provider becomes a WCP360 account."""

    # Just-in-time creation on the first sign-in; off, an administrator links accounts
    # (`wcp360 admin link-identity`). An identity is never linked by its email or name.
    create: bool = False
    # Roles a created account starts with: none (the account sees only itself) unless given.
    roles: list[str] = []
    # Group (LDAP: cn or DN; OIDC: a value of the groups claim) -> roles. When any is given, the
    # roles are set from the groups at every sign-in: leaving a group takes its roles away.
    groups: dict[str, list[str]] = {}
    # A claim or group never makes an administrator unless this says so explicitly.
    allow_admin: bool = False

    @model_validator(mode="after")
    def _admin_only_when_allowed(self) -> AccountMapping:
        granted = set(self.roles) | {r for roles in self.groups.values() for r in roles}
        if "admin" in granted and not self.allow_admin:
            raise ValueError("maps an identity to the admin role: set allow_admin: true to let it")
        return self


# Issuers of providers the seed names by key alone (`google:`).
KNOWN_ISSUERS = {"google": "https://accounts.google.com"}


class OidcClient(Section):
    """One OpenID Connect provider and WCP360's registration with it."""

    client_id: str
    client_secret: SecretStr | None = None
    client_secret_file: ConfigPath | None = None
    # Exactly as registered with the provider; its path is where WCP360 serves the callback.
    redirect_url: str
    # Discovery at `<issuer_url>/.well-known/openid-configuration`; known names have a default.
    issuer_url: str | None = None
    scopes: list[str] = ["openid", "email", "profile"]
    # ID token signature algorithms accepted; empty: the provider's advertised ones. Never `none`
    # nor an HMAC (the client secret is not a signing key WCP360 accepts).
    algorithms: list[str] = []
    # Verify the provider's TLS certificate with this CA bundle instead of the system's.
    ca_file: ConfigPath | None = None
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    # Accept the provider's word that the person used a second factor (`amr`), in place of
    # WCP360's own TOTP for roles that require 2FA.
    trust_mfa: bool = False
    mfa_methods: list[str] = ["mfa", "otp", "hwk", "swk", "sms", "fpt", "face", "pop"]
    timeout: Duration = timedelta(seconds=10)
    accounts: AccountMapping = AccountMapping()

    @model_validator(mode="after")
    def _one_secret(self) -> OidcClient:
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError("give client_secret or client_secret_file (one of them)")
        if "openid" not in self.scopes:
            raise ValueError("scopes must include openid")
        refused = {a for a in self.algorithms if a == "none" or a.startswith("HS")}
        if refused:
            raise ValueError(f"algorithms may not include {', '.join(sorted(refused))}")
        if not self.redirect_url.startswith(("https://", "http://")):
            raise ValueError("redirect_url must be an http(s) URL")
        return self


class OAuth2Provider(Section):
    type: Literal["oauth2"]
    enabled: bool = False
    # Keyed by provider name as in the seed (`google: {...}`): any number of providers.
    config: dict[str, OidcClient] = {}


class OidcProvider(Section):
    """The generic shape: one named OpenID Connect provider per list entry."""

    type: Literal["oidc"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    enabled: bool = True
    config: OidcClient


class LdapSettings(Section):
    server: str
    bind_dn: str
    # From `${ENV}` or a file readable by the service only; never logged.
    bind_password: SecretStr | None = None
    bind_password_file: ConfigPath | None = None
    user_base: str
    # `%s` is the username, escaped (RFC 4515) before it is put in. For Active Directory, e.g.
    # (&(sAMAccountName=%s)(!(userAccountControl:1.2.840.113556.1.4.803:=2))) also keeps
    # disabled accounts out.
    user_filter: str = "(uid=%s)"
    start_tls: bool = True
    ca_file: ConfigPath | None = None
    # Plain ldap:// to anything but loopback only with this set (doctor reports it).
    insecure: bool = False
    # The directory's stable id for an entry: OpenLDAP entryUUID, Active Directory objectGUID.
    id_attribute: str = "entryUUID"
    username_attribute: str = "uid"
    email_attribute: str = "mail"
    # Groups: searched under group_base with group_filter (`%s` is the user's escaped DN).
    group_base: str | None = None
    group_filter: str = "(member=%s)"
    timeout: Duration = timedelta(seconds=10)
    # How often accounts signed in through the directory are checked against it; the sessions of
    # one that left or was disabled end within this interval.
    recheck_interval: Duration = timedelta(minutes=5)
    accounts: AccountMapping = AccountMapping()

    @model_validator(mode="after")
    def _safe_settings(self) -> LdapSettings:
        if (self.bind_password is None) == (self.bind_password_file is None):
            raise ValueError("give bind_password or bind_password_file (one of them)")
        for key, text in (("user_filter", self.user_filter), ("group_filter", self.group_filter)):
            if text.count("%s") != 1 or not (text.startswith("(") and text.endswith(")")):
                raise ValueError(f"{key} must be a parenthesised filter with exactly one %s")
        scheme, _, rest = self.server.partition("://")
        if scheme not in ("ldap", "ldaps") or not rest:
            raise ValueError("server must be an ldap:// or ldaps:// URL")
        host = rest.split("/")[0].rsplit(":", 1)[0].strip("[]")
        if scheme == "ldap" and not self.start_tls and not self.insecure and not is_loopback(host):
            raise ValueError(
                "plain ldap:// to another host sends passwords in clear: use ldaps://, start_tls: true, "
                "or set insecure: true"
            )
        return self


class LdapProvider(Section):
    type: Literal["ldap"]
    enabled: bool = False
    config: LdapSettings


Provider = Annotated[LocalProvider | OAuth2Provider | OidcProvider | LdapProvider, Field(discriminator="type")]


class TwoFactorConfig(Section):
    issuer: str = "WCP360"
    # Seed 001: 2FA "strongly recommended for system administrators, resellers, API access accounts".
    required_roles: list[str] = ["admin", "reseller"]
    required_for_api_tokens: bool = True
    # Accepted clock drift in 30-second steps either side.
    valid_window: int = Field(default=1, ge=0, le=2)
    recovery_codes: int = Field(default=10, ge=5, le=20)


class Argon2Config(Section):
    # OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    time_cost: int = Field(default=2, ge=1)
    memory_kib: int = Field(default=19456, ge=8192)
    parallelism: int = Field(default=1, ge=1)


class ApiTokenConfig(Section):
    default_expiry: Duration = timedelta(days=90)
    max_expiry: Duration = timedelta(days=365)
    # After a rotation the old secret keeps working this long, so clients can roll over.
    rotation_overlap: Duration = timedelta(minutes=10)


class AuthConfig(Section):
    jwt: JwtConfig = JwtConfig()
    providers: list[Provider] = [LocalProvider(type="local")]
    two_factor: TwoFactorConfig = TwoFactorConfig()
    argon2: Argon2Config = Argon2Config()
    api_tokens: ApiTokenConfig = ApiTokenConfig()

    @model_validator(mode="after")
    def _one_provider_per_name(self) -> AuthConfig:
        kinds = [p.type for p in self.providers if p.type != "oidc"]
        duplicated = {k for k in kinds if kinds.count(k) > 1}
        if duplicated:
            raise ValueError(f"provider type listed twice: {', '.join(sorted(duplicated))}")
        names = [name for name, _ in self.oidc_clients(enabled_only=False)]
        clashes = {n for n in names if names.count(n) > 1 or n in ("local", "ldap")}
        if clashes:
            raise ValueError(f"provider name used twice: {', '.join(sorted(clashes))}")
        for name, client in self.oidc_clients(enabled_only=False):
            if client.issuer_url is None and name not in KNOWN_ISSUERS:
                raise ValueError(f"provider {name}: issuer_url is required (only {', '.join(KNOWN_ISSUERS)} is known)")
        return self

    def oidc_clients(self, enabled_only: bool = True) -> list[tuple[str, OidcClient]]:
        """Every OpenID Connect provider by name, from both shapes (`oauth2` keyed, `oidc` named)."""
        found: list[tuple[str, OidcClient]] = []
        for provider in self.providers:
            if enabled_only and not provider.enabled:
                continue
            if isinstance(provider, OAuth2Provider):
                found.extend(provider.config.items())
            elif isinstance(provider, OidcProvider):
                found.append((provider.name, provider.config))
        return found

    def ldap(self) -> LdapSettings | None:
        for provider in self.providers:
            if isinstance(provider, LdapProvider) and provider.enabled:
                return provider.config
        return None

    def local_provider(self) -> LocalProvider | None:
        for provider in self.providers:
            if isinstance(provider, LocalProvider) and provider.enabled:
                return provider
        return None

    def password_policy(self) -> PasswordPolicy:
        local = self.local_provider()
        return local.config.password_policy if local else PasswordPolicy()


class SecurityFile(Section):
    auth: AuthConfig = AuthConfig()
