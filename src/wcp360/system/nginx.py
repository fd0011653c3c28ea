"""nginx, run by the agent: the hardened configuration, applied whole and atomically.

Every apply writes a complete new generation of the configuration (main file, one file per site,
the ACME answers), has `nginx -t` check that whole candidate, then swaps the `current` link and
signals the master (or starts it) and waits until the new generation answers on a status socket
only root can reach. A candidate nginx refuses changes nothing that is serving: the error names
the site and line. Values reach the files only after validation to narrow alphabets (domain
names, tenant and site names, paths the agent built), and `_token` refuses anything else, so no
value can end a directive.

The agent's nginx is its own master (`nginx -c <state>/web/current/nginx.conf`), not Debian's
unit; it keeps serving when the agent restarts (the pid file finds it again).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wcp360.config.tls import TlsConfig
from wcp360.config.websites import WebsitesConfig

SiteKind = Literal["static", "php", "proxy"]
GENERATIONS_KEPT = 3
READY_TIMEOUT = 30.0  # seconds for a started or signalled master to serve the new generation
_SAFE = re.compile(r"^[A-Za-z0-9._:/\[\]@=-]+$")
# Types worth compressing beside text/html (always, for nginx). Never what php or proxy sites'
# applications answer: see `_compression`.
TEXT_TYPES = "text/plain text/css text/xml application/javascript application/json application/xml image/svg+xml"
_LOG_PREFIX = re.compile(r"^[\d/: ]*\[\w+\] [\d#]*: ")
_FAILED_AT = re.compile(r" in (?P<file>/\S+):(?P<line>\d+)")


class ApplyFailed(Exception):
    """nginx refused the candidate configuration; what serves is unchanged."""

    def __init__(self, message: str, site: str | None, line: int | None) -> None:
        super().__init__(message)
        self.site = site
        self.line = line


class NginxUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Vhost:
    """One site's server blocks, from values the agent validated."""

    key: str  # "<tenant>.<site>": the file's name and the rate-limit zones'
    domains: tuple[str, ...]
    kind: SiteKind
    document_root: str
    upstream: str | None  # the tenant's Unix socket (php, proxy)
    autoindex: bool
    hsts: bool
    suspended: bool
    certificate: tuple[str, str] | None  # (full chain, key) once issued
    stapling: bool
    log_dir: str


@dataclass(frozen=True)
class PanelVhost:
    """The panel's own hostname, proxied to its listener (with client certificates if tls.yml asks)."""

    hostname: str
    upstream: str  # host:port of the panel's listener
    certificate: tuple[str, str] | None
    client_ca: str | None
    verify_client: Literal["on", "optional", "optional_no_ca"] | None
    log_dir: str


def _token(value: str) -> str:
    """A value as it goes into the configuration: refused unless it is a plain token."""
    if not _SAFE.match(value):
        raise ValueError(f"refusing to write {value!r} into nginx's configuration")
    return value


class Nginx:
    def __init__(self, settings: WebsitesConfig, tls: TlsConfig, root: Path) -> None:
        self.settings = settings
        self.tls = tls
        self.root = root  # <agent state>/web
        self.run_dir = root / "run"
        self.log_dir = root / "logs"
        self.site_log_dir = self.log_dir / "sites"
        self._generation = 0

    # -- rendering -------------------------------------------------------------------------------

    def _listen(self, port: int, extra: str = "") -> str:
        return "".join(f"    listen {_token(address)}:{port}{extra};\n" for address in self.settings.listen_addresses)

    def main_config(self, directory: Path, generation: int) -> str:
        s = self.settings
        run, logs = _token(str(self.run_dir)), _token(str(self.log_dir))
        temp_paths = "".join(
            f"    {kind}_temp_path {run}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        resolver = f"    resolver {' '.join(_token(r) for r in s.resolvers)} valid=300s;\n" if s.resolvers else ""
        return (
            f"# WCP360 generation {generation}: written by the agent; edits are replaced on the next apply.\n"
            f"user {_token(s.nginx_user)};\n"
            "worker_processes auto;\n"
            f"pid {run}/nginx.pid;\n"
            f"error_log {logs}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "    include /etc/nginx/mime.types;\n"
            "    default_type application/octet-stream;\n"  # strict MIME: unknown types are not sniffed as HTML
            "    server_tokens off;\n"
            "    server_names_hash_bucket_size 128;\n"  # long names (253 characters) fit
            "    map_hash_bucket_size 128;\n"  # the ACME answers' keys (71 characters)
            "    sendfile on;\n"
            "    tcp_nopush on;\n"
            # disable_symlinks opens every component of a path with O_NOFOLLOW and compares owners:
            # a quarter of a static site's throughput here (16 KiB over HTTPS: 20k vs 26k req/s,
            # benchmarks/README.md). Cached descriptors carry the check's result; a file swapped
            # for a link is checked again within open_file_cache_valid, and meanwhile the
            # descriptor serves the file that passed, never the link's target (tested).
            "    open_file_cache max=10000 inactive=60s;\n"
            "    open_file_cache_valid 10s;\n"
            "    keepalive_timeout 30s;\n"
            "    client_header_timeout 10s;\n"  # slow-header clients let go (request flooding)
            "    client_body_timeout 10s;\n"
            "    send_timeout 30s;\n"
            "    large_client_header_buffers 4 8k;\n"
            f"{temp_paths}"
            "    access_log off;\n"
            "    gzip off;\n"  # on per site, for text types only (see _compression)
            f"    ssl_protocols {self._protocols()};\n"
            f"    ssl_ciphers {_token(self.tls.openssl_ciphers())};\n"
            "    ssl_prefer_server_ciphers off;\n"  # Mozilla intermediate: every offered suite is strong
            "    ssl_ecdh_curve X25519:prime256v1:secp384r1;\n"
            "    ssl_session_cache shared:wcp360_tls:10m;\n"
            "    ssl_session_timeout 1d;\n"
            "    ssl_session_tickets off;\n"  # tickets' keys never rotate in nginx: forward secrecy would end
            f"{resolver}"
            "    limit_req_status 429;\n"
            "    limit_conn_status 429;\n"
            "    map $uri $wcp360_acme {\n"
            '        default "";\n'
            f"        include {directory}/acme-answers.conf;\n"
            "    }\n"
            "    server {\n"  # the agent's readiness check: which generation answers
            f"        listen unix:{run}/status.sock;\n"
            f'        location = /generation {{ return 200 "{generation}"; }}\n'
            "        location / { return 404; }\n"
            "    }\n"
            "    server {\n"  # a name no site claims: ACME answers only, nothing else
            f"{self._listen(s.http_port, ' default_server').replace('    listen', '        listen')}"
            "        server_name _;\n"
            f"        include {directory}/acme-location.conf;\n"
            "        location / { return 404; }\n"
            "    }\n"
            "    server {\n"  # TLS for a name without a certificate here: refused in the handshake
            f"{self._listen(s.https_port, ' ssl default_server').replace('    listen', '        listen')}"
            "        ssl_reject_handshake on;\n"
            "    }\n"
            f"    include {directory}/sites/*.conf;\n"
            "}\n"
        )

    def _protocols(self) -> str:
        return "TLSv1.3" if self.tls.min_version == "1.3" else "TLSv1.2 TLSv1.3"

    @staticmethod
    def acme_location() -> str:
        return (
            "location ^~ /.well-known/acme-challenge/ {\n"
            "    default_type text/plain;\n"
            '    if ($wcp360_acme = "") { return 404; }\n'
            "    return 200 $wcp360_acme;\n"
            "}\n"
        )

    @staticmethod
    def acme_answers(answers: dict[str, str]) -> str:
        """HTTP-01 answers by token, served from the configuration (no files for nginx to read)."""
        return "".join(
            f'"/.well-known/acme-challenge/{_token(token)}" "{_token(answer)}";\n' for token, answer in answers.items()
        )

    def site_config(self, vhost: Vhost, directory: Path) -> str:
        s = self.settings
        names = " ".join(_token(d) for d in vhost.domains)
        zone = _token(vhost.key)
        http = (
            "server {\n"
            f"{self._listen(s.http_port)}"
            f"    server_name {names};\n"
            f"    include {directory}/acme-location.conf;\n"
            + (
                "    location / { return 301 https://$host$request_uri; }\n"
                if vhost.certificate
                else "    location / { return 503; }\n"  # no certificate yet: nothing is served in clear
            )
            + "}\n"
        )
        if vhost.certificate is None:
            return f"# {vhost.key}: waiting for its certificate\n{http}"
        chain, key = (_token(path) for path in vhost.certificate)
        logs = _token(vhost.log_dir)
        headers = "    add_header X-Content-Type-Options nosniff always;\n"
        headers += "    add_header Referrer-Policy strict-origin-when-cross-origin always;\n"
        if vhost.hsts:
            headers += (
                f'    add_header Strict-Transport-Security "max-age={int(s.hsts_max_age.total_seconds())}" always;\n'
            )
        stapling = "    ssl_stapling on;\n    ssl_stapling_verify on;\n" if vhost.stapling and s.resolvers else ""
        return (
            f"limit_req_zone $binary_remote_addr zone=r.{zone}:10m rate={s.requests_per_second}r/s;\n"
            f"limit_conn_zone $binary_remote_addr zone=c.{zone}:10m;\n"
            f"{http}"
            "server {\n"
            f"{self._listen(s.https_port, ' ssl http2')}"
            f"    server_name {names};\n"
            f"    ssl_certificate {chain};\n"
            f"    ssl_certificate_key {key};\n"
            f"{stapling}"
            f"{headers}"
            f"    access_log {logs}/{zone}.access.log;\n"
            f"    error_log {logs}/{zone}.error.log;\n"
            f"    root {_token(vhost.document_root)};\n"
            # A link is followed only where it and its target have one owner: a tenant's link to
            # another tenant's file (or to /etc) is refused, from the document root down.
            "    disable_symlinks if_not_owner from=$document_root;\n"
            f"    autoindex {'on' if vhost.autoindex else 'off'};\n"
            f"    client_max_body_size {s.client_max_body_size};\n"
            f"    limit_req zone=r.{zone} burst={s.request_burst} nodelay;\n"
            f"    limit_conn c.{zone} {s.connections_per_address};\n"
            "    location ~ /\\. { return 404; }\n"  # dotfiles (.git, .env, .htpasswd) are never served
            f"{self._content(vhost)}"
            "}\n"
        )

    def _content(self, vhost: Vhost) -> str:
        if vhost.suspended:
            return "    location / { return 503; }\n"
        if vhost.kind == "static":
            return f"{self._compression()}    location / {{ try_files $uri $uri/ =404; }}\n"
        upstream = _token(vhost.upstream or "")
        if vhost.kind == "php":
            return (
                f"{self._compression()}"
                "    index index.php index.html;\n"
                "    location / { try_files $uri $uri/ /index.php$is_args$args; }\n"
                "    location ~ \\.php$ {\n"
                "        try_files $fastcgi_script_name =404;\n"
                "        include /etc/nginx/fastcgi_params;\n"
                "        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
                "        fastcgi_param HTTPS on;\n"
                "        gzip off;\n"  # the application's answers: see _compression
                f"        fastcgi_pass unix:{upstream};\n"
                "    }\n"
            )
        return (
            "    location / {\n"
            f"        proxy_pass http://unix:{upstream}:;\n"
            "        gzip off;\n"  # the application's answers: see _compression
            "        proxy_set_header Host $host;\n"
            "        proxy_set_header X-Forwarded-For $remote_addr;\n"  # replaced, never appended to
            "        proxy_set_header X-Forwarded-Proto https;\n"
            "    }\n"
        )

    def _compression(self) -> str:
        """BREACH needs a secret and attacker-chosen text in one compressed response. Files from
        the document root carry no per-user secret, so they are compressed (text types, HTML
        always included by nginx); php and proxy sites' answers may (session tokens, CSRF
        tokens), so what the application answers (the php location, the proxied location) is
        never compressed, whatever its type."""
        return (
            "    gzip on;\n"
            f"    gzip_min_length {self.settings.gzip_min_length};\n"
            f"    gzip_types {TEXT_TYPES};\n"
            "    gzip_proxied off;\n"  # nothing compressed for a proxy in between either
        )

    def panel_config(self, panel: PanelVhost, directory: Path) -> str:
        s = self.settings
        http = (
            "server {\n"
            f"{self._listen(s.http_port)}"
            f"    server_name {_token(panel.hostname)};\n"
            f"    include {directory}/acme-location.conf;\n"
            f"    location / {{ return {'301 https://$host$request_uri' if panel.certificate else '503'}; }}\n"
            "}\n"
        )
        if panel.certificate is None:
            return http
        chain, key = (_token(path) for path in panel.certificate)
        client = ""
        if panel.client_ca and panel.verify_client:
            client = (
                f"    ssl_client_certificate {_token(panel.client_ca)};\n    ssl_verify_client {panel.verify_client};\n"
            )
        return (
            f"{http}"
            "server {\n"
            f"{self._listen(s.https_port, ' ssl http2')}"
            f"    server_name {_token(panel.hostname)};\n"
            f"    ssl_certificate {chain};\n"
            f"    ssl_certificate_key {key};\n"
            f"{client}"
            f'    add_header Strict-Transport-Security "max-age={int(s.hsts_max_age.total_seconds())}" always;\n'
            "    add_header X-Content-Type-Options nosniff always;\n"
            f"    access_log {_token(panel.log_dir)}/panel.access.log;\n"
            "    client_max_body_size 128m;\n"  # module uploads; the panel's own limits apply behind
            "    location / {\n"
            f"        proxy_pass http://{_token(panel.upstream)};\n"
            "        proxy_set_header Host $host;\n"
            "        proxy_set_header X-Forwarded-For $remote_addr;\n"
            "        proxy_set_header X-Forwarded-Proto https;\n"
            "    }\n"
            "}\n"
        )

    # -- applying --------------------------------------------------------------------------------

    def apply(self, vhosts: list[Vhost], answers: dict[str, str], panel: PanelVhost | None = None) -> int:
        """Render everything, test it whole, swap it in, serve it; the generation now answering."""
        binary = self._binary()
        self._prepare_directories()
        generation = self._next_generation()
        directory = self.root / "generations" / str(generation)
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "sites").mkdir(mode=0o700, parents=True)
        (directory / "acme-location.conf").write_text(self.acme_location())
        (directory / "acme-answers.conf").write_text(self.acme_answers(answers))
        if panel is not None:
            (directory / "sites" / "_panel.conf").write_text(self.panel_config(panel, directory))
        for vhost in vhosts:
            (directory / "sites" / f"{vhost.key}.conf").write_text(self.site_config(vhost, directory))
        candidate = directory / "nginx.conf"
        candidate.write_text(self.main_config(directory, generation))
        self._test(binary, candidate)
        current = self.root / "current"
        link = self.root / "current.new"
        link.unlink(missing_ok=True)
        link.symlink_to(directory)
        os.replace(link, current)
        master = self.master_pid()
        old_workers = _children(master) if master is not None else []
        if master is None:
            start = [binary, "-c", str(current / "nginx.conf")]  # the configured binary, our own file
            started = subprocess.run(start, check=False, capture_output=True, text=True, timeout=60)  # noqa: S603
            if started.returncode != 0:  # a port taken (Debian's own nginx unit still running?)
                reason = _LOG_PREFIX.sub("", (started.stderr.strip().splitlines() or ["no reason given"])[-1])
                raise NginxUnavailable(f"nginx did not start: {reason.removeprefix('nginx: ')}")
        else:
            os.kill(master, signal.SIGHUP)
        self._await(generation, old_workers)
        self._generation = generation
        self._prune(generation)
        return generation

    def _binary(self) -> str:
        binary = self.settings.nginx
        if not os.access(binary, os.X_OK):
            raise NginxUnavailable(f"nginx is not installed at {binary} (Debian package nginx)")
        return str(binary)

    def _prepare_directories(self) -> None:
        """run/ (the pid, the status socket, the temp paths the workers write) and logs/."""
        worker = pwd.getpwnam(self.settings.nginx_user)
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        # The workers write request bodies and upstream answers beneath run/: they pass through
        # the agent's state directory (search only; every record in it stays 0600 root).
        os.chmod(self.root.parent, os.stat(self.root.parent).st_mode & 0o7777 | 0o011)  # noqa: S103 - search only
        os.chmod(self.root, 0o711)  # noqa: S103 - search only
        self.run_dir.mkdir(mode=0o711, exist_ok=True)
        # Workers reopen their logs by path after a rotation (SIGUSR1; the master gives the new
        # files to the worker user): they pass through, and only nginx's group may.
        for logs in (self.log_dir, self.site_log_dir):
            logs.mkdir(mode=0o710, exist_ok=True)
            os.chown(logs, 0, worker.pw_gid)
            os.chmod(logs, 0o710)  # noqa: S103 - search only, for nginx's group
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            path = self.run_dir / kind
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, worker.pw_uid, worker.pw_gid)

    def _next_generation(self) -> int:
        generations = self.root / "generations"
        existing = [int(p.name) for p in generations.iterdir() if p.name.isdigit()] if generations.is_dir() else []
        return max([self._generation, *existing]) + 1

    def _test(self, binary: str, candidate: Path) -> None:
        checked = subprocess.run(  # noqa: S603 - the configured binary, our own file
            [binary, "-t", "-q", "-c", str(candidate)], capture_output=True, text=True, timeout=60, check=False
        )
        if checked.returncode == 0:
            return
        lines = [line for line in checked.stderr.splitlines() if "[emerg]" in line or "[crit]" in line]
        message = (lines or checked.stderr.splitlines() or ["nginx -t failed"])[0]
        message = _LOG_PREFIX.sub("", message.removeprefix("nginx: "))
        found = _FAILED_AT.search(message)
        site = line = None
        if found:
            where = Path(found["file"])
            line = int(found["line"])
            site = where.stem if where.parent.name == "sites" else None
            message = message[: found.start()]
        else:  # errors found after parsing (a certificate that does not load) name a file, not a line
            site, line = _naming(message, candidate.parent / "sites")
        raise ApplyFailed(message.strip(), site, line)

    def master_pid(self) -> int | None:
        """The running master (its pid file, checked to be an nginx process), or None."""
        try:
            pid = int((self.run_dir / "nginx.pid").read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            return None
        return pid if b"nginx" in command else None

    def _await(self, generation: int, old_workers: list[int]) -> None:
        """Until the new workers answer this generation and no old worker accepts any more: an old
        worker titles itself "shutting down" just before it closes its listening sockets (it
        finishes the requests it has). Without the second wait, a request right after the apply
        (the CA checking a challenge) could still meet the previous configuration."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.serving() == generation and not any(_accepting(pid) for pid in old_workers):
                return
            time.sleep(0.002)
        raise NginxUnavailable(f"nginx did not serve generation {generation}; see {self.log_dir}/error.log")

    def serving(self) -> int | None:
        """The generation the workers answer, or None when nothing answers."""
        try:
            conn = _UnixHTTPConnection(str(self.run_dir / "status.sock"))
            conn.request("GET", "/generation")
            body = conn.getresponse().read()
            conn.close()
            return int(body)
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def _prune(self, generation: int) -> None:
        for path in (self.root / "generations").iterdir():
            if path.name.isdigit() and int(path.name) <= generation - GENERATIONS_KEPT:
                shutil.rmtree(path, ignore_errors=True)

    def rotate_logs(self, max_size: int, keep: int) -> list[str]:
        """Every log past `max_size` becomes `<name>.1` (older ones shift, the last goes), then
        the master reopens its logs (SIGUSR1). The logs are root's, in the agent's state: no
        tenant can plant a link among them. The logs rotated, by name."""
        rotated = []
        for log in sorted([*self.log_dir.glob("*.log"), *self.site_log_dir.glob("*.log")]):
            if not log.is_file() or log.is_symlink() or log.stat().st_size <= max_size:
                continue
            log.with_name(f"{log.name}.{keep}").unlink(missing_ok=True)
            for number in range(keep - 1, 0, -1):
                older = log.with_name(f"{log.name}.{number}")
                if older.exists():
                    os.replace(older, log.with_name(f"{log.name}.{number + 1}"))
            os.replace(log, log.with_name(f"{log.name}.1"))
            rotated.append(str(log.relative_to(self.log_dir)))
        master = self.master_pid()
        if rotated and master is not None:
            os.kill(master, signal.SIGUSR1)
        return rotated

    def stop(self) -> None:
        """Stop the master and wait for it (tests; an agent uninstall). Sites go dark."""
        master = self.master_pid()
        if master is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(master, signal.SIGQUIT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and Path(f"/proc/{master}").exists():
            time.sleep(0.01)
        if Path(f"/proc/{master}").exists():
            os.kill(master, signal.SIGKILL)


def _naming(message: str, sites: Path) -> tuple[str | None, int | None]:
    """The site file (and its line) holding a quoted path nginx's message names."""
    quoted = re.search(r'"(/[^"]+)"', message)
    if quoted is None:
        return None, None
    for path in sorted(sites.glob("*.conf")):
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            if quoted[1] in text:
                return path.stem, number
    return None, None


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry))
    return found


def _accepting(worker: int) -> bool:
    try:
        title = Path(f"/proc/{worker}/cmdline").read_bytes()
    except OSError:
        return False  # gone
    return b"worker process" in title and b"shutting down" not in title


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)
