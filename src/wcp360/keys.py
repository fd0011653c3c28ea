"""Host secrets generated on first start: files 0600 in a 0700 directory under the data dir.

- `jwt.secret`: HMAC key for access tokens when security.yml sets no secret.
- `data.key`: Fernet key encrypting secrets at rest in the database (TOTP seeds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet


def adopt(fd: int, parent: Path) -> None:
    """Give a file root just made in `parent` to `parent`'s owner.

    Root runs the agent and the host administrator's CLI against the service user's data and log
    directories; a secret, audit file or directory they create there must stay the service user's,
    or the server (which runs as that user) could no longer read or append to it."""
    if os.geteuid() != 0:
        return
    owner = os.stat(parent)
    if owner.st_uid != 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)


def ensure_private_dir(path: Path) -> Path:
    if not path.is_dir():
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for made in reversed(missing):  # outermost first, so each adopts its parent's owner
            fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                adopt(fd, made.parent)
            finally:
                os.close(fd)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def read_or_create(path: Path, make: bytes) -> bytes:
    """Return the file's bytes, creating it with `make` (0600) if absent.

    Two processes starting at once agree on one value: the file is written whole under a unique
    temporary name and then hard-linked into place, which fails if it exists, so the loser reads
    the winner's complete file (never one that is still being written).
    """
    ensure_private_dir(path.parent)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        adopt(fd, path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(make + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
            return make
        except FileExistsError:
            pass  # another process won the race: use its value
        finally:
            os.unlink(temporary)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"{path} is mode {mode:04o}; secrets must be 0600")
    return path.read_bytes().strip()


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, 0600 from the first byte (never world-readable).

    The temporary name is unique, so two processes writing the same path never share it.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    adopt(fd, path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class HostKeys:
    def __init__(self, secrets_dir: Path) -> None:
        self.dir = secrets_dir
        self.jwt_secret = read_or_create(secrets_dir / "jwt.secret", base64.urlsafe_b64encode(secrets.token_bytes(48)))
        self._data_key = read_or_create(secrets_dir / "data.key", Fernet.generate_key())
        self.fernet = Fernet(self._data_key)

    def derive(self, label: str) -> bytes:
        """A key for one purpose, derived from the host data key (HMAC-SHA256 over the label)."""
        return hmac.new(self._data_key, label.encode(), hashlib.sha256).digest()

    def encrypt(self, value: str) -> str:
        return self.fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self.fernet.decrypt(token.encode()).decode()
