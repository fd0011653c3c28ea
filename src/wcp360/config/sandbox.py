"""`sandbox.yml`: WASM capabilities (all off by default), resource limits and policies (seed 003)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from wcp360.config.base import ByteSize, ConfigPath, Duration, Section


class Capabilities(Section):
    file_access: bool = False
    network_access: bool = False
    system_calls: bool = False
    environment_access: bool = False


class ResourceLimits(Section):
    max_memory: ByteSize = 100 * 1000**2
    max_execution_time: Duration = timedelta(seconds=30)
    max_stack_depth: int = Field(default=1000, gt=0)
    max_table_size: int = Field(default=1000, gt=0)
    max_globals: int = Field(default=100, gt=0)
    max_output: ByteSize = 1024**2
    # The instruction budget of one run (wasmtime fuel units, about one per instruction). Unset:
    # the seed's `policies[no_infinite_loops].max_iterations` x 10.
    max_fuel: int | None = Field(default=None, gt=0)


class LimitOverrides(Section):
    """Limits one vetted module runs under instead of `resource_limits` (issue #10: defaults stay
    tight while a large program an administrator checked runs). Only for exact bytes: the entry
    must name the module's digest. max_stack_depth is the engine's, shared by every module."""

    max_memory: ByteSize | None = None
    max_execution_time: Duration | None = None
    max_table_size: int | None = Field(default=None, gt=0)
    max_globals: int | None = Field(default=None, gt=0)
    max_output: ByteSize | None = None
    max_fuel: int | None = Field(default=None, gt=0)


class ModuleCapabilities(Section):
    # Keyed "owner/name" (or a name alone for administrators' modules): see workloads/engine/grants.py.
    # Optional: the module's SHA-256 ("sha256:<hex>"), so only those exact bytes get the grant.
    digest: str | None = Field(default=None, pattern=r"^(sha256:)?[0-9a-f]{64}$")
    file_access: bool | None = None
    network_access: bool | None = None
    system_calls: bool | None = None
    environment_access: bool | None = None
    allowed_paths: list[ConfigPath] = []
    # Preopened read-only unless listed here too.
    writable_paths: list[ConfigPath] = []
    # host (https on 443), host:port, or scheme://host[:port]; see workloads/engine/outbound.py
    allowed_hosts: list[str] = []
    resource_limits: LimitOverrides | None = None

    @model_validator(mode="after")
    def _limits_need_a_digest(self) -> ModuleCapabilities:
        if self.resource_limits is not None and self.digest is None:
            raise ValueError("resource_limits for one module apply to exact bytes only: set digest too")
        return self

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, entries: list[str]) -> list[str]:
        from wcp360.workloads.engine.outbound import Allowed  # stdlib-only module: no import cycle

        for entry in entries:
            Allowed.parse(entry)
        return entries


class Quotas(Section):
    """What one account may keep (issue: one user filled the disk). Quarantined modules count too.
    Each refusal names its key: sandbox.yml quotas.<key>."""

    max_modules_per_user: int = Field(default=200, ge=1)
    max_module_bytes_per_user: ByteSize = 2 * 1000**3
    max_snapshot_bytes_per_user: ByteSize = 2 * 1000**3
    # Stored run output (stdout + stderr) per account: past it, the oldest runs' output is removed.
    max_run_output_bytes_per_user: ByteSize = 200 * 1000**2
    # Run output older than this is removed (the run's record stays); 0 keeps it.
    run_output_retention: Duration = timedelta(days=30)
    # Uploads in progress per account (each streams to disk, up to max_module_size).
    max_concurrent_uploads_per_user: int = Field(default=2, ge=1)


# "owner/name" or a bare module name (the seed's shape): see workloads/engine/grants.py.
GRANT_KEY = re.compile(r"^([a-z][a-z0-9._-]{1,63}/)?[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$")


class SandboxPolicy(Section):
    name: Literal["no_infinite_loops", "memory_bounds_check", "stack_overflow_protection"]
    enabled: bool = True
    max_iterations: int | None = Field(default=None, gt=0)


class SandboxConfig(Section):
    # Uploads above this are refused (413); the IDS rule on `module_size` flags smaller ones.
    max_module_size: ByteSize = 100 * 1000**2
    # Worker processes that run modules, apart from the API process.
    workers: int = Field(default=2, ge=1, le=64)
    # Compiling a module is not running it: a worker loading a module gets this long for it (once
    # per run, on top of max_execution_time). A 69 MB C++ program compiles in ~42 s on 2 cores.
    max_compile_time: Duration = timedelta(minutes=10)
    # Compile each uploaded module ahead of time (in a worker, in the background), so its first
    # run deserializes a cached artifact instead of compiling.
    precompile: bool = True
    # Cranelift's optimisation level for every module: "speed" is wasmtime's default. "none"
    # compiled a 69 MB program in 0.87x the time and a generated 33 MB one in 0.55x, and two
    # CPU-bound kernels ran no slower under it (benchmarks/bench_cranelift.py); other code may.
    cranelift_opt_level: Literal["speed", "none", "speed_and_size"] = "speed"
    # Quotas that keep one tenant from filling the disk or the queue: snapshots kept per user
    # (each up to max_memory), and asynchronous runs queued or running per user.
    max_snapshots_per_user: int = Field(default=50, ge=0)
    max_queued_runs_per_user: int = Field(default=16, ge=1)
    quotas: Quotas = Quotas()
    default_capabilities: Capabilities = Capabilities()
    resource_limits: ResourceLimits = ResourceLimits()
    module_capabilities: dict[str, ModuleCapabilities] = {}
    # Runs in flight per user (synchronous and queued, every credential of the account together),
    # and how long a synchronous run may wait for a free worker before the answer is 503.
    @field_validator("module_capabilities")
    @classmethod
    def _grant_keys(cls, grants: dict[str, ModuleCapabilities]) -> dict[str, ModuleCapabilities]:
        for key in grants:
            if not GRANT_KEY.match(key):
                raise ValueError(f"grant key {key!r} must be 'USERNAME/MODULE' or a module name")
        return grants

    # 0: half the workers (at least one), so no account can hold every worker with slow runs.
    max_concurrent_runs_per_user: int = Field(default=0, ge=0)
    max_worker_wait: Duration = timedelta(seconds=10)
    policies: list[SandboxPolicy] = [
        SandboxPolicy(name="no_infinite_loops", max_iterations=1_000_000),
        SandboxPolicy(name="memory_bounds_check"),
        SandboxPolicy(name="stack_overflow_protection"),
    ]


    @property
    def runs_per_user(self) -> int:
        return self.max_concurrent_runs_per_user or max(1, self.workers // 2)


class SandboxFile(Section):
    sandbox: SandboxConfig = SandboxConfig()
