"""Engine creation: one place that turns a database URL into an async SQLAlchemy engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_ASYNC_SCHEME = "postgresql+asyncpg://"


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
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={"server_settings": dict(server_settings)} if server_settings else {},
    )


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: each statement runs on its own, without the BEGIN and
    ROLLBACK round trips a transaction would add to every lookup."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
