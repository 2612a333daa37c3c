"""Credentials of the least-privilege stack and the URLs each component connects with.

A component's NATS user and Postgres role are named after it (see `nats_auth`, `db.access`);
their passwords travel as environment variables, as in the Docker stack's `.env`. Locally,
`start_secure_nats` runs a private nats-server on the same rendered configuration.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from sqlalchemy.engine import make_url

from specstress.errors import InputError
from specstress.local.servers import ManagedServer, start_nats
from specstress.pipeline import STAGE_NAMES, access, nats_auth

__all__ = ["Credentials", "service_env", "start_secure_nats", "write_env_file"]


@dataclass(frozen=True)
class Credentials:
    nats: dict[str, str] = field(repr=False)
    database: dict[str, str] = field(repr=False)

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            nats={user: secrets.token_hex(16) for user in nats_auth.USERS},
            database={c: secrets.token_hex(16) for c in access.COMPONENTS},
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials:
        """Every password from `environ`; one missing is an InputError naming its variable."""
        wanted = [nats_auth.password_env(u) for u in nats_auth.USERS] + [
            access.password_env(c) for c in access.COMPONENTS
        ]
        missing = [name for name in wanted if not environ.get(name)]
        if missing:
            raise InputError(f"password variable(s) not set: {', '.join(missing)}")
        return cls(
            nats={u: environ[nats_auth.password_env(u)] for u in nats_auth.USERS},
            database={c: environ[access.password_env(c)] for c in access.COMPONENTS},
        )

    def env(self) -> dict[str, str]:
        """The environment variables that carry these passwords (an env file's lines)."""
        return {
            **{nats_auth.password_env(u): p for u, p in self.nats.items()},
            **{access.password_env(c): p for c, p in self.database.items()},
        }

    def nats_url(self, url: str, user: str) -> str:
        """`url` logged in as NATS user `user`."""
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        login = f"{quote(user, safe='')}:{quote(self.nats[user], safe='')}@"
        return urlunsplit(parts._replace(netloc=login + host))

    def database_url(self, url: str, component: str) -> str:
        """`url` logged in as `component`'s Postgres role."""
        role_url = make_url(url).set(
            username=access.role_name(component), password=self.database[component]
        )
        return role_url.render_as_string(hide_password=False)


def write_env_file(path: Path, credentials: Credentials) -> None:
    """Write the passwords as `NAME=value` lines, readable by the owner only; never overwrite."""
    lines = [f"{name}={value}" for name, value in sorted(credentials.env().items())]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists; remove it first to make new passwords") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(
            "# Passwords of the specstress NATS users and Postgres roles; keep this file private.\n"
            + "\n".join(lines)
            + "\n"
        )


def start_secure_nats(data_dir: Path, credentials: Credentials, stream: str) -> ManagedServer:
    """A private nats-server on the rendered least-privilege configuration (anonymous clients
    refused). Its URL carries no login: add one with `credentials.nats_url`."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config_file = data_dir / "nats.conf"
    config_file.write_text(
        nats_auth.render_config(stream=stream, store_dir=str(data_dir / "jetstream"))
    )
    init = nats_auth.INIT_USER
    return start_nats(
        data_dir,
        config_file=config_file,
        env=credentials.env(),
        login=f"{init}:{credentials.nats[init]}",
    )


def service_env(
    credentials: Credentials, nats_url: str, database_url: str
) -> dict[str, dict[str, str]]:
    """Each service's NATS_URL and DATABASE_URL, logged in as its own user and role."""
    return {
        service: {
            "NATS_URL": credentials.nats_url(nats_url, service),
            "DATABASE_URL": credentials.database_url(database_url, service),
        }
        for service in STAGE_NAMES
    }
