"""Which errors mean "Postgres is away" (wait and retry) and which mean "it refused" (fail)."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions
import nats.errors
import pytest
from sqlalchemy import exc

from specstress.db.engine import database_unreachable


class _Orig(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError(), True),  # asyncpg's connect timeout
        (nats.errors.TimeoutError(), False),  # a bus timeout is no database outage
        (exc.TimeoutError("pool"), True),
        (exc.DBAPIError("SELECT 1", None, _Orig(None), connection_invalidated=True), True),
        (exc.OperationalError("SELECT 1", None, _Orig(None)), True),
        (exc.DBAPIError("SELECT 1", None, _Orig("57P01")), True),  # admin shutdown
        (exc.DBAPIError("SELECT 1", None, _Orig("57P03")), True),  # starting up
        (exc.DBAPIError("SELECT 1", None, _Orig("08006")), True),  # connection failure
        (exc.IntegrityError("INSERT", None, _Orig("23505")), False),
        (exc.DBAPIError("INSERT", None, _Orig("22021")), False),  # bad bytes: refused, not away
        (ValueError("no"), False),
        # asyncpg's own, from the connections held beside the engine's pool
        (asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"), True),
        (asyncpg.AdminShutdownError("terminating connection"), True),  # 57P01
        (asyncpg.CannotConnectNowError("starting up"), True),  # 57P03
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
        (asyncpg.InternalClientError("cannot switch to state 12"), True),
        (asyncpg.UniqueViolationError("duplicate key"), False),
        (asyncpg.CharacterNotInRepertoireError("bad bytes"), False),
        (asyncpg.QueryCanceledError("statement timeout"), False),  # 57014: not 57P
        # a value the driver cannot encode is the row's fault
        (asyncpg.exceptions._base.DataError("invalid input for query argument $1"), False),
    ],
)
def test_database_unreachable(error: BaseException, unreachable: bool) -> None:
    assert database_unreachable(error) is unreachable
