"""The package layering holds: lower packages never import higher ones (issue 12). Read from the
source with ast, so a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "wcp360"
# package -> packages it must never import
FORBIDDEN = {
    "config": ["audit", "api", "identity", "defense", "workloads", "store", "cli", "authz"],
    "audit": ["api", "identity", "defense", "workloads", "cli"],
    "defense": ["api", "identity", "cli", "workloads", "system", "hosting"],
    "identity": ["api", "cli", "workloads"],
    "authz": ["api", "identity", "defense", "workloads", "cli", "system", "hosting"],
    "store": ["api", "identity", "defense", "workloads", "cli"],
    "workloads": ["api", "cli", "system", "hosting"],
    # The system tier (the root agent) knows nothing of the panel: no identity, policy or API.
    "system": ["api", "cli", "identity", "authz", "workloads", "hosting", "runtime"],
    "hosting": ["api", "cli", "workloads"],
    # The engine touches neither the store, the audit trail nor authz, nor the rest of workloads.
    "workloads/engine": ["store", "audit", "authz", "api", "cli", "identity", "defense", "runtime"],
    "api": ["cli"],
}
# Leaf parsers (importing nothing above config) the config loader validates with, so a bad rule or host is a
# file:key:line error when the config loads rather than at first use.
ALLOWED = {
    "wcp360.defense.conditions": "config/ids.py: the IDS rule language",
    "wcp360.workloads.engine.outbound": "config/sandbox.py: allowed_hosts entries",
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    wrong = []
    for path in sorted((SRC / package).rglob("*.py")):
        for module in imports_of(path):
            if any(module == leaf or module.startswith(f"{leaf}.") for leaf in ALLOWED):
                continue
            for higher in FORBIDDEN[package]:
                if module == f"wcp360.{higher}" or module.startswith(f"wcp360.{higher}."):
                    wrong.append(f"{path.relative_to(SRC)} imports {module}")
            outside = module.startswith("wcp360.workloads.") and not module.startswith("wcp360.workloads.engine")
            if package == "workloads/engine" and outside:
                wrong.append(f"{path.relative_to(SRC)} imports {module}")
    assert not wrong, "\n".join(wrong)
