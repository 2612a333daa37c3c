"""The pipeline's commands: init, run, models, status, wait, providers, reconcile, select,
map-values."""

from __future__ import annotations

import asyncio
import json
import time
from enum import StrEnum
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from specstress.analysis import run_selection, run_value_mapping
from specstress.analysis import summary as reports
from specstress.api import (
    add_discovered,
    add_model,
    database,
    estimate_model,
    find_discovered,
    initialise,
    run_reconcile,
    start_run,
)
from specstress.cli.common import DEFAULT_CONFIG, ConfigOption, console, fail, load, run_async
from specstress.config import Config, ModelConfig
from specstress.db import store
from specstress.llm.batches import queue as batches
from specstress.llm.traffic import store as limits
from specstress.method.selection import Method
from specstress.pipeline.progress import Completeness, PendingUnit, completeness, pending_units

__all__ = [
    "app",
    "init",
    "map_values_command",
    "models_add",
    "models_app",
    "models_list",
    "providers_app",
    "providers_list",
    "providers_resume",
    "reconcile_command",
    "run",
    "select_command",
    "status",
]

app = typer.Typer(
    help="Stress-test AI model specs. Add --debug (or set SPECSTRESS_DEBUG=1) to see the "
    "traceback of an error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Register and list target models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
providers_app = typer.Typer(
    help="Provider accounts paused for quota, and the fleet-wide rate limits.",
    no_args_is_help=True,
)
app.add_typer(providers_app, name="providers")


# --- init ------------------------------------------------------------------------------------


@app.command()
def init(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Create the schema, the JetStream stream and consumers; load taxonomy and targets."""
    cfg = load(config)
    done = run_async(initialise(cfg))
    console.print(
        f"initialised: {done['values']} taxonomy values, {done['targets']} target models, "
        f"stream {cfg.bus.stream}"
    )


# --- run -------------------------------------------------------------------------------------


@app.command()
def run(
    config: ConfigOption = DEFAULT_CONFIG,
    pairs: Annotated[int | None, typer.Option(min=1, help="value pairs to sample")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
) -> None:
    """Sample value pairs and start them through the pipeline (same seed -> same pairs)."""
    cfg = load(config)
    count = pairs if pairs is not None else cfg.sampling.pairs
    published, new = run_async(
        start_run(cfg, count, seed if seed is not None else cfg.sampling.seed)
    )
    console.print(f"published {published} pairs ({new} new, {published - new} already known)")


# --- models ----------------------------------------------------------------------------------


@models_app.command("add")
def models_add(
    key: Annotated[
        str | None, typer.Argument(help="a model key defined in the config's models")
    ] = None,
    discovered: Annotated[
        str | None,
        typer.Option(help="register a proposed discovered model (its key or provider/model-id)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the backfill estimate, register nothing")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Make a model a target; the responder answers every existing scenario with it."""
    if (key is None) == (discovered is None):
        raise fail("name a configured model KEY or --discovered ID, not both")
    cfg = load(config)
    if discovered is not None:
        found = run_async(find_discovered(cfg, discovered))
        if found.entry is None:
            raise fail(f"{discovered}: no rule matched it, so it has no model entry")
        model = ModelConfig.model_validate(found.entry)
    elif key not in {m.key for m in cfg.models}:
        raise fail(f"{config}: no model with key {key!r} under models")
    else:
        model = cfg.model(key)
    estimate = run_async(estimate_model(cfg, model))
    console.print(f"backfill estimate: {estimate.describe()}")
    if dry_run:
        return
    if discovered is not None:
        row, _, done = run_async(add_discovered(cfg, discovered))
        if not done:
            raise fail(f"{discovered} was registered by someone else meanwhile")
        console.print(f"registered {row.model_key}; backfill of existing scenarios requested")
        return
    run_async(add_model(cfg, model.key))
    console.print(f"registered {model.key}; backfill of existing scenarios requested")


@models_app.command("list")
def models_list(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Registered target models and how many scenarios each has answered."""
    cfg = load(config)

    async def fetch() -> list[dict[str, object]]:
        async with database(cfg) as engine:
            return await store.list_models(engine)

    table = Table("model", "family", "active", "responses", "registered")
    for row in run_async(fetch()):
        table.add_row(
            str(row["model_key"]),
            str(row["family"]),
            "yes"
            if row["active"]
            else f"no (retired {str(row['retired_at'])[:10]})"
            if row.get("retired_at")
            else "no",
            str(row["responses"]),
            str(row["registered_at"])[:19],
        )
    console.print(table)


# --- status and wait --------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _progress_table(done: Completeness) -> Progress:
    progress = Progress(
        TextColumn("{task.description:>18}"),
        BarColumn(),
        TextColumn("{task.completed:>7.0f} / {task.total:<7.0f}"),
        TextColumn("{task.fields[note]}"),
        console=console,
        auto_refresh=False,
    )
    for stage in done.stages:
        notes = []
        if stage.dead_lettered:
            notes.append(f"[red]{stage.dead_lettered} dead-lettered[/red]")
        if stage.pending:
            notes.append(f"{stage.pending} pending, oldest {_age(stage.oldest_pending_seconds)}")
        progress.add_task(
            stage.stage,
            total=max(stage.expected, 1),
            completed=stage.done + stage.dead_lettered,
            note=" · ".join(notes),
        )
    return progress


def state_line(done: Completeness) -> str:
    """One line: complete, settled with dead letters, or what is still pending."""
    if done.complete:
        return f"[green]complete[/green]: all {done.expected} expected units are done"
    reasons = ", ".join(f"{code} {n}" for code, n in done.dead_letters.items())
    if done.settled:
        return (
            f"[yellow]settled, not complete[/yellow]: {done.dead_lettered} unit(s) held back by "
            f"dead letters ({reasons}); fix the cause, then `specstress dead-letters replay`"
        )
    return (
        f"not settled: {done.pending} unit(s) pending, oldest "
        f"{_age(done.oldest_pending_seconds)}" + (f"; dead letters: {reasons}" if reasons else "")
    )


def _print_status(c: dict[str, float], done: Completeness) -> None:
    console.print(_progress_table(done))
    console.print(state_line(done))
    console.print(
        f"pairs {c['pairs']:.0f} · drops {c['drops']:.0f} · flagged scenarios "
        f"{c['scenarios_flagged']:.0f} · verdicts {c['verdicts']:.0f} · dead letters "
        f"{c['dead_letters']:.0f} · LLM calls {c['llm_calls_ok']:.0f} ok, "
        f"{c['llm_calls_failed']:.0f} failed · tokens {c['tokens']:.0f} "
        f"({c['cached_tokens']:.0f} cached input) · cost ${c['cost_usd']:.2f}"
    )


ModelOption = Annotated[
    str | None, typer.Option("--model", help="only the units of this target model")
]


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="the figures as one JSON object")] = False,
    model: ModelOption = None,
) -> None:
    """Per stage: units expected, done, dead-lettered and pending; complete or not."""
    cfg = load(config)

    async def fetch() -> tuple[dict[str, float], Completeness]:
        async with database(cfg) as engine:
            return await reports.counts(engine), await completeness(engine, cfg, model_key=model)

    counts, done = run_async(fetch())
    if as_json:
        print(json.dumps({**done.as_json(), "counts": counts}, indent=2))
        return
    _print_status(counts, done)
    run_async(_print_traffic(cfg))


class Until(StrEnum):
    settled = "settled"
    complete = "complete"


@app.command("wait")
def wait_command(
    config: ConfigOption = DEFAULT_CONFIG,
    until: Annotated[
        Until,
        typer.Option(
            help="settled: nothing pending (dead letters allowed); complete: every unit done"
        ),
    ] = Until.settled,
    timeout: Annotated[float, typer.Option(min=0, help="seconds before giving up")] = 600.0,
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between looks")] = 1.0,
    model: ModelOption = None,
) -> None:
    """Wait until the run is settled or complete: exit 0 when it is, 1 on timeout."""
    cfg = load(config)

    async def watch() -> tuple[bool, Completeness, list[PendingUnit]]:
        deadline = time.monotonic() + timeout
        async with database(cfg) as engine:
            while True:
                done = await completeness(engine, cfg, model_key=model)
                reached = done.complete if until is Until.complete else done.settled
                if reached or time.monotonic() >= deadline:
                    oldest = [] if reached else await pending_units(engine, cfg, model_key=model)
                    return reached, done, oldest
                await asyncio.sleep(interval)

    reached, done, oldest = run_async(watch())
    console.print(state_line(done))
    if reached:
        return
    for stage in done.stages:
        if stage.pending or (until is Until.complete and stage.dead_lettered):
            console.print(
                f"  {stage.stage}: {stage.pending} pending (oldest "
                f"{_age(stage.oldest_pending_seconds)}), {stage.dead_lettered} dead-lettered"
            )
    for unit in oldest:
        console.print(f"  pending {unit.stage} {unit.unit} for {_age(unit.age_seconds)}")
    raise typer.Exit(1)


# --- providers -------------------------------------------------------------------------------


async def _print_traffic(config: Config) -> None:
    """The budget, any paused provider and the batch queues, for `status`."""
    async with database(config) as engine:
        cost, tokens = await limits.spent(engine)
        paused = await limits.pauses(engine, active_only=True)
        queues = await batches.summary(engine)
    for queue in queues:
        console.print(
            f"batches {queue.stage}: {queue.pending} waiting to be sent · {queue.submitted} in "
            f"{queue.jobs_running} job(s) at the provider · {queue.succeeded} answered · "
            f"{queue.failed} left unanswered by their batch (called online)"
        )
    budget = config.budget
    if budget.capped:
        caps = [
            f"${cost:.2f} of ${budget.max_cost_usd:.2f}" if budget.max_cost_usd is not None else "",
            f"{tokens} of {budget.max_tokens} tokens" if budget.max_tokens is not None else "",
        ]
        spent = budget.spent_by(cost, tokens)
        state = "[red]EXHAUSTED[/red]: no new paid calls start" if spent else "within budget"
        console.print(f"budget: {' · '.join(c for c in caps if c)} spent · {state}")
    for pause in paused:
        until = (
            "until cleared"
            if pause.paused_until is None
            else f"until {pause.paused_until:%Y-%m-%d %H:%M:%S %Z}"
        )
        console.print(
            f"[red]paused[/red] {pause.base_url} (key {pause.api_key_env or '-'}) {until}: "
            f"{pause.reason[:200]}"
        )


@providers_app.command("list")
def providers_list(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Paused providers and the shared state of every rate-limited endpoint."""
    cfg = load(config)

    async def fetch() -> tuple[list[limits.Pause], list[dict[str, object]]]:
        async with database(cfg) as engine:
            return await limits.pauses(engine, active_only=False), await limits.limit_rows(engine)

    paused, paced = run_async(fetch())
    table = Table("provider", "key env", "since", "until", "found by", "reason", title="pauses")
    for pause in paused:
        table.add_row(
            pause.base_url,
            pause.api_key_env or "-",
            f"{pause.paused_at:%Y-%m-%d %H:%M:%S}",
            "cleared by hand"
            if pause.paused_until is None
            else f"{pause.paused_until:%Y-%m-%d %H:%M:%S}",
            pause.model_key,
            pause.reason[:120],
        )
    console.print(table if paused else "no provider is paused")
    table = Table(
        "base url",
        "model",
        "key env",
        "rate factor",
        "RPM seen",
        "TPM seen",
        "blocked for",
        title="rate limits",
    )
    for row in paced:
        table.add_row(
            str(row["base_url"]),
            str(row["model_id"]),
            str(row["api_key_env"] or "-"),
            f"{row['rate_factor']:.2f}",
            str(row["learned_requests_per_minute"] or "-"),
            str(row["learned_tokens_per_minute"] or "-"),
            f"{row['blocked_seconds']:.1f} s" if row["blocked_seconds"] else "-",
        )
    if paced:
        console.print(table)


@providers_app.command("resume")
def providers_resume(
    base_url: Annotated[
        str | None, typer.Argument(help="the paused provider's base URL, as `list` shows it")
    ] = None,
    key_env: Annotated[
        str | None, typer.Option(help="only the pause of this API-key variable")
    ] = None,
    all_providers: Annotated[bool, typer.Option("--all", help="lift every pause")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Lift a provider's pause once its quota or money problem is fixed; deferred work resumes."""
    if (base_url is None) == (not all_providers):
        raise fail("name a base URL or pass --all")
    cfg = load(config)

    async def clear() -> list[limits.Pause]:
        async with database(cfg) as engine:
            return await limits.clear_pauses(
                engine,
                base_url=None if base_url is None else base_url.rstrip("/"),
                api_key_env=key_env,
            )

    lifted = run_async(clear())
    for pause in lifted:
        console.print(f"resumed {pause.base_url} (key {pause.api_key_env or '-'})")
    if not lifted:
        console.print("no matching pause")
        raise typer.Exit(1)


# --- reconcile -------------------------------------------------------------------------------


@app.command("reconcile")
def reconcile_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Re-emit the events for stored work that never finished (e.g. after a lost stream)."""
    cfg = load(config)
    accepted = run_async(run_reconcile(cfg))
    for stage, count in accepted.items():
        console.print(f"{stage}: {count} event(s) re-emitted")


# --- select ----------------------------------------------------------------------------------


@app.command("select")
def select_command(
    name: Annotated[str, typer.Argument(help="selection name; running it again replaces it")],
    *,
    config: ConfigOption = DEFAULT_CONFIG,
    delta: Annotated[
        float | None,
        typer.Option(help="stop distance (0.4 by default, 0.8 with --weighted-by)", min=0.0),
    ] = None,
    weighted_by: Annotated[
        str | None,
        typer.Option("--weighted-by", help="model set whose disagreement D weights distances"),
    ] = None,
    seed: Annotated[int, typer.Option(help="chooses the first (random) scenario")] = 0,
    method: Annotated[
        Method, typer.Option(help="exact farthest-first, partitioned, or auto by size")
    ] = "auto",
) -> None:
    """Embed scenarios that lack a vector, select a diverse subset (greedy k-center), store it."""
    cfg = load(config)
    done = run_async(
        run_selection(cfg, name, delta=delta, weighted_by=weighted_by, seed=seed, method=method)
    )
    weighting = f", weighted by D on {done.weighted_by}" if done.weighted_by else ""
    console.print(
        f"selection {done.name}: {done.selected} of {done.candidates} scenarios "
        f"({done.method}, delta {done.delta:g}{weighting}, seed {done.seed}); "
        f"{done.embedded} newly embedded in {done.embed_seconds:.1f} s, "
        f"selected in {done.select_seconds:.1f} s"
    )


@app.command("map-values")
def map_values_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Map distinctive values not yet mapped to their nearest level-2 taxonomy category."""
    cfg = load(config)
    done = run_async(run_value_mapping(cfg))
    console.print(
        f"mapped {done.mapped} new distinctive values onto {done.categories} level-2 categories "
        f"(taxonomy {done.taxonomy_version}, embeddings {done.embedding_key}); "
        "see `specstress report figure10` and `figure11`"
    )
