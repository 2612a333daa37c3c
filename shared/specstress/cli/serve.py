"""`specstress serve`: the read-only explorer, served by uvicorn until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import text

from specstress.cli.common import DEFAULT_CONFIG, ConfigOption, console, fail, load
from specstress.config import Config
from specstress.db import create_engine
from specstress.errors import InputError
from specstress.explorer import create_app
from specstress.local.servers import ensure_database_sync, resolve_infra

__all__ = ["DEFAULT_PORT", "READ_ONLY_SETTINGS", "serve"]

DEFAULT_PORT = 8780
# every session of the explorer is read-only, whatever role it connects as, and no page can
# hold the database for long
READ_ONLY_SETTINGS = {
    "default_transaction_read_only": "on",
    "statement_timeout": "30000",
    "application_name": "specstress-explorer",
}


async def _serve(
    config: Config,
    *,
    config_name: str,
    database_url: str,
    host: str,
    port: int,
    report_file: Path | None,
) -> None:
    engine = create_engine(database_url, pool_size=4, server_settings=READ_ONLY_SETTINGS)
    try:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1 FROM scenarios LIMIT 1"))
        except Exception as exc:  # any failure here means there is nothing to serve
            where = database_url.rsplit("@", 1)[-1]
            raise InputError(
                f"cannot read scenarios from {where}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        app = create_app(engine, config, config_name=config_name, report_file=report_file)
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        )
        console.print(f"explorer at http://{host}:{port}/  (Ctrl-C stops it)")
        await server.serve()
    finally:
        await engine.dispose()


def serve(
    *,
    config: ConfigOption = DEFAULT_CONFIG,
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="SPECSTRESS_EXPLORER_DATABASE_URL",
            help="connect as this URL instead of the config's (with authentication on: the "
            "SELECT-only dashboards role, specstress_grafana)",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="report HTML to serve at /report (default: built from the database)"),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="start (or adopt) the private servers whose data is kept here, as `specstress "
            "demo` left them, and stop them on exit"
        ),
    ] = None,
) -> None:
    """Browse scenarios, answers, verdicts and models in a web browser (read-only)."""
    cfg = load(config)
    with ExitStack() as started:
        url = database_url or cfg.database_url
        if state_dir is not None:
            if not state_dir.is_dir():
                raise fail(f"{state_dir}: no such folder (run `make demo` first)")
            infra = started.enter_context(resolve_infra(state_dir))
            if database_url is None and "DATABASE_URL" not in os.environ:
                # the demo keeps its data in the database "specstress" of its private server
                url = ensure_database_sync(infra.database_url, "specstress")
            if report is None and (state_dir / "report.html").is_file():
                report = state_dir / "report.html"
        try:
            asyncio.run(
                _serve(
                    cfg,
                    config_name=config.name,
                    database_url=url,
                    host=host,
                    port=port,
                    report_file=report,
                )
            )
        except KeyboardInterrupt:
            pass
        except InputError as exc:
            raise fail(exc) from None
        except OSError as exc:
            raise fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    console.print("explorer stopped")
