"""`wcp360 modules list/show`: the host administrator sees each module's status, risk and compile
state (and why a compile failed), with nothing in a module's name reaching the terminal raw."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.cli.test_admin_cli import env, wcp360  # noqa: F401 (the env fixture)
from tests.helpers import STRONG
from wcp360.authz import Principal
from wcp360.config import load_config
from wcp360.runtime import Runtime

HELLO = b'(module (func (export "_start")))'


def _stored(env: dict[str, str]) -> tuple[str, str]:  # noqa: F811
    rt = Runtime.open(load_config(Path(env["WCP360_CONFIG_DIR"]), Path(env["WCP360_DATA_DIR"])))
    rt.modules.on_stored.clear()  # as with no server running: the uploads wait to be compiled
    try:
        user = rt.users.create(Principal.host_admin(), "dev", "dev@example.test", STRONG, ["developer"])
        owner = Principal(uuid.UUID(user.id), "dev", ("developer",), via="session")
        ready = rt.modules.upload(owner, "hello", HELLO, text_format=True)
        broken = rt.modules.upload(owner, "broken", HELLO.replace(b"_start", b"main"), text_format=True)
        digest = broken.digest
        rt.modules.compile_finished(digest, "module not loadable: \x1b[31mbad bytes", 1.5)
    finally:
        rt.close()
    return ready.id, broken.id


def test_list_and_show_name_the_compile_state(env: dict[str, str]) -> None:  # noqa: F811
    ready_id, broken_id = _stored(env)
    listed = wcp360(env, "modules", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    states = {m["id"]: m["compile"]["state"] for m in json.loads(listed.stdout)}
    # Ahead-of-time compiles are on by default: without a server, uploads stay `compiling` until one starts.
    assert states == {ready_id: "compiling", broken_id: "failed"}
    failed = wcp360(env, "modules", "list", "--compile-state", "failed")
    assert "broken" in failed.stdout and "hello" not in failed.stdout
    shown = wcp360(env, "modules", "show", broken_id)
    assert shown.returncode == 0 and "compile failed, 1.5 s: module not loadable" in shown.stdout
    assert "\x1b" not in shown.stdout  # the error quoted the module's bytes: made inert
    missing = wcp360(env, "modules", "show", "not-an-id")
    assert missing.returncode == 2 and missing.stderr.startswith("error: not a module id")
