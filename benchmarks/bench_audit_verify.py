"""`wcp360 audit verify` throughput beside hashlib.sha256 over the same lines (the floor).

    .venv/bin/python benchmarks/bench_audit_verify.py [--events 200000] [--rounds 3]

The log is written by the real `AuditLogFile` (a checkpoint every 1,000 events, the default),
with the benchmark's login-failure event (~400 bytes a line). Verification reads every line,
checks it is canonical JSON, its sequence, its link and its chain hash, and each checkpoint's
Ed25519 signature; the floor hashes the same raw lines once each, nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from bench_audit import EVENT

from wcp360.audit.logfile import AuditLogFile, read_lines
from wcp360.audit.signing import SigningKeys
from wcp360.audit.verify import verify


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "log"
        keys = SigningKeys(Path(tmp) / "keys")
        log = AuditLogFile(directory, keys, 10**12, 10, False, 1000)
        for _ in range(args.events // 1000):
            log.append([dict(EVENT) for _ in range(1000)], fsync=False)
        log.close()
        lines = [raw for path in sorted(directory.glob("audit*")) for _, raw in read_lines(path)]
        size = sum(len(line) + 1 for line in lines)
        trusted = keys.public_keys()
        verified, hashed = [], []
        for _ in range(args.rounds):
            began = time.perf_counter()
            report = verify(directory, trusted)
            verified.append(time.perf_counter() - began)
            assert report.ok and report.events == args.events, report.problem
            began = time.perf_counter()
            for line in lines:
                hashlib.sha256(line).digest()
            hashed.append(time.perf_counter() - began)
        v, h = statistics.median(verified), statistics.median(hashed)
        print(f"{args.events:,} events, {len(lines) - args.events:,} checkpoints, {size / 1e6:.1f} MB")
        print(f"verify: {v:.2f} s, {args.events / v:,.0f} events/s")
        print(f"sha256 over the same lines: {h:.3f} s, {args.events / h:,.0f} lines/s")
        print(f"verify / sha256 floor: {v / h:.1f}x the time")


if __name__ == "__main__":
    main()
