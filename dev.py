#!/usr/bin/env python3
"""Set up and run WCP360 from a fresh clone with nothing but python3 and the package registries.

    python3 dev.py serve [ARGS...]   run WCP360 on its embedded default (SQLite, 127.0.0.1:8080)
    python3 dev.py test  [ARGS...]   run the whole test suite (installs what it needs, starts PostgreSQL/Redis)
    python3 dev.py lint              ruff and mypy (strict)

Both install uv (pinned, into .tools/) when it is missing and sync the locked dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.9"
TOOLS = ROOT / ".tools"
STATE = ROOT / ".wcp360"


def uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    local = TOOLS / "bin" / "uv"
    if not local.exists():
        print(f"dev.py: installing uv {UV_VERSION} into {TOOLS}", file=sys.stderr)
        venv.create(TOOLS, with_pip=True)
        subprocess.run([str(TOOLS / "bin" / "python"), "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"], check=True)
    return str(local)


def sync(uv_bin: str) -> None:
    subprocess.run([uv_bin, "sync", "--frozen", "--quiet"], cwd=ROOT, check=True)


def run(uv_bin: str, *args: str, env: dict[str, str] | None = None) -> int:
    command = [uv_bin, "run", "--frozen", "--no-sync", *args]
    return subprocess.call(command, cwd=ROOT, env={**os.environ, **(env or {})})


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "lint"}:
        print(__doc__, file=sys.stderr)
        return 2
    uv_bin = uv()
    sync(uv_bin)
    if argv[0] == "serve":
        os.umask(0o077)
        config_dir, data_dir = STATE / "etc", STATE / "data"
        for directory in (config_dir, data_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings = config_dir / "wcp360.yml"
        if not settings.exists():
            # Development: same secure defaults, but no `chattr +a` on the audit log, so the
            # developer can delete .wcp360/ (see docs/audit.md). Production is the default mode.
            settings.write_text("mode: dev\n")
        return run(uv_bin, "wcp360", "serve", "--config-dir", str(config_dir), "--data-dir", str(data_dir), *argv[1:])
    if argv[0] == "lint":
        return run(uv_bin, "ruff", "check", "src", "tests", "benchmarks") or run(uv_bin, "mypy")
    subprocess.run(["bash", str(ROOT / "scripts" / "test-deps.sh")], check=True)
    return run(uv_bin, "pytest", *argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
