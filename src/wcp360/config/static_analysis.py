"""`static_analysis.yml`: WASM analysis rules and the quarantine policy (seed 003)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from wcp360.config.base import Section

Severity = Literal["low", "medium", "high", "critical"]
RuleName = Literal[
    "detect_infinite_loops", "detect_memory_leaks", "detect_unsafe_operations", "check_import_restrictions"
]


class ImportRestrictions(Section):
    allowed_imports: list[str] = []
    blocked_imports: list[str] = []


class AnalysisRule(Section):
    name: RuleName
    severity: Severity
    enabled: bool = True
    config: ImportRestrictions | None = None

    @model_validator(mode="after")
    def _config_only_for_imports(self) -> AnalysisRule:
        if self.config is not None and self.name != "check_import_restrictions":
            raise ValueError(f"rule {self.name} takes no config")
        return self


class QuarantinePolicy(Section):
    enabled: bool = True
    high_risk_threshold: int = Field(default=8, ge=0)
    medium_risk_threshold: int = Field(default=5, ge=0)
    auto_quarantine: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> QuarantinePolicy:
        if self.medium_risk_threshold > self.high_risk_threshold:
            raise ValueError("medium_risk_threshold must not exceed high_risk_threshold")
        return self


class StaticAnalysisConfig(Section):
    enabled: bool = True
    rules: list[AnalysisRule] = [
        AnalysisRule(name="detect_infinite_loops", severity="high"),
        AnalysisRule(name="detect_memory_leaks", severity="medium"),
        AnalysisRule(name="detect_unsafe_operations", severity="high"),
        AnalysisRule(
            name="check_import_restrictions",
            severity="medium",
            config=ImportRestrictions(
                allowed_imports=["env.memory", "env.table"], blocked_imports=["env.exit", "env.abort"]
            ),
        ),
    ]
    quarantine: QuarantinePolicy = QuarantinePolicy()


class StaticAnalysisFile(Section):
    static_analysis: StaticAnalysisConfig = StaticAnalysisConfig()
