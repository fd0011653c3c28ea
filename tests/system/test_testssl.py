"""testssl.sh (Debian's) against a site and the panel's hostname as the agent serves them
(scripts/testssl_sites.py): no protocol below TLS 1.2, no weak or non-forward-secret cipher,
HSTS present. About 40 seconds; a real scanner against the real nginx, on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "testssl_sites.py"


def test_testssl_finds_nothing_weak() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1800, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("site.wcp360.test", "panel.wcp360.test"):
        assert f"## {name}" in run.stdout
    assert run.stdout.count("- TLS1_1: not offered") == 2 and "PROBLEM" not in run.stdout
    assert run.stdout.count("- HSTS_time: 730 days") == 2
