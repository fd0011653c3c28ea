"""Files uploaded into a site (seed 001 §6): one file, or a zip or tar archive's entries, put
beneath the site's document root by the agent, as the tenant's.

Everything is checked before the first byte is written, so a refused upload changes nothing:
1. names: relative, no `..`, no absolute path or drive, no backslash or control character, not
   twice, not a file where another entry needs a directory (zip-slip and its tar cousins);
2. kinds: regular files and directories only (links, devices and FIFOs in an archive are refused);
3. sizes: entries and unpacked bytes as declared, against `tenants.websites.uploads` (a zip bomb
   is refused before it is inflated), and again as counted while reading (a header that lies);
4. content: every file streamed to clamd when scanning is on (fail closed when clamd is down).
Then each file is written beside its target under a fresh name (O_EXCL, no link followed, in a
directory opened component by component) and renamed over it: an upload never writes through
a link or hard link the tenant left at the target.
"""

from __future__ import annotations

import functools
import os
import secrets
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from wcp360.config.websites import UploadsConfig
from wcp360.system import beneath, clamd

CHUNK = 1024 * 1024
MAX_DEPTH = 32
FILE_MODE, EXEC_MODE, DIRECTORY_MODE = 0o640, 0o750, 0o2750
Format = Literal["file", "zip", "tar"]


class UploadRefused(Exception):
    pass


class MalwareFound(UploadRefused):
    def __init__(self, entry: str, signature: str) -> None:
        super().__init__(f"{entry} contains malware ({signature}); nothing was written")
        self.signature = signature


@dataclass(frozen=True)
class Entry:
    parts: tuple[str, ...]
    directory: bool
    size: int  # declared
    executable: bool
    open: Callable[[], IO[bytes]]

    @property
    def shown(self) -> str:
        return "/".join(self.parts)


@dataclass(frozen=True)
class Written:
    files: int
    directories: int
    bytes: int
    stripped_exec: int


def parts_of(name: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A relative path's components, or UploadRefused: nothing can name a place outside."""
    shown = repr(name[:120])
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or "\\" in name:
        raise UploadRefused(f"{shown}: control characters and backslashes are not allowed in names")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UploadRefused(f"{shown}: an absolute path; names are relative to the document root")
    parts = tuple(part for part in name.split("/") if part not in {"", "."})
    if ".." in parts:
        raise UploadRefused(f"{shown}: `..` would leave the document root")
    if not parts and not allow_empty:
        raise UploadRefused(f"{shown}: an empty name")
    if len(parts) > MAX_DEPTH or any(len(part.encode()) > 255 for part in parts):
        raise UploadRefused(f"{shown}: deeper than {MAX_DEPTH} or a name longer than 255 bytes")
    return parts


def entries(staged: IO[bytes], kind: Format, target: str, settings: UploadsConfig) -> Iterator[Entry]:
    """The upload's entries beneath `target`, validated for names, kinds and declared sizes."""
    base = parts_of(target, allow_empty=kind != "file")
    if kind == "file":
        size = os.fstat(staged.fileno()).st_size
        _declared(1, size, settings)
        yield Entry(base, False, size, False, lambda: _reopened(staged))
        return
    found = list(_zip_entries(staged, settings) if kind == "zip" else _tar_entries(staged, settings))
    _declared(len(found), sum(entry.size for entry in found), settings)
    seen: dict[tuple[str, ...], bool] = {}
    for entry in found:
        parts = base + entry.parts
        if parts in seen and not (seen[parts] and entry.directory):
            raise UploadRefused(f"{entry.shown} appears twice in the archive")
        for depth in range(1, len(parts)):
            if seen.get(parts[:depth]) is False:
                raise UploadRefused(f"{entry.shown} is beneath {'/'.join(parts[:depth])}, which is a file")
        seen[parts] = entry.directory
        yield Entry(parts, entry.directory, entry.size, entry.executable, entry.open)


def _reopened(staged: IO[bytes]) -> IO[bytes]:
    """The staged file from its start, on a descriptor of its own (closed after each reading)."""
    stream = os.fdopen(os.dup(staged.fileno()), "rb")
    stream.seek(0)
    return stream


def _declared(count: int, size: int, settings: UploadsConfig) -> None:
    if count > settings.max_entries:
        raise UploadRefused(
            f"{count} entries; the limit is {settings.max_entries} (tenants.websites.uploads.max_entries)"
        )
    if size > settings.max_unpacked:
        raise UploadRefused(
            f"{size} bytes unpacked; the limit is {settings.max_unpacked} (tenants.websites.uploads.max_unpacked)"
        )


def _zip_entries(staged: IO[bytes], settings: UploadsConfig) -> Iterator[Entry]:
    try:
        archive = zipfile.ZipFile(staged)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRefused(f"not a zip archive ({exc})") from None
    infos = archive.infolist()
    _declared(len(infos), 0, settings)
    for info in infos:
        mode = info.external_attr >> 16  # Unix mode, when the zip was made on Unix (else 0 or bare bits)
        kind = stat.S_IFMT(mode)
        if info.flag_bits & 0x1:
            raise UploadRefused(f"{info.filename[:120]!r} is encrypted; it cannot be scanned")
        if kind and kind not in {stat.S_IFREG, stat.S_IFDIR}:
            raise UploadRefused(f"{info.filename[:120]!r} is a link or a special file; only files and directories")
        parts = parts_of(info.filename)
        yield Entry(parts, info.is_dir(), info.file_size, bool(mode & 0o111), functools.partial(archive.open, info))


def _tar_entries(staged: IO[bytes], settings: UploadsConfig) -> Iterator[Entry]:
    try:
        archive = tarfile.open(fileobj=staged, mode="r:*")  # noqa: SIM115 - read while the upload lasts
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UploadRefused(f"not a tar archive ({exc})") from None
    count = 0
    try:
        for member in archive:
            count += 1
            _declared(count, 0, settings)  # a million headers are not all read to find out
            if not (member.isreg() or member.isdir()):
                raise UploadRefused(f"{member.name[:120]!r} is a link or a special file; only files and directories")
            parts = parts_of(member.name)
            yield Entry(
                parts, member.isdir(), member.size, bool(member.mode & 0o111),
                functools.partial(_member, archive, member),
            )  # fmt: skip
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UploadRefused(f"a damaged tar archive ({exc})") from None


def _member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    extracted = archive.extractfile(member)
    if extracted is None:
        raise UploadRefused(f"{member.name[:120]!r} cannot be read")
    return extracted


def _chunks(entry: Entry, settings: UploadsConfig, counted: list[int]) -> Iterator[bytes]:
    """The entry's bytes, counted against what it declared and the upload's whole allowance."""
    read = 0
    try:
        with entry.open() as stream:
            while chunk := stream.read(CHUNK):
                read += len(chunk)
                counted[0] += len(chunk)
                if read > entry.size or counted[0] > settings.max_unpacked:
                    raise UploadRefused(
                        f"{entry.shown} holds more than it declares (tenants.websites.uploads.max_unpacked)"
                    )
                yield chunk
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise UploadRefused(f"{entry.shown}: damaged ({exc})") from None


def check(found: list[Entry], settings: UploadsConfig) -> bool:
    """Read every file once: sizes as counted, and clamd's verdict when scanning is on. Whether
    it was scanned."""
    counted = [0]
    scanning = settings.scan.enabled
    for entry in found:
        if entry.directory:
            continue
        chunks = _chunks(entry, settings, counted)
        if scanning:
            signature = clamd.scan(settings.scan.clamd_socket, chunks)
            if signature is not None:
                raise MalwareFound(entry.shown, signature)
        else:
            for _ in chunks:
                pass
    return scanning


def write(
    found: list[Entry], document_root: Path, uid: int, gid: int, keep_exec: bool, settings: UploadsConfig
) -> Written:
    files = directories = total = stripped = 0
    counted = [0]
    with beneath.opened_root(document_root) as root:
        for entry in found:
            parent = _directories(root, entry.parts[:-1] if not entry.directory else entry.parts, uid, gid)
            try:
                if entry.directory:
                    directories += 1
                    continue
                executable = keep_exec and entry.executable
                stripped += entry.executable and not executable
                total += _write_file(parent, entry, uid, gid, EXEC_MODE if executable else FILE_MODE, settings, counted)
                files += 1
            finally:
                if parent != root:
                    os.close(parent)
    return Written(files, directories, total, stripped)


def _directories(root: int, parts: tuple[str, ...], uid: int, gid: int) -> int:
    fd = root
    for part in parts:
        child = beneath.make_directory(fd, part, uid, gid, DIRECTORY_MODE, existing_ok=True)
        if fd != root:
            os.close(fd)
        fd = child
    return fd


def _write_file(
    parent: int, entry: Entry, uid: int, gid: int, mode: int, settings: UploadsConfig, counted: list[int]
) -> int:
    name = entry.parts[-1]
    temporary = f".wcp360-upload-{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600, dir_fd=parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchown(out.fileno(), uid, gid)
            for chunk in _chunks(entry, settings, counted):
                out.write(chunk)
                written += len(chunk)
            os.fchmod(out.fileno(), mode)
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        os.unlink(temporary, dir_fd=parent)
        raise
    return written
