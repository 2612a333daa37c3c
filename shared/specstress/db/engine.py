"""Engine creation: one place that turns a database URL into an async SQLAlchemy engine."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = ["async_url", "create_engine", "database_unreachable", "reading", "server_settings"]

_ASYNC_SCHEME = "postgresql+asyncpg://"
# SQLSTATE classes of a server that is gone or going: connection exception, operator
# intervention (admin or crash shutdown, "the database system is starting up")
_UNREACHABLE_STATES = ("08", "57P")
# the session settings each engine's connections start with, for connections made beside it
_SETTINGS: weakref.WeakKeyDictionary[Engine, dict[str, str]] = weakref.WeakKeyDictionary()


def async_url(url: str) -> str:
    """Accept `postgres://`, `postgresql://` or the asyncpg form; return the asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return _ASYNC_SCHEME + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('://', 1)[0]}://...")


def create_engine(
    url: str,
    pool_size: int = 10,
    max_overflow: int | None = None,
    server_settings: Mapping[str, str] | None = None,
) -> AsyncEngine:
    """`max_overflow` (default: `pool_size`) connections are opened beyond the pool under load
    and closed again on return; 0 makes callers wait for a pooled connection instead.
    `server_settings` are session settings every connection starts with (e.g. read-only)."""
    # No pre-ping: with asyncpg it costs BEGIN, a ping and ROLLBACK on every checkout (about a
    # fifth of a stage's time in the pipeline profile). A connection that died with its server
    # fails one statement, is invalidated, and the message is redelivered.
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={"server_settings": dict(server_settings)} if server_settings else {},
    )
    _SETTINGS[engine.sync_engine] = dict(server_settings or {})
    return engine


def server_settings(engine: AsyncEngine) -> dict[str, str]:
    """The session settings `create_engine` gave the engine's connections (none for an
    engine made elsewhere)."""
    return dict(_SETTINGS.get(engine.sync_engine, {}))


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: each statement runs on its own, without the BEGIN and
    ROLLBACK round trips a transaction would add to every lookup."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def database_unreachable(error: BaseException) -> bool:
    """True when `error` says the database could not be reached, not that it refused a row."""
    if isinstance(error, TimeoutError):
        # a bare one is asyncpg's connect timeout; subclasses (a NATS timeout) are not ours
        return type(error) is TimeoutError
    if isinstance(error, OSError | sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        state = str(getattr(error.orig, "sqlstate", None) or "")
        return state.startswith(_UNREACHABLE_STATES)
    # asyncpg's own, from connections used without SQLAlchemy (`specstress.db.direct`)
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate or "").startswith(_UNREACHABLE_STATES)
    if isinstance(error, asyncpg.InterfaceError):
        # a closed connection; not a value the driver could not encode (a ValueError too),
        # which is the row's fault
        return not isinstance(error, ValueError)
    # the driver's exchange broken, as when the server ends the session while a statement
    # starts: the connection is gone with it
    return isinstance(error, asyncpg.exceptions.InternalClientError)
