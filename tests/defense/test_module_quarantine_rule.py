"""The seed's suspicious_module_upload rule quarantines a module through the IDS hook."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers import signed_in
from tests.workloads.conftest import wasm
from wcp360.runtime import Runtime


def test_medium_risk_upload_is_quarantined_by_the_ids(web: TestClient, defended: Runtime) -> None:
    dev = signed_in(web, defended, "dev", ["developer"])
    clean = web.post(
        "/api/v1/modules?name=ok", content=wasm("trivial"), headers={**dev.headers, "Content-Type": "application/wasm"}
    ).json()
    assert clean["status"] == "active"
    # A blocked import scores 5: flagged medium by the analysis (still active), then the IDS rule
    # `module_size > 50MB or contains_suspicious_patterns` quarantines it.
    flagged = web.post(
        "/api/v1/modules?name=flagged",
        content=wasm("blocked_import"),
        headers={**dev.headers, "Content-Type": "application/wasm"},
    ).json()
    assert flagged["risk_score"] == 5 and flagged["status"] == "quarantined"
