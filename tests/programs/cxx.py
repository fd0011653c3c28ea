"""A C++ program built with WebAssembly exception handling, with Debian's clang-22 and wasi libc++.

Debian builds its wasm32 libc++abi without exceptions (it has no __cxa_throw), so the exception
runtime is built here from LLVM's own libc++abi and libunwind sources, the ones the ziglang wheel
on PyPI carries (the same LLVM 22). `-wasm-use-legacy-eh=false` makes clang emit the standard
encoding (try_table, exnref) that wasmtime validates, not the legacy try/catch.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.programs.pypi import cache_dir, extracted

HERE = Path(__file__).parent
# Only its LLVM sources are used, the same on every platform: the x86_64 wheel is fetched everywhere.
ZIG_VERSION, ZIG_PLATFORM = "0.17.1", "manylinux_2_12_x86_64"
ZIG_SHA256 = "ea6cc5d87b033cf0aedfbc8f9549a908cae6c50ac31f1698188fa48a74524b54"
EH = ["-fwasm-exceptions", "-mexception-handling", "-mllvm", "-wasm-use-legacy-eh=false"]
TARGET = ["--target=wasm32-wasi", "-Wno-deprecated"]
# libc++abi's sources for the exception runtime (the demangler: what() of terminate messages).
ABI_SOURCES = [
    "abort_message", "cxa_aux_runtime", "cxa_default_handlers", "cxa_exception", "cxa_exception_storage",
    "cxa_guard", "cxa_handlers", "cxa_personality", "cxa_vector", "cxa_virtual", "fallback_malloc",
    "private_typeinfo", "stdlib_exception", "stdlib_stdexcept", "stdlib_typeinfo", "stdlib_new_delete",
    "cxa_demangle",
]  # fmt: skip


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is needed (scripts/test-deps.sh installs clang-22 lld-22 llvm-22 libc++-22-dev-wasm32)"
    return found


def _run(*command: str | Path, cwd: Path) -> None:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stderr[-3000:]}"


def exception_runtime() -> Path:
    """libc++abi + libunwind (wasm) + the __cpp_exception tag, built with exceptions; cached."""
    library = cache_dir() / "cxx-eh" / f"libcxx-eh-{ZIG_SHA256[:16]}.a"
    if library.exists():
        return library
    llvm = extracted("ziglang", ZIG_VERSION, ZIG_SHA256, "ziglang/lib", platform=ZIG_PLATFORM)
    build = library.parent / "build"
    build.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{llvm / 'libcxxabi/include'}", f"-I{llvm / 'libunwind/include'}", f"-I{llvm / 'libcxx/src'}"]
    defines = ["-D_LIBCXXABI_BUILDING_LIBRARY", "-D_LIBCPP_BUILDING_LIBRARY", "-D_LIBCXXABI_HAS_NO_THREADS"]
    defines += ["-DLIBCXXABI_NON_DEMANGLING_TERMINATE", "-DNDEBUG"]
    objects = []
    cxx = [tool("clang++-22"), *TARGET, *EH, "-O2", "-std=c++23", *defines, *includes]
    for name in ABI_SOURCES:
        objects.append(build / f"{name}.o")
        _run(*cxx, "-c", llvm / "libcxxabi/src" / f"{name}.cpp", "-o", objects[-1], cwd=build)
    unwind = [tool("clang-22"), *TARGET, *EH, "-O2", "-D__USING_WASM_EXCEPTIONS__", "-D_LIBUNWIND_HIDE_SYMBOLS"]
    objects.append(build / "unwind.o")
    _run(*unwind, "-DNDEBUG", *includes, "-c", llvm / "libunwind/src/Unwind-wasm.c", "-o", objects[-1], cwd=build)
    tag = [tool("clang-22"), "--target=wasm32-wasip1", "-mexception-handling"]
    objects.append(build / "cpp_exception.o")
    _run(*tag, "-c", HERE / "cpp_exception.S", "-o", objects[-1], cwd=build)
    partial = library.with_suffix(".partial")
    _run(tool("llvm-ar-22"), "rcs", partial, *objects, cwd=build)
    partial.rename(library)
    return library


def exceptions_program() -> bytes:
    """tests/programs/exceptions.cpp, built with exceptions; cached by its source."""
    source = HERE / "exceptions.cpp"
    key = hashlib.sha256(source.read_bytes() + ZIG_SHA256.encode()).hexdigest()[:16]
    program = cache_dir() / "cxx-eh" / f"exceptions-{key}.wasm"
    if not program.exists():
        runtime = exception_runtime()
        partial = program.with_suffix(".partial")
        cxx = [tool("clang++-22"), *TARGET, *EH, "-O2"]
        _run(*cxx, source, "-o", partial, "-nostdlib++", "-lc++", runtime, cwd=program.parent)
        partial.rename(program)
    return program.read_bytes()
