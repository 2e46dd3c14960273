"""Real servers for integration tests, as plain context managers (usable without pytest).

- `sshd_server`: OpenSSH's own sshd on a free loopback port, SFTP only, with its own host key,
  config and test users. Production SFTP servers are mostly OpenSSH, so its rename, permission and
  host-key behaviour is what the SFTP store must cope with. Needs root (useradd, chpasswd) and the
  openssh-server package (`.ci/run` installs it).
- `moto_s3_server`: moto's S3 over real HTTP on a free loopback port, so boto3's signing, retries
  and error parsing run as against AWS.

See docs (infrastructure notes, section 2) for the sshd traps these helpers avoid: `internal-sftp
-d` takes %d not %h, and every folder up to a user's home must be traversable by that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """A test server cannot be started here (binary missing, not root, ...)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, alive: Any = None) -> None:
    """Until `port` accepts a TCP connection; `alive()` returning False stops the wait early."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if alive is not None and not alive():
                raise ServerUnavailable(f"the server on {host}:{port} exited while starting") from None
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"nothing accepts on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)


# --------------------------------------------------------------------------------------------------
# OpenSSH sshd
# --------------------------------------------------------------------------------------------------


def sshd_path() -> str | None:
    """The sshd binary, or None. It must be an absolute path: sshd refuses to re-exec otherwise."""
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
    return os.path.abspath(found) if found else None


def sshd_missing_reason() -> str | None:
    """Why `sshd_server` cannot run here, or None if it can."""
    if sshd_path() is None:
        return "OpenSSH sshd is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "sshd_server must run as root (it creates a system user for the test)"
    for tool in ("useradd", "userdel", "chpasswd", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@dataclass(frozen=True)
class SftpUser:
    username: str
    password: str
    home: Path  # the SFTP session starts here (the user's login folder)
    client_key_path: Path  # ed25519 private key whose public half is authorised for this user


@dataclass
class SshdServer:
    host: str
    port: int
    host_key_path: Path
    host_public_key: str  # "ssh-ed25519 AAAA...", to pin in the client
    users: dict[str, SftpUser]
    config_path: Path
    log_path: Path
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def user(self) -> SftpUser:
        return next(iter(self.users.values()))

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def password(self) -> str:
        return self.user.password

    @property
    def home(self) -> Path:
        return self.user.home

    @property
    def client_key_path(self) -> Path:
        return self.user.client_key_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd in the foreground (-D) on `port`; returns once the port accepts."""
        if self.running:
            return
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [sshd_path() or "/usr/sbin/sshd", "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
            )
        try:
            wait_for_port(self.host, self.port, timeout, alive=lambda: self._process.poll() is None)
        except ServerUnavailable as exc:
            self.stop()
            raise ServerUnavailable(f"{exc}\n--- sshd log ---\n{self.log()[-3000:]}") from None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the listener AND every session it forked, like a real server going down.

        Killing only the listener would leave established sessions alive (sshd children call
        setsid, so they are not in its process group), and a client would never see the drop.
        """
        process, self._process = self._process, None
        if process is None:
            return
        sessions = _descendants(process.pid) if process.poll() is None else []
        for pid in [*sessions, process.pid]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(pid) for pid in sessions):
            time.sleep(0.02)
        for pid in sessions:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def restart(self) -> None:
        self.stop()
        self.start()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _run(*args: str, input: str | None = None) -> None:
    done = subprocess.run(args, input=input, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise ServerUnavailable(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")


def _keygen(path: Path, comment: str) -> str:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


def _sshd_config(server_dir: Path, port: int, host_key: Path, users: Sequence[SftpUser]) -> str:
    names = " ".join(u.username for u in users)
    lines = [
        f"Port {port}",
        f"ListenAddress {LOOPBACK}",
        f"HostKey {host_key}",
        f"PidFile {server_dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {server_dir / 'keys'}/authorized_keys_%u",
        "StrictModes no",  # our key files live under /tmp
        "UsePAM no",  # password checked against /etc/shadow
        "PasswordAuthentication yes",
        "PubkeyAuthentication yes",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {names}",
        "MaxStartups 100:30:200",  # tests open many connections in a row
        "LoginGraceTime 20",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    for user in users:
        # An absolute start folder instead of %d: an existing user keeps its passwd home, and the
        # doc's trap (%h is not expanded by internal-sftp) cannot bite.
        lines += [
            f"Match User {user.username}",
            f"    ForceCommand internal-sftp -d {user.home}",
            "    AllowTcpForwarding no",
            "    X11Forwarding no",
            "    PermitTTY no",
        ]
    return "\n".join(lines) + "\n"


def _ensure_traversable(path: Path) -> None:
    for folder in [path, *path.parents]:
        if folder.stat().st_mode & 0o001 == 0:
            raise ServerUnavailable(
                f"{folder} is not traversable by other users; the SFTP test user could not reach "
                f"its home below {path} (use a folder under /tmp, or leave tmp_dir unset)"
            )


@contextmanager
def sshd_server(
    tmp_dir: Path | str | None = None,
    users: Sequence[str] | None = None,
    *,
    start: bool = True,
) -> Iterator[SshdServer]:
    """A real OpenSSH sshd serving SFTP to test `users` on a free loopback port.

    Users missing on the system are created with useradd (and removed at exit); each gets a random
    password (chpasswd), an ed25519 client key and an empty home under the server folder. Without
    `users`, one user with a unique name is made, so parallel test runs do not share accounts.
    """
    reason = sshd_missing_reason()
    if reason:
        raise ServerUnavailable(reason)
    own_dir = tmp_dir is None
    base = Path(tempfile.mkdtemp(prefix="creditflow-sshd-", dir="/tmp")) if own_dir else Path(tmp_dir)
    server_dir = base / "sshd"
    created: list[str] = []
    server: SshdServer | None = None
    try:
        base.chmod(0o755)
        _ensure_traversable(base)
        (server_dir / "keys").mkdir(parents=True)
        (server_dir / "home").mkdir()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation: sshd needs it
        host_key = server_dir / "ssh_host_ed25519_key"
        host_public_key = " ".join(_keygen(host_key, "creditflow-test-host").split()[:2])

        sftp_users: list[SftpUser] = []
        for name in users or [f"cfsftp{secrets.token_hex(3)}"]:
            try:
                pwd.getpwnam(name)
            except KeyError:
                _run("useradd", "-M", "-d", str(server_dir / "home" / name), "-s", "/usr/sbin/nologin", name)
                created.append(name)
            password = secrets.token_urlsafe(12)
            _run("chpasswd", input=f"{name}:{password}\n")
            home = server_dir / "home" / name
            home.mkdir()
            shutil.chown(home, name, name)
            key = server_dir / "keys" / f"client_{name}"
            (server_dir / "keys" / f"authorized_keys_{name}").write_text(_keygen(key, f"{name}@test") + "\n")
            sftp_users.append(SftpUser(name, password, home, key))

        config = server_dir / "sshd_config"
        log_path = server_dir / "sshd.log"
        last_error: Exception | None = None
        for _ in range(3):  # a free port can be taken between probing and binding: try another
            port = free_port()
            config.write_text(_sshd_config(server_dir, port, host_key, sftp_users))
            _run(sshd_path() or "/usr/sbin/sshd", "-t", "-f", str(config))
            server = SshdServer(LOOPBACK, port, host_key, host_public_key,
                                {u.username: u for u in sftp_users}, config, log_path)
            if not start:
                break
            try:
                server.start()
                break
            except ServerUnavailable as exc:
                last_error = exc
                server = None
        if server is None:
            raise last_error or ServerUnavailable("sshd did not start")
        yield server
    finally:
        if server is not None:
            server.stop()
        for name in created:
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
        shutil.rmtree(server_dir if not own_dir else base, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# moto S3
# --------------------------------------------------------------------------------------------------


@dataclass
class MotoS3Server:
    endpoint_url: str
    region: str = "us-east-1"

    def client(self, **kwargs: Any):
        return s3_client(self.endpoint_url, region=self.region, **kwargs)

    def reset(self) -> None:
        """Forget every bucket and object (moto's state is per process, shared by all servers)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


def s3_client(endpoint_url: str, *, region: str = "us-east-1", max_attempts: int = 2, **config: Any):
    """A boto3 S3 client for a local endpoint: path-style addressing, dummy credentials."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"},
                      retries={"max_attempts": max_attempts, "mode": "standard"},
                      connect_timeout=5, read_timeout=30, **config),
    )


def _serialised(app: Any) -> Any:
    """WSGI middleware: one request at a time.

    moto checks `If-None-Match: *` and then stores the object in two steps without a lock, so two
    simultaneous conditional writes could both succeed, which AWS S3 never allows. Serving one
    request at a time restores the atomicity the store relies on; the server stays threaded so a
    slow client cannot block accept().
    """
    lock = threading.Lock()

    def serve(environ: dict, start_response: Any) -> Any:
        with lock:
            result = app(environ, start_response)
            try:
                return list(result)
            finally:
                if hasattr(result, "close"):
                    result.close()

    return serve


@contextmanager
def moto_s3_server(*, region: str = "us-east-1") -> Iterator[MotoS3Server]:
    """moto's S3 over HTTP on a free loopback port (ThreadedMotoServer, port 0: no race)."""
    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from moto.server import ThreadedMotoServer
        from werkzeug.serving import make_server
    except ImportError as exc:  # pragma: no cover - moto[server] is a test dependency
        raise ServerUnavailable(f"moto[server] is not installed: {exc}") from None

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per request: noise
            pass

    class SerialMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = _serialised(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(self._ip_address, self._port, app, True,
                                       request_handler=QuietHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = SerialMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3Server(f"http://{host}:{port}", region)
    finally:
        server.stop()
