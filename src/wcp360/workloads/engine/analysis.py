"""Static analysis of uploaded modules (seed 003 `static_analysis.yml`) and the quarantine policy.

Rules: check_import_restrictions, detect_unsafe_operations, detect_infinite_loops,
detect_memory_leaks. Sizes beyond the run-time limits are not findings: the upload refuses them
(workloads/engine/limits.py), naming the key. Each finding names its rule,
severity, location (function index, byte offset) and what is wrong. The risk score is the sum of
the findings' severity weights, capped at 10; `high_risk_threshold` and above is quarantined when
`auto_quarantine` is on, `medium_risk_threshold` and above is flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from wcp360.config.sandbox import Capabilities
from wcp360.config.static_analysis import AnalysisRule, StaticAnalysisConfig
from wcp360.workloads.engine.wasm_reader import Buffer, ModuleInfo, WasmFormatError, loops_of, read_module

# "info" findings are reported and weigh nothing: what the sandbox refuses anyway at run time is not
# a risk (eleven ordinary WASI imports of a real C++ program added up to a quarantine).
WEIGHT = {"info": 0, "low": 1, "medium": 3, "high": 5, "critical": 8}
WASI = ("wasi_snapshot_preview1", "wasi_unstable")
# WASI functions that only do something with a capability the module may not have been granted.
NEEDS_CAPABILITY = {
    "file_access": ("path_", "fd_readdir", "fd_renumber"),
    "network_access": ("sock_",),
    "environment_access": ("environ_get", "environ_sizes_get"),
    "system_calls": ("proc_raise",),
}
# Host functions WCP360 offers (sandbox.py), and the capability each needs.
HOST_FUNCTIONS = {"wcp360.http_get": "network_access"}
Status = Literal["active", "quarantined"]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: str
    function: int | None = None
    offset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Analysis:
    findings: list[Finding]
    risk_score: int
    risk_level: Literal["low", "medium", "high"]
    status: Status
    info: ModuleInfo

    @property
    def suspicious(self) -> bool:
        return self.risk_level != "low"


def analyse(
    raw: Buffer, rules: StaticAnalysisConfig, capabilities: Capabilities, info: ModuleInfo | None = None
) -> Analysis:
    """`info`: the module's sections, when the caller has read them already."""
    info = info or read_module(raw)
    findings: list[Finding] = []
    enabled: dict[str, AnalysisRule] = {r.name: r for r in rules.rules if r.enabled} if rules.enabled else {}
    if rule := enabled.get("check_import_restrictions"):
        findings += _imports(info, rule, capabilities)
    if rule := enabled.get("detect_unsafe_operations"):
        findings += _unsafe(info, rule)
    if "detect_infinite_loops" in enabled or "detect_memory_leaks" in enabled:
        findings += _loops(raw, info, enabled)
    score = min(10, sum(WEIGHT[f.severity] for f in findings))
    policy = rules.quarantine
    level: Literal["low", "medium", "high"] = (
        "high" if score >= policy.high_risk_threshold else "medium" if score >= policy.medium_risk_threshold else "low"
    )
    quarantine = policy.enabled and policy.auto_quarantine and level == "high"
    return Analysis(findings, score, level, "quarantined" if quarantine else "active", info)


def _imports(info: ModuleInfo, rule: AnalysisRule, capabilities: Capabilities) -> list[Finding]:
    config = rule.config
    allowed = set(config.allowed_imports) if config else set()
    blocked = set(config.blocked_imports) if config else set()
    found = []
    for item in info.imports:
        name = item.qualified
        if name in blocked:
            found.append(Finding(rule.name, "high", f"import {name} is blocked"))
        elif item.module in WASI or name in HOST_FUNCTIONS:
            needed = HOST_FUNCTIONS.get(name) or _capability_for(item.name)
            if needed and not getattr(capabilities, needed):
                # Information: the sandbox denies it at run time anyway; worth knowing, never a risk.
                found.append(Finding(rule.name, "info", f"import {name} needs {needed}, which is not granted"))
        elif name not in allowed:
            found.append(Finding(rule.name, rule.severity, f"import {name} is not in allowed_imports"))
    return found


def _capability_for(function: str) -> str | None:
    for capability, prefixes in NEEDS_CAPABILITY.items():
        if function.startswith(prefixes):
            return capability
    return None


def _unsafe(info: ModuleInfo, rule: AnalysisRule) -> list[Finding]:
    found = []
    memories = info.memories + [i.limits for i in info.imports if i.kind == "memory" and i.limits]
    for memory in memories:
        if memory.memory64:
            found.append(Finding(rule.name, rule.severity, "64-bit memory (memory64) is not supported here"))
        if memory.shared:
            found.append(Finding(rule.name, rule.severity, "shared memory (threads) is not supported here"))
    if info.has_start:
        found.append(
            Finding(
                rule.name,
                "medium",
                "a start function runs code at instantiation, before any limit is visible to the caller",
            )
        )
    return found


def _loops(raw: Buffer, info: ModuleInfo, enabled: dict[str, AnalysisRule]) -> list[Finding]:
    found = []
    bounded_memory = all(m.maximum is not None for m in info.memories) and bool(info.memories)
    try:
        for loop in loops_of(raw, info):
            if (rule := enabled.get("detect_infinite_loops")) and loop.back_edge and not loop.exits:
                found.append(
                    Finding(rule.name, rule.severity, "loop without any conditional exit", loop.function, loop.offset)
                )
            if (rule := enabled.get("detect_memory_leaks")) and loop.grows_memory and not bounded_memory:
                found.append(
                    Finding(
                        rule.name,
                        rule.severity,
                        "memory.grow inside a loop with no memory maximum",
                        loop.function,
                        loop.offset,
                    )
                )
    except WasmFormatError as exc:
        # wasmtime validated the module, so this is an instruction the reader does not know yet.
        found.append(Finding("detect_unsafe_operations", "medium", f"code not fully analysed: {exc}"))
    return found
