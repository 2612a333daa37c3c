"""A database of its own for a test, beside the one the database_url fixture gives."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from specstress.db.migrate import upgrade
from specstress.local.servers import Infra, drop_database, ensure_database


@asynccontextmanager
async def fresh_database(infra: Infra) -> AsyncIterator[str]:
    """A new database with the project's schema, dropped on the way out."""
    name = f"t_{secrets.token_hex(8)}"
    url = await ensure_database(infra.database_url, name)
    try:
        await upgrade(url)
        yield url
    finally:
        await drop_database(infra.database_url, name)
