"""WebAssembly workloads: modules, static analysis, quarantine (and, next, sandboxed execution)."""
