"""`specstress ops`: the least-privilege side of running specstress.

specstress ops nats-config > deploy/nats/nats.conf   # users and allow-lists from the bus
specstress ops stack-env --out .env                  # fresh passwords for docker compose
specstress ops grant -c CONFIG                       # Postgres roles and grants (as owner)
specstress ops demo                                  # the demo with every user and role
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from specstress.api import initialise, start_run
from specstress.cli.commands import state_line
from specstress.cli.common import console, fail
from specstress.cli.demo import print_state, print_summary, watch_until_settled
from specstress.config import load_config
from specstress.db import create_engine
from specstress.errors import InputError
from specstress.local import Stack
from specstress.local.secure import Credentials, service_env, start_secure_nats, write_env_file
from specstress.local.servers import ensure_database_sync, start_postgres
from specstress.pipeline.access import apply_access, passwords_from_env
from specstress.pipeline.nats_auth import CLI_USER, INIT_USER, render_config

__all__ = [
    "GRAFANA_PASSWORD_ENV",
    "POSTGRES_PASSWORD_ENV",
    "demo",
    "grant",
    "nats_config",
    "ops_app",
    "stack_env",
]

ops_app = typer.Typer(help="Least-privilege operations: NATS users, Postgres roles.")
# besides the users' and roles' passwords, the Docker stack's .env holds these two
POSTGRES_PASSWORD_ENV = "SPECSTRESS_POSTGRES_PASSWORD"
GRAFANA_PASSWORD_ENV = "SPECSTRESS_GRAFANA_ADMIN_PASSWORD"


@ops_app.command("nats-config")
def nats_config(
    stream: Annotated[str, typer.Option(help="JetStream stream name (bus.stream)")] = "SPECSTRESS",
    out: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
) -> None:
    """Render the nats-server configuration: one user per component with its allow-lists."""
    rendered = render_config(stream=stream)
    if out is None:
        typer.echo(rendered, nl=False)
    else:
        out.write_text(rendered)


@ops_app.command("stack-env")
def stack_env(
    out: Annotated[Path, typer.Option(help="env file to create (never overwritten)")] = Path(
        ".env"
    ),
) -> None:
    """Create the Docker stack's env file with fresh random passwords for every user and role."""
    credentials = Credentials.generate()
    try:
        write_env_file(out, credentials)
    except InputError as exc:
        raise fail(exc) from None
    with out.open("a") as handle:
        for name in (POSTGRES_PASSWORD_ENV, GRAFANA_PASSWORD_ENV):
            handle.write(f"{name}={secrets.token_hex(16)}\n")
    console.print(f"wrote {out} (mode 600); Grafana's admin password is in it")


@ops_app.command()
def grant(
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="SPECSTRESS_CONFIG", help="YAML config file")
    ] = Path("specstress.yaml"),
) -> None:
    """Create or refresh the Postgres roles and their grants; run as the schema owner after the
    migrations. Passwords come from SPECSTRESS_DB_PASSWORD_<COMPONENT> variables."""
    try:
        cfg = load_config(config)
    except InputError as exc:
        raise fail(exc) from None

    try:
        asyncio.run(_grant(cfg.database_url, passwords_from_env(os.environ)))
    except InputError as exc:
        raise fail(exc) from None
    console.print("roles and grants applied")


def _credentials(path: Path) -> Credentials:
    """The demo's passwords, kept beside its servers so that a second run logs in again."""
    if path.is_file():
        environ = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return Credentials.from_env(environ)
    credentials = Credentials.generate()
    write_env_file(path, credentials)
    return credentials


@ops_app.command()
def demo(
    config: Annotated[Path, typer.Option("--config", "-c")] = Path("specstress.demo.yaml"),
    pairs: Annotated[int, typer.Option(min=1, help="value pairs to run")] = 20,
    state_dir: Annotated[Path, typer.Option(help="where private servers keep data")] = Path(
        ".specstress/least-privilege"
    ),
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline")] = 600.0,
) -> None:
    """The demo with authentication on: every service as its own NATS user and Postgres role,
    the CLI as `cli`, the schema and topology set up by the owner and the `init` user."""

    started = time.monotonic()
    try:
        cfg = load_config(config)
        state_dir.mkdir(parents=True, exist_ok=True)
        credentials = _credentials(state_dir / "credentials.env")
    except InputError as exc:
        raise fail(exc) from None
    with (
        start_secure_nats(state_dir / "nats", credentials, cfg.bus.stream) as nats_server,
        start_postgres(state_dir / "postgres") as postgres,
    ):
        owner_url = ensure_database_sync(postgres.url, "specstress")
        print_state(state_dir, postgres.data_dir)
        stack = Stack(config_path=config, log_dir=state_dir / "logs", env={})
        try:
            stack.start_simulator()
            os.environ.update(stack.env)
            owner = load_config(config).model_copy(
                update={
                    "nats_url": credentials.nats_url(nats_server.url, INIT_USER),
                    "database_url": owner_url,
                }
            )
            asyncio.run(initialise(owner))
            asyncio.run(_grant(owner_url, credentials.database))
            cli = owner.model_copy(
                update={
                    "nats_url": credentials.nats_url(nats_server.url, CLI_USER),
                    "database_url": credentials.database_url(owner_url, CLI_USER),
                }
            )
            stack.service_env = service_env(credentials, nats_server.url, owner_url)
            stack.start_services()
            console.print(
                f"simulator and {len(stack.processes) - 1} services running, each as its own "
                f"NATS user and Postgres role; logs in {state_dir / 'logs'}"
            )
            published, new = asyncio.run(start_run(cli, pairs, cli.sampling.seed))
            console.print(f"published {published} pairs ({new} new) as user {CLI_USER!r}")
            done = asyncio.run(watch_until_settled(cli, timeout))
            asyncio.run(print_summary(cli))
            console.print(f"done in {time.monotonic() - started:.0f} s")
            console.print(f"run {state_line(done)}")
        finally:
            stack.stop()


async def _grant(database_url: str, passwords: Mapping[str, str]) -> None:
    engine = create_engine(database_url)
    try:
        await apply_access(engine, passwords)
    finally:
        await engine.dispose()
