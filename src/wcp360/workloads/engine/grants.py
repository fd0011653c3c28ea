"""Which `sandbox.yml` `module_capabilities` entry applies to a module, and so which capabilities
(files, network, environment) its runs get.

A grant trusts code, so it must name exactly which code: keyed by module name alone, it reached
any module another user uploaded under that name (a second developer's `creadfile` read the
granted directory). The keys are now:

- `"owner/name"`: modules named `name` uploaded by the account `owner`, and nobody else's.
  An optional `digest: "sha256:<hex>"` in the entry pins the exact bytes as well.
- `"name"` (the seed's shape, kept loadable): applies only to modules of that name whose owner
  holds the `admin` role, who could grant it anyway. The config loader warns about every such key.

Grants live in the config, which only the host administrator edits; each change is recorded as a
`config_change` event when the server starts, and each run that used a grant names it in its
`module_execute` event.
"""

from __future__ import annotations

from dataclasses import dataclass

from wcp360.config.sandbox import Capabilities, ModuleCapabilities, SandboxConfig

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Owner:
    username: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    key: str
    capabilities: ModuleCapabilities


def legacy_keys(sandbox: SandboxConfig) -> list[str]:
    """Keys in the seed's name-only shape (they apply to administrators' modules only)."""
    return [key for key in sandbox.module_capabilities if "/" not in key]


def could_apply(sandbox: SandboxConfig, name: str) -> bool:
    """Whether any entry names `name` (before looking the owner up: most modules have no grant)."""
    return any(key == name or key.endswith(f"/{name}") for key in sandbox.module_capabilities)


def grant_for(sandbox: SandboxConfig, name: str, digest: str, owner: Owner | None) -> Grant | None:
    if owner is None:
        return None
    exact = sandbox.module_capabilities.get(f"{owner.username}/{name}")
    if exact is not None:
        key, entry = f"{owner.username}/{name}", exact
    elif name in sandbox.module_capabilities and ADMIN_ROLE in owner.roles:
        key, entry = name, sandbox.module_capabilities[name]
    else:
        return None
    if entry.digest is not None and entry.digest.removeprefix("sha256:") != digest:
        return None  # pinned to other bytes: a new version needs the administrator's say again
    return Grant(key, entry)


def capabilities_with(sandbox: SandboxConfig, grant: Grant | None) -> Capabilities:
    """The sandbox defaults, overridden by the grant where it says so."""
    base = sandbox.default_capabilities
    if grant is None:
        return base
    values = {
        field: value if (value := getattr(grant.capabilities, field)) is not None else getattr(base, field)
        for field in type(base).model_fields
    }
    return Capabilities(**values)
