"""Prometheus metrics: the seed's five security counters and the control plane's own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

AUTHENTICATION_FAILURES = Counter("authentication_failures_total", "Failed authentications", ["reason"])
AUTHORIZATION_DENIALS = Counter("authorization_denials_total", "Policy denials", ["permission"])
SUSPICIOUS_MODULES = Counter("suspicious_modules_detected_total", "Modules flagged by static analysis")
RATE_LIMIT_VIOLATIONS = Counter("rate_limit_violations_total", "Requests refused by a rate limit")
SANDBOX_VIOLATIONS = Counter("sandbox_violations_total", "Sandbox limit or capability violations")
AUDIT_EVENTS = Counter("audit_events_total", "Audit events recorded", ["action"])
AUDIT_WRITE_FAILURES = Counter("audit_write_failures_total", "Audit sink write failures")
HTTP_REQUESTS = Histogram(
    "http_request_duration_seconds", "HTTP request latency by route template", ["method", "route", "status"]
)
AUDIT_FORWARD_FAILURES = Counter(
    "audit_forward_failures_total", "Failed deliveries of audit events to a copy (retried)", ["destination"]
)
ALERTS_SENT = Counter("alerts_sent_total", "Alerts delivered", ["destination"])
ALERT_FAILURES = Counter(
    "alert_failures_total", "Alert deliveries that failed (retried, then given up)", ["destination"]
)
EXECUTIONS = Counter("executions_total", "Module executions by outcome", ["outcome"])
EXECUTION_SECONDS = Histogram("execution_duration_seconds", "Module execution time (in the worker)")
EXECUTION_QUEUE = Gauge("execution_queue_depth", "Executions waiting for a free worker")
WORKER_RESTARTS = Counter("worker_restarts_total", "Workers killed (hung, crashed) and replaced", ["reason"])
OUTBOUND_REQUESTS = Counter(
    "module_outbound_requests_total", "Outbound HTTP requests modules asked for, by result", ["result"]
)
LOST_RUNS = Counter("lost_runs_total", "Queued or running runs whose process stopped (found by their heartbeat)")
SCHEDULED_RUNS = Counter("scheduled_runs_total", "Task occurrences claimed and started by this process")
SCHEDULER_CONFLICTS = Counter(
    "scheduler_claim_conflicts_total", "Ticks whose claim lost a race to another scheduler (nothing was stored)"
)
CONNECTIONS_REFUSED = Counter(
    "http_connections_closed_total",
    "Connections closed before a request: slow headers or too many per address",
    ["reason"],
)
# Per tenant, from its cgroups through the agent, refreshed at each scrape of /metrics.
TENANT_CPU_SECONDS = Gauge("tenant_cpu_seconds", "CPU time used by the tenant's processes (cgroup)", ["tenant"])
TENANT_MEMORY_BYTES = Gauge("tenant_memory_bytes", "Memory charged to the tenant's cgroup", ["tenant"])
TENANT_PIDS = Gauge("tenant_pids", "Processes and threads in the tenant's cgroup", ["tenant"])
CERTIFICATE_EXPIRY_SECONDS = Gauge(
    "certificate_expiry_seconds", "Seconds until the certificate of a site's domain expires", ["domain"]
)
TENANT_PROCESSES = Gauge("tenant_processes", "The tenant's supervised processes by status", ["tenant", "status"])
