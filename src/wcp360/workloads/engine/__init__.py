"""The WebAssembly engine: everything about running a module that touches neither the store, the
audit trail nor authz. The module reader and static analysis, the limits and capability grants
that apply to a module, the sandbox (wasmtime with limits), the worker processes that confine
themselves and run it, their pool and its fair hand-out, and outbound HTTP. The rest of
`workloads` (modules, runs, snapshots, tasks, execution) stores, authorises and audits around it."""
