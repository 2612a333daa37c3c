"""`specstress dead-letters list | replay`: what is stuck and why, and sending it again."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from specstress.api import bus, database
from specstress.cli.common import DEFAULT_CONFIG, ConfigOption, console, fail, load, run_async
from specstress.pipeline.progress import DeadLetter, Replayed, list_dead_letters, replay

__all__ = ["dead_letters_app"]

dead_letters_app = typer.Typer(
    help="Messages that could not be handled, with reason codes; replay them once fixed.",
    no_args_is_help=True,
)

ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="only this reason code (e.g. provider_refused)")
]


@dead_letters_app.command("list")
def list_command(
    config: ConfigOption = DEFAULT_CONFIG,
    reason: ReasonOption = None,
    include_replayed: Annotated[
        bool, typer.Option("--all", help="also those already replayed")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
) -> None:
    """Open dead letters, oldest first: id, stage, unit, reason code and message."""
    cfg = load(config)

    async def fetch() -> list[DeadLetter]:
        async with database(cfg) as engine:
            return await list_dead_letters(engine, reason=reason, include_replayed=include_replayed)

    letters = run_async(fetch())
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": d.dead_letter_id,
                        "stage": d.stage,
                        "unit": d.unit,
                        "reason_code": d.reason_code,
                        "reason": d.reason,
                        "consumer": d.consumer,
                        "subject": d.subject,
                        "deliveries": d.deliveries,
                        "created_at": d.created_at.isoformat(),
                        "replayed_at": None if d.replayed_at is None else d.replayed_at.isoformat(),
                    }
                    for d in letters
                ],
                indent=2,
            )
        )
        return
    if not letters:
        console.print("no dead letters" if include_replayed else "no open dead letters")
        return
    table = Table("id", "when", "stage", "unit", "reason", "deliveries", "message")
    for d in letters:
        table.add_row(
            str(d.dead_letter_id),
            f"{d.created_at:%Y-%m-%d %H:%M:%S}",
            d.stage or "-",
            d.unit or "-",
            d.reason_code + (" (replayed)" if d.replayed_at else ""),
            str(d.deliveries),
            d.reason[:120],
        )
    console.print(table)


@dead_letters_app.command("replay")
def replay_command(
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="a dead letter id (repeatable)")
    ] = None,
    reason: ReasonOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Publish the chosen open dead letters again, once each; answers already paid for come
    from the ledger."""
    if reason is None and not ids:
        raise fail("choose what to replay: --reason CODE or --id N")
    cfg = load(config)

    async def send() -> Replayed:
        async with database(cfg) as engine, bus(cfg) as client:
            return await replay(engine, client.jetstream(), reason=reason, ids=ids or ())

    done = run_async(send())
    console.print(f"replayed {len(done.replayed)} dead letter(s)")
    if done.unreplayable:
        listed = ", ".join(map(str, done.unreplayable))
        console.print(f"not replayable (their payload is not a valid event): {listed}")
