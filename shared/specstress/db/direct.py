"""A connection of its own for a batch runner: its statements go to asyncpg directly.

A `Coalescer` runs one batch at a time, so it can hold one connection instead of checking one
out of the engine's pool for every batch, and its statements, the same few again and again, can
skip SQLAlchemy's work per statement (checkout, execution options, the greenlet bridge, result
rows): that work was about two thirds of a coalesced lookup's CPU in the pipeline profile.
asyncpg prepares each statement once per connection and keeps it.

Statements are written as SQLAlchemy Core (the tables stay defined in `schema` only) and
compiled once for the asyncpg dialect (`Statement`), or are SQL text. Their rows are asyncpg
records: read by name or position, not by attribute. JSON and JSONB values are encoded and
decoded as on the engine's own connections.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from specstress.db.engine import database_unreachable, server_settings

__all__ = ["DirectConnection", "Statement"]

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


class Statement:
    """A Core statement compiled once: its SQL (`$1::VARCHAR` placeholders) and the order of
    its parameters. `compile_options` go to the compiler (e.g. `column_keys` of an insert)."""

    def __init__(self, statement: ClauseElement, **compile_options: Any) -> None:
        compiled = statement.compile(dialect=_DIALECT, **compile_options)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ())
        # values written into the statement itself (`status == "ok"`) are parameters too
        self._bound = compiled.params

    def arguments(self, values: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
        """The positional arguments for `values` by parameter name."""
        given = values or {}
        return tuple(given[n] if n in given else self._bound[n] for n in self._names)


async def _connect(dsn: str, settings: Mapping[str, str]) -> Any:
    conn = await asyncpg.connect(dsn, server_settings=dict(settings) or None)
    try:
        for name in ("json", "jsonb"):
            await conn.set_type_codec(
                name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
            )
    except BaseException:
        conn.terminate()
        raise
    return conn


def _refused(error: BaseException) -> bool:
    """The server answered with an error: the session is as it was before the statement."""
    return isinstance(error, asyncpg.PostgresError) and not database_unreachable(error)


class DirectConnection:
    """One asyncpg connection to the engine's database, opened on first use, in autocommit
    (`conn.transaction()` where a batch must be atomic), for one user at a time.

    A statement that fails other than by the server refusing it (connection lost, cut short
    by cancellation, state unknown) drops the connection; the error goes to the caller and
    the next use connects again. `end_on_refusal` drops it after a refusal too, for sessions
    whose state outlives a failed statement (session advisory locks). The connection is
    closed by `aclose` or when the engine is disposed, whichever comes first."""

    def __init__(self, engine: AsyncEngine, *, end_on_refusal: bool = False) -> None:
        self._end_on_refusal = end_on_refusal
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._settings = server_settings(engine)
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: Engine | None = engine.sync_engine
        event.listen(self._engine, "engine_disposed", self._engine_disposed)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[Any]:
        """The connection (an `asyncpg.Connection`) for one batch."""
        conn = await self._connection()
        try:
            yield conn
        except BaseException as error:
            if self._end_on_refusal or not _refused(error):
                self._drop()
            raise

    async def aclose(self) -> None:
        if self._engine is not None:
            event.remove(self._engine, "engine_disposed", self._engine_disposed)
            self._engine = None
        conn, self._conn = self._conn, None
        if conn is not None and self._loop is asyncio.get_running_loop():
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()
        elif conn is not None:
            conn.terminate()

    async def _connection(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._conn is not None and (self._loop is not loop or self._conn.is_closed()):
            # closed by the server while idle, or left by a loop that has ended
            self._drop()
        if self._conn is None:
            self._conn = await _connect(self._dsn, self._settings)
            self._loop = loop
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(RuntimeError):  # its loop is closed, and the socket with it
                conn.terminate()

    def _engine_disposed(self, engine: Engine) -> None:
        # the service is shutting down (or a test dropping its database): nothing runs here
        # any more, so the session can end without a goodbye
        self._drop()
