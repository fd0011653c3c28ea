"""What a run ended with: the typed outcome the sandbox reports, apart from the sandbox itself (which
needs wasmtime), so the API process and the CLI can handle results without importing wasmtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal[
    "ok",
    "exit",
    "out_of_fuel",
    "timeout",
    "memory_limit",
    "stack_overflow",
    "table_limit",
    "capability_denied",
    "trap",
    "output_limit",
]
# Outcomes that mean a sandbox limit or capability stopped the module (sandbox_violations_total).
VIOLATIONS = frozenset(
    {"out_of_fuel", "timeout", "memory_limit", "stack_overflow", "table_limit", "capability_denied", "output_limit"}
)

@dataclass
class RunResult:
    outcome: Outcome
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    duration_ms: float = 0.0
    fuel_used: int = 0
    memory_peak_bytes: int = 0
    message: str | None = None
    # The instance's state after the run (InstanceState bytes), when a snapshot was asked for.
    state: bytes | None = None
    # Calls refused gracefully (the guest got an answer it can handle, e.g. an empty environment).
    denied: list[str] = field(default_factory=list)
