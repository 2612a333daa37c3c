"""Private servers, database helpers and resolve_infra, against real processes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
from pathlib import Path

import httpx
import nats
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from specstress.errors import InputError
from specstress.local import servers
from specstress.local.servers import (
    Infra,
    ManagedServer,
    ServerStartError,
    drop_database,
    ensure_database,
    ensure_database_sync,
    resolve_infra,
    servers_under,
    start_nats,
    start_postgres,
    stop_servers_under,
)

# these tests start private NATS and Postgres servers of their own
pytestmark = pytest.mark.integration


def _processes_using(folder: Path) -> list[int]:
    """Pids whose command line mentions `folder` or that work inside it (Postgres backends
    retitle themselves but keep the data folder as working directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(os.getpid()):
            continue
        try:
            in_cmdline = os.fsencode(folder) in (entry / "cmdline").read_bytes()
            inside = (entry / "cwd").readlink().is_relative_to(folder)
        except OSError:
            continue
        if in_cmdline or inside:
            found.append(int(entry.name))
    return found


def _assert_gone(server: ManagedServer) -> None:
    assert not server.is_running()
    assert _processes_using(server.data_dir) == []


async def _publish(url: str, payload: bytes) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name="SPECSTRESS_T", subjects=["specstress.t.>"])
        ack = await js.publish("specstress.t.one", payload)
        assert ack.stream == "SPECSTRESS_T"
    finally:
        await client.close()


async def _read_all(url: str) -> list[bytes]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info("SPECSTRESS_T")
        subscription = await js.pull_subscribe("specstress.t.>", durable="reader")
        messages = await subscription.fetch(info.state.messages, timeout=5)
        return [message.data for message in messages]
    finally:
        await client.close()


async def _sql(url: str, statement: str) -> object:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


async def test_private_nats_keeps_jetstream_data_across_restart(tmp_path: Path) -> None:
    with start_nats(tmp_path) as first:
        await _publish(first.url, b"kept")
        assert first.monitor_url is not None
        async with httpx.AsyncClient(timeout=5) as http:
            jsz = (await http.get(f"{first.monitor_url}/jsz")).json()
        assert jsz["streams"] == 1
    _assert_gone(first)

    with start_nats(tmp_path) as second:
        assert await _read_all(second.url) == [b"kept"]
    _assert_gone(second)


def test_start_nats_adopts_a_server_still_running_on_its_data_dir(tmp_path: Path) -> None:
    with start_nats(tmp_path) as running:
        adopted = start_nats(tmp_path)
        assert (adopted.pid, adopted.url) == (running.pid, running.url)
        assert adopted.process is None
        adopted.stop()
        assert not running.is_running()
    _assert_gone(running)


def test_start_nats_reports_a_taken_port_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServerStartError, match="address already in use"):
            start_nats(tmp_path, port=taken.getsockname()[1])


async def test_private_postgres_keeps_rows_across_restart(server_tmp_path: Path) -> None:
    data_dir = server_tmp_path / "pg"
    with start_postgres(data_dir) as first:
        url = await ensure_database(first.url, "specstress_kept")
        await _sql(url, "CREATE TABLE kept (id int PRIMARY KEY, note text)")
        await _sql(url, "INSERT INTO kept VALUES (1, 'round trip')")
        assert await ensure_database(first.url, "specstress_kept") == url
        if os.geteuid() == 0:
            assert (data_dir / "pgdata").stat().st_uid != 0
        adopted = start_postgres(data_dir)
        assert (adopted.pid, adopted.url) == (first.pid, first.url)
    _assert_gone(first)

    with start_postgres(data_dir) as second:
        url = ensure_database_sync(second.url, "specstress_kept")
        assert await _sql(url, "SELECT note FROM kept WHERE id = 1") == "round trip"
        await drop_database(second.url, "specstress_kept")
        assert await _sql(second.url, "SELECT count(*) FROM pg_database "
                             "WHERE datname = 'specstress_kept'") == 0  # fmt: skip
    _assert_gone(second)


def test_stop_kills_a_server_that_ignores_the_polite_signal(tmp_path: Path) -> None:
    server = start_nats(tmp_path)
    # A signal nats-server ignores stands in for a shutdown that hangs.
    ignored = dataclasses.replace(server, stop_signal=signal.SIGWINCH)
    ignored.stop(timeout=0.3)
    _assert_gone(server)


def test_stop_servers_under_ends_servers_nobody_holds_any_more(server_tmp_path: Path) -> None:
    forgotten = [start_nats(server_tmp_path / "nats"), start_postgres(server_tmp_path / "pg")]
    assert sorted(servers_under(server_tmp_path)) == sorted(s.pid for s in forgotten)
    stop_servers_under(server_tmp_path)
    assert not any(server.is_running() for server in forgotten)
    assert _processes_using(server_tmp_path) == []


async def test_resolve_infra_uses_urls_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, infra: Infra
) -> None:
    with start_nats(tmp_path / "given") as given:
        plain_url = infra.database_url.replace("postgresql+asyncpg://", "postgres://")
        monkeypatch.setenv("NATS_URL", given.url)
        monkeypatch.setenv("DATABASE_URL", plain_url)
        with resolve_infra(tmp_path / "state") as resolved:
            assert (resolved.nats_url, resolved.nats_source) == (given.url, "env")
            assert resolved.database_url == infra.database_url
            assert resolved.database_source == "env"
        assert given.is_running()
        assert not (tmp_path / "state").exists()


async def test_resolve_infra_starts_private_servers_without_env_or_docker(
    monkeypatch: pytest.MonkeyPatch, server_tmp_path: Path
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setattr(servers, "docker_available", lambda: False)
    with resolve_infra(server_tmp_path) as resolved:
        assert (resolved.nats_source, resolved.database_source) == ("private", "private")
        await _publish(resolved.nats_url, b"x")
        assert await _sql(resolved.database_url, "SELECT 1") == 1
    assert _processes_using(server_tmp_path) == []


def test_bad_inputs_are_refused_with_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="database name"):
        ensure_database_sync("postgresql://postgres@127.0.0.1:1/postgres", "Robert'); DROP")
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/app")
    with pytest.raises(InputError, match="not a PostgreSQL URL"):
        servers.env_database_url()
    monkeypatch.setenv("NATS_URL", "http://127.0.0.1:4222")
    with pytest.raises(InputError, match="NATS URL"):
        servers.env_nats_url()


async def test_fixtures_give_a_migrated_database_and_an_empty_nats(
    database_url: str, nats_url: str
) -> None:
    assert await _sql(database_url, "SELECT count(*) FROM alembic_version") == 1
    client = await nats.connect(nats_url)
    try:
        names = [info.config.name for info in await client.jetstream().streams_info()]
    finally:
        await client.close()
    assert not [name for name in names if name and name.startswith("SPECSTRESS")]


def _owner_and_mode(folder: Path) -> tuple[int, int]:
    info = folder.lstat()
    return info.st_uid, info.st_mode & 0o777


_AS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason="only as root is PostgreSQL run by another user"
)


@_AS_ROOT
async def test_postgres_asked_for_in_a_folder_its_user_cannot_enter_keeps_data_in_temp(
    tmp_path: Path,
) -> None:
    # pytest's tmp_path has a mode-700 parent: the `postgres` user cannot enter it
    asked = tmp_path / "checkout" / ".specstress" / "postgres"
    relocated = servers.relocated_postgres_dir(asked)
    try:
        with start_postgres(asked) as first:
            assert first.data_dir == relocated
            assert asked.is_symlink() and asked.resolve() == relocated
            assert _owner_and_mode(relocated)[0] != 0
            assert _owner_and_mode(relocated)[1] == 0o700
            assert _owner_and_mode(tmp_path) == (0, 0o700)  # the caller's folder: untouched
            url = await ensure_database(first.url, "specstress_kept")
            await _sql(url, "CREATE TABLE kept (id int PRIMARY KEY)")
        _assert_gone(first)
        # a second run finds the same cluster through the link
        with start_postgres(asked) as second:
            assert second.data_dir == relocated
            kept = await ensure_database(second.url, "specstress_kept")
            assert await _sql(kept, "SELECT count(*) FROM kept") == 0
    finally:
        stop_servers_under(relocated)
        shutil.rmtree(relocated, ignore_errors=True)


@_AS_ROOT
def test_a_temp_folder_someone_else_could_enter_is_refused(tmp_path: Path) -> None:
    asked = tmp_path / "checkout" / "postgres"
    planted = servers.relocated_postgres_dir(asked)
    planted.mkdir(mode=0o755)
    try:
        with pytest.raises(InputError, match=r"not a folder of user .* with mode 700"):
            start_postgres(asked)
        assert not asked.is_symlink()
    finally:
        planted.rmdir()
