"""The resource limits one module is admitted and runs under, and the config key behind each.

`sandbox.yml resource_limits` for every module, except where the module's `module_capabilities`
entry (pinned to its digest) sets its own `resource_limits` (issue #10). Every limit error names
the key that set the limit, so an administrator knows what to change and where."""

from __future__ import annotations

from dataclasses import dataclass, field

from wcp360.config.sandbox import ResourceLimits, SandboxConfig
from wcp360.errors import InvalidInput
from wcp360.workloads.engine.grants import Grant
from wcp360.workloads.engine.wasm_reader import ModuleInfo

PAGE = 64 * 1024


@dataclass(frozen=True)
class ModuleLimits:
    values: ResourceLimits
    # Only the limits the module's own entry set: limit name -> its key in sandbox.yml.
    keys: dict[str, str] = field(default_factory=dict)

    def key(self, name: str) -> str:
        return f"sandbox.yml {self.keys.get(name, f'resource_limits.{name}')}"


def limits_for(sandbox: SandboxConfig, grant: Grant | None) -> ModuleLimits:
    if grant is None or grant.capabilities.resource_limits is None:
        return ModuleLimits(sandbox.resource_limits)
    changed = grant.capabilities.resource_limits.model_dump(exclude_none=True)
    return ModuleLimits(
        sandbox.resource_limits.model_copy(update=changed),
        {name: f"module_capabilities[{grant.key}].resource_limits.{name}" for name in changed},
    )


def refuse_beyond_limits(info: ModuleInfo, limits: ModuleLimits) -> None:
    """A module whose declared sizes exceed what a run may have is refused at upload, naming the
    key: it could never instantiate (tables, memories), or nothing at run time would stop it
    (wasmtime has no limit on globals). Not risk points: it is not suspicious, it does not fit."""
    values = limits.values
    if info.globals > values.max_globals:
        raise InvalidInput(
            f"module declares {info.globals} globals; the limit is {values.max_globals} ({limits.key('max_globals')})"
        )
    tables = info.tables + [i.limits for i in info.imports if i.kind == "table" and i.limits]
    for table in tables:
        if table.minimum > values.max_table_size:
            raise InvalidInput(
                f"module's table starts with {table.minimum} elements; the limit is {values.max_table_size} "
                f"({limits.key('max_table_size')})"
            )
    memories = info.memories + [i.limits for i in info.imports if i.kind == "memory" and i.limits]
    for memory in memories:
        if memory.minimum * PAGE > values.max_memory:
            raise InvalidInput(
                f"module's memory starts at {memory.minimum * PAGE} bytes; the limit is {values.max_memory} "
                f"({limits.key('max_memory')})"
            )
