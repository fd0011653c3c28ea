"""`wcp360 agent`: the Unix socket server of the system tier.

The socket lives in a directory only root and the service user's group can enter (0750), is
itself 0660 root:<group>, and every connection is checked with SO_PEERCRED before a byte is read:
only root and the service user may talk to the agent. One request per connection, answered, closed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

import structlog

from wcp360 import audit
from wcp360.system import protocol
from wcp360.system.dispatch import Dispatcher

_log = structlog.get_logger("wcp360.agent")
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
READ_TIMEOUT = 30.0  # seconds a peer may take to send its one request


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    return _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))


def bind_socket(path: Path, group_gid: int | None) -> socket.socket:
    """Listen at `path`: its directory 0750 root:<group>, the socket 0660 root:<group> (without a
    group, 0700 and 0600: root only). A stale socket is replaced; anything else there is refused."""
    directory = path.parent
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{directory} is not a directory")
    os.chown(directory, 0, group_gid if group_gid is not None else 0)
    os.chmod(directory, 0o750 if group_gid is not None else 0o700)
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket; refusing to replace it")
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # never reachable wider than 0600 between bind and chmod
    try:
        server.bind(str(path))
    finally:
        os.umask(previous)
    os.chown(path, 0, group_gid if group_gid is not None else 0)
    os.chmod(path, 0o660 if group_gid is not None else 0o600)
    server.listen(64)
    return server


class AgentServer:
    def __init__(self, dispatcher: Dispatcher, listener: socket.socket, allowed_uids: Iterable[int]) -> None:
        self.dispatcher = dispatcher
        self.listener = listener
        self.allowed_uids = frozenset(allowed_uids)
        self._stopping = threading.Event()

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            pid, uid, gid = peer_credentials(conn)
            if uid not in self.allowed_uids:
                # Refused before a byte is read: nothing the peer sent is parsed.
                audit.record(
                    "agent_connection_refused",
                    actor_id=f"uid:{uid}",
                    outcome="denied",
                    resource_type="agent",
                    details={"pid": pid, "uid": uid, "gid": gid},
                )
                return
            conn.settimeout(READ_TIMEOUT)
            try:
                request = protocol.parse_request(protocol.receive_bytes(conn))
            except (protocol.ProtocolError, OSError) as exc:
                audit.record(
                    "agent_bad_request",
                    actor_id=f"uid:{uid}",
                    outcome="denied",
                    resource_type="agent",
                    details={"pid": pid, "reason": str(exc)[:300]},
                )
                return
            conn.settimeout(None)
            reply = self.dispatcher.handle(request, peer=f"pid:{pid} uid:{uid}")
            try:
                protocol.send(conn, reply)
            except OSError as exc:
                _log.warning("agent reply not delivered", error=str(exc))
