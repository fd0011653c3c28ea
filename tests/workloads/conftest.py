"""WebAssembly test inputs: hand-written hostile modules (WAT) and a real C program built for WASI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import wasmtime

C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char line[256];
    long total = 0;
    while (fgets(line, sizeof line, stdin)) total += strtol(line, NULL, 10);
    char *buf = malloc(1 << 20);
    for (int i = 0; i < (1 << 20); i++) buf[i] = (char)i;
    printf("sum=%ld args=%d last=%d\n", total, argc, buf[12345]);
    free(buf);
    return 0;
}
"""

WAT = {
    "trivial": '(module (func (export "run") (result i32) i32.const 42))',
    "infinite_loop": '(module (func (export "spin") (loop $l (br $l))))',
    "bounded_loop": """(module (func (export "count") (param i32) (result i32) (local i32)
        (block $done (loop $next (br_if $done (i32.eqz (local.get 0)))
          (local.set 1 (i32.add (local.get 1) (local.get 0)))
          (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br $next))) (local.get 1)))""",
    "memory_bomb": '(module (memory 1) (func (export "grow") (loop $l (drop (memory.grow (i32.const 1))) (br $l))))',
    "bounded_memory_growth": """(module (memory 1 4) (func (export "grow") (param i32)
        (block $b (loop $l (br_if $b (i32.eqz (local.get 0))) (drop (memory.grow (i32.const 1)))
        (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br $l)))))""",
    "blocked_import": '(module (import "env" "abort" (func)) (func (export "f") call 0))',
    "unknown_import": '(module (import "evil" "syscall" (func)))',
    "start_function": "(module (func $s) (start $s))",
    "huge_memory": "(module (memory 20000))",
    "huge_table": "(module (table 100000 funcref))",
    "wasi_file_access": """(module (import "wasi_snapshot_preview1" "path_open"
        (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32))))""",
}


def wasm(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm(WAT[name]))


def many_globals(count: int) -> bytes:
    body = " ".join(f"(global i32 (i32.const {i}))" for i in range(count))
    return bytes(wasmtime.wat2wasm(f"(module {body})"))


@pytest.fixture(scope="session")
def c_program(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real C program compiled with clang --target=wasm32-wasi and Debian's wasi-libc."""
    clang = shutil.which("clang")
    assert clang is not None, "clang is needed (Debian: clang lld wasi-libc libclang-rt-dev-wasm32)"
    directory: Path = tmp_path_factory.mktemp("cprog")
    (directory / "prog.c").write_text(C_PROGRAM)
    subprocess.run(
        [clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "prog.c", "-o", "prog.wasm"],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return (directory / "prog.wasm").read_bytes()
