#!/usr/bin/env python3
"""Set up and run WCP360 from a fresh clone with nothing but python3 and the package registries.

    python3 dev.py serve [ARGS...]   run WCP360 on its embedded default (SQLite, 127.0.0.1:8080)
    python3 dev.py cli ARGS...       the wcp360 CLI against that server's state (.wcp360/etc, .wcp360/data)
    python3 dev.py test  [ARGS...]   run the whole test suite (installs what it needs, starts PostgreSQL/Redis)
    python3 dev.py lint              ruff and mypy (strict)

All install uv (pinned, into .tools/) when it is missing and sync the locked dependencies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.9"
TOOLS = ROOT / ".tools"
# The dev server's state; WCP360_DEV_STATE moves it (the lifecycle tests use their own).
STATE = Path(os.environ.get("WCP360_DEV_STATE") or ROOT / ".wcp360")
CONFIG_DIR, DATA_DIR = STATE / "etc", STATE / "data"
PIDFILE = STATE / "serve.pid"
VENV_BIN = ROOT / ".venv" / "bin"


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
    # Bytecode ahead of time: where PYTHONDONTWRITEBYTECODE is set (it is on the project's machines)
    # Python never writes .pyc, and every command compiled ~500 modules from source (1.4 s of the
    # CLI's 2.4 s). Installed packages are compiled when installed; our sources when they change.
    subprocess.run([uv_bin, "sync", "--frozen", "--quiet", "--compile-bytecode"], cwd=ROOT, check=True)
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "compileall", "-q", str(ROOT / "src")], cwd=ROOT, check=True
    )


def run(uv_bin: str, *args: str, env: dict[str, str] | None = None) -> int:
    command = [uv_bin, "run", "--frozen", "--no-sync", *args]
    return subprocess.call(command, cwd=ROOT, env={**os.environ, **(env or {})})


def dev_env() -> dict[str, str]:
    return {**os.environ, "WCP360_CONFIG_DIR": str(CONFIG_DIR), "WCP360_DATA_DIR": str(DATA_DIR)}


def running_server() -> int | None:
    """The pid of a `dev.py serve` still running from this checkout, if any."""
    try:
        pid = int(PIDFILE.read_text().split()[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    return pid


def _die_with_parent() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def serve(args: list[str]) -> int:
    os.umask(0o077)
    for directory in (CONFIG_DIR, DATA_DIR):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings = CONFIG_DIR / "wcp360.yml"
    if not settings.exists():
        # Development: same secure defaults, but no `chattr +a` on the audit log, so the
        # developer can delete .wcp360/ (see docs/audit.md). Production is the default mode.
        settings.write_text("mode: dev\n")
    other = running_server()
    if other is not None:
        print(f"dev.py: a server from this checkout is already running (pid {other}); stop it first", file=sys.stderr)
        return 1
    listen = next((a.split("=", 1)[1] for a in args if a.startswith("--listen=")), None)
    if listen is None and "--listen" in args and args.index("--listen") + 1 < len(args):
        listen = args[args.index("--listen") + 1]
    # The venv's own entry point, not `uv run`: signals reach the server itself, with nothing between;
    # and should this process be killed outright, the kernel sends the server SIGTERM too.
    server = subprocess.Popen(
        [str(VENV_BIN / "wcp360"), "serve", *args], cwd=ROOT, env=dev_env(), preexec_fn=_die_with_parent
    )
    PIDFILE.write_text(f"{server.pid}\n")

    def forward(signum: int, _frame: object) -> None:
        server.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    print(
        f"dev.py: WCP360 on http://{listen or '127.0.0.1:8080'} (state in {STATE}); "
        "the CLI for it: python3 dev.py cli admin list-users",
        file=sys.stderr,
        flush=True,
    )
    try:
        return server.wait()
    finally:
        PIDFILE.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "cli", "test", "lint"}:
        print(__doc__, file=sys.stderr)
        return 2
    uv_bin = uv()
    sync(uv_bin)
    if argv[0] == "serve":
        return serve(argv[1:])
    if argv[0] == "cli":
        if not DATA_DIR.is_dir() and argv[1:2] not in (["--help"], ["version"], ["config"], []):
            print("dev.py: no dev state yet: run `python3 dev.py serve` once first", file=sys.stderr)
            return 2
        return subprocess.call([str(VENV_BIN / "wcp360"), *argv[1:]], cwd=ROOT, env=dev_env())
    if argv[0] == "lint":
        return run(uv_bin, "ruff", "check", "src", "tests", "benchmarks") or run(uv_bin, "mypy")
    subprocess.run(["bash", str(ROOT / "scripts" / "test-deps.sh")], check=True)
    return run(uv_bin, "pytest", *argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
