"""ClamAV's clamd (Debian's clamav-daemon) on a Unix socket in the test's directory, with a
signature database of our own: these machines cannot download ClamAV's, so it holds one
signature that finds the EICAR test string (the industry's harmless test "virus")."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from wcp360.system import clamd

READY_TIMEOUT = 300.0
# The 68-byte EICAR test file, assembled so this source is not itself flagged by a scanner.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "WCP360.Test.EICAR"


@contextlib.contextmanager
def clamd_server(directory: Path) -> Iterator[Path]:
    """clamd answering on the returned socket; stopped afterwards."""
    database = directory / "db"
    database.mkdir(parents=True, exist_ok=True)
    # An extended (.ndb) signature: name, any file type, any offset, the string in hex.
    (database / "wcp360-test.ndb").write_text(f"{SIGNATURE}:0:*:{b'EICAR-STANDARD-ANTIVIRUS-TEST-FILE'.hex()}\n")
    socket = directory / "clamd.sock"
    config = directory / "clamd.conf"
    config.write_text(
        f"LocalSocket {socket}\n"
        "Foreground yes\n"
        f"DatabaseDirectory {database}\n"
        f"PidFile {directory / 'clamd.pid'}\n"
        f"LogFile {directory / 'clamd.log'}\n"
        "StreamMaxLength 600M\n"
        "MaxFileSize 600M\n"
        "MaxScanSize 600M\n"
    )
    process = subprocess.Popen(
        ["clamd", "--config-file", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not clamd.ping(socket):
            assert process.poll() is None, (directory / "clamd.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "clamd did not answer"
            time.sleep(0.05)
        yield socket
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
