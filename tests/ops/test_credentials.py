"""Passwords of the least-privilege stack: generated, written privately, read back, put in URLs."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy.engine import make_url

from specstress.errors import InputError
from specstress.local.secure import Credentials, service_env, write_env_file
from specstress.pipeline.access import COMPONENTS, role_name
from specstress.pipeline.nats_auth import USERS


def test_env_file_is_private_complete_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    credentials = Credentials.generate()
    write_env_file(path, credentials)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    read_back = Credentials.from_env(dict(line.split("=", 1) for line in lines))
    assert read_back.env() == credentials.env()
    assert len(read_back.nats) == len(USERS) and len(read_back.database) == len(COMPONENTS)
    with pytest.raises(InputError, match="exists"):
        write_env_file(path, Credentials.generate())
    assert Credentials.from_env(dict(line.split("=", 1) for line in lines)) == read_back


def test_a_missing_password_is_named() -> None:
    environ = Credentials.generate().env()
    del environ["SPECSTRESS_NATS_PASSWORD_RESPONDER"]
    with pytest.raises(InputError, match="SPECSTRESS_NATS_PASSWORD_RESPONDER"):
        Credentials.from_env(environ)


def test_urls_log_in_as_the_component_and_keep_odd_passwords_intact() -> None:
    credentials = Credentials.generate()
    credentials.nats["responder"] = "p@ss:w/rd%"
    credentials.database["responder"] = "p@ss:w/rd%"
    nats_url = urlsplit(credentials.nats_url("nats://someone:old@127.0.0.1:4222", "responder"))
    assert (nats_url.username, unquote(nats_url.password or "")) == ("responder", "p@ss:w/rd%")
    assert (nats_url.hostname, nats_url.port) == ("127.0.0.1", 4222)
    database = make_url(
        credentials.database_url("postgresql+asyncpg://postgres@127.0.0.1:5432/db", "responder")
    )
    assert (database.username, database.password) == (role_name("responder"), "p@ss:w/rd%")
    assert (database.host, database.database) == ("127.0.0.1", "db")
    env = service_env(credentials, "nats://127.0.0.1:4222", "postgresql://postgres@h/db")
    assert urlsplit(env["classifier"]["NATS_URL"]).username == "classifier"
    assert "p@ss" not in repr(credentials)
