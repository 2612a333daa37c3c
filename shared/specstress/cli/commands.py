"""The `specstress` command: init, run, models add/list, status, demo."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from specstress import ids
from specstress.analysis import queries as analysis
from specstress.analysis import summary as reports
from specstress.analysis.diversity import run_selection
from specstress.analysis.reports import judge_sample, report
from specstress.analysis.value_mapping import run_value_mapping
from specstress.cli.ops import ops_app
from specstress.config import Config, load_config
from specstress.contracts import ModelRegistered, PairSampled
from specstress.db import store
from specstress.db.engine import create_engine
from specstress.db.migrate import upgrade
from specstress.errors import InputError
from specstress.llm.batches import queue as batches
from specstress.llm.traffic import store as limits
from specstress.local.servers import ensure_database, resolve_infra
from specstress.local.stack import Stack, wait_until_idle
from specstress.method.selection import Method
from specstress.method.taxonomy import load_taxonomy, sample_pairs
from specstress.pipeline.bus import connect, ensure_topology, publish
from specstress.pipeline.reconcile import reconcile

app = typer.Typer(help="Stress-test AI model specs.", no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Register and list target models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(ops_app, name="ops")
providers_app = typer.Typer(
    help="Provider accounts paused for quota, and the fleet-wide rate limits.",
    no_args_is_help=True,
)
app.add_typer(providers_app, name="providers")
app.command()(report)
app.command("judge-sample")(judge_sample)
console = Console()
if not console.is_terminal:
    # logs and CI captures are read wide; rich would otherwise wrap tables at 80 columns
    console.width = 132
T = TypeVar("T")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="SPECSTRESS_CONFIG", help="YAML config file", show_default=True
    ),
]
DEFAULT_CONFIG = Path("specstress.yaml")


def _run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    try:
        return asyncio.run(wrapper())
    except InputError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _config(path: Path) -> Config:
    try:
        return load_config(path)
    except InputError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


# --- init ------------------------------------------------------------------------------------


async def initialise(config: Config) -> dict[str, int]:
    """Schema, stream and consumers, taxonomy and target models; idempotent."""
    taxonomy = load_taxonomy(config.taxonomy.source)
    await upgrade(config.database_url)
    engine = create_engine(config.database_url)
    try:
        await store.insert_values(
            engine,
            [
                {
                    "taxonomy_version": taxonomy.version,
                    "value_id": v.value_id,
                    "name": v.name,
                    "level": v.level,
                    "parent_id": v.parent_id,
                    "description": v.description,
                    "pct_total_occurrences": v.pct_total_occurrences,
                }
                for v in taxonomy.values
            ],
        )
        for key in config.roles.targets:
            await store.register_model(engine, key, config.model(key).family)
        await analysis.sync_config(engine, config)
    finally:
        await engine.dispose()
    client = await connect(config.nats_url, "specstress-cli")
    try:
        await ensure_topology(client.jetstream(), config.bus)
    finally:
        await client.close()
    return {"values": len(taxonomy.values), "targets": len(config.roles.targets)}


@app.command()
def init(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Create the schema, the JetStream stream and consumers; load taxonomy and targets."""
    cfg = _config(config)
    done = _run(initialise(cfg))
    console.print(
        f"initialised: {done['values']} taxonomy values, {done['targets']} target models, "
        f"stream {cfg.bus.stream}"
    )


# --- run -------------------------------------------------------------------------------------


async def start_run(config: Config, pairs: int, seed: int) -> tuple[int, int]:
    """Sample pairs, store them and publish them; returns (pairs published, pairs new)."""
    taxonomy = load_taxonomy(config.taxonomy.source)
    sampled = sample_pairs(taxonomy, pairs, seed)
    rows = [
        {
            "pair_id": ids.pair_id(v1, v2, taxonomy.version),
            "value1": v1,
            "value2": v2,
            "taxonomy_version": taxonomy.version,
            "seed": seed,
            "run_index": index,
        }
        for index, (v1, v2) in enumerate(sampled)
    ]
    engine = create_engine(config.database_url)
    try:
        new = await store.insert_pairs(engine, rows)
    finally:
        await engine.dispose()
    client = await connect(config.nats_url, "specstress-cli")
    try:
        js = client.jetstream()
        for row in rows:
            await publish(
                js,
                PairSampled(
                    pair_id=row["pair_id"],
                    value1=row["value1"],
                    value2=row["value2"],
                    taxonomy_version=row["taxonomy_version"],
                    index=row["run_index"],
                ),
            )
    finally:
        await client.close()
    return len(rows), new


@app.command()
def run(
    config: ConfigOption = DEFAULT_CONFIG,
    pairs: Annotated[int | None, typer.Option(min=1, help="value pairs to sample")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
) -> None:
    """Sample value pairs and start them through the pipeline (same seed -> same pairs)."""
    cfg = _config(config)
    count = pairs if pairs is not None else cfg.sampling.pairs
    published, new = _run(start_run(cfg, count, seed if seed is not None else cfg.sampling.seed))
    console.print(f"published {published} pairs ({new} new, {published - new} already known)")


# --- models ----------------------------------------------------------------------------------


async def add_model(config: Config, key: str) -> bool:
    model = config.model(key)
    engine = create_engine(config.database_url)
    try:
        await store.register_model(engine, key, model.family)
    finally:
        await engine.dispose()
    client = await connect(config.nats_url, "specstress-cli")
    try:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        return await publish(
            client.jetstream(), ModelRegistered(model_key=key, registered_at=stamp)
        )
    finally:
        await client.close()


@models_app.command("add")
def models_add(
    key: Annotated[str, typer.Argument(help="a model key defined in the config's models")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Make a configured model a target; the responder answers every existing scenario with it."""
    cfg = _config(config)
    if key not in {m.key for m in cfg.models}:
        console.print(f"[red]error:[/red] {config}: no model with key {key!r} under models")
        raise typer.Exit(2)
    _run(add_model(cfg, key))
    console.print(f"registered {key}; backfill of existing scenarios requested")


@models_app.command("list")
def models_list(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Registered target models and how many scenarios each has answered."""
    cfg = _config(config)

    async def fetch() -> list[dict[str, object]]:
        engine = create_engine(cfg.database_url)
        try:
            return await store.list_models(engine)
        finally:
            await engine.dispose()

    table = Table("model", "family", "active", "responses", "registered")
    for row in _run(fetch()):
        table.add_row(
            str(row["model_key"]),
            str(row["family"]),
            "yes" if row["active"] else "no",
            str(row["responses"]),
            str(row["registered_at"])[:19],
        )
    console.print(table)


# --- status ----------------------------------------------------------------------------------

_STAGES = (
    ("scenarios", "scenarios", None),
    ("responses", "responses", "responses_expected"),
    ("spectra", "spectra", "spectra_expected"),
    ("classifications", "classifications", "classifications_expected"),
)


def _progress_table(c: dict[str, float]) -> Progress:
    progress = Progress(
        TextColumn("{task.description:>16}"),
        BarColumn(),
        TextColumn("{task.completed:>7.0f} / {task.total:<7.0f}"),
        console=console,
        auto_refresh=False,
    )
    progress.add_task(
        "scenarios", total=max(3 * c["pairs"], 1), completed=int(c["scenarios"] + c["drops"])
    )
    for label, done, expected in _STAGES[1:]:
        assert expected is not None
        progress.add_task(label, total=max(c[expected], 1), completed=int(c[done]))
    return progress


def _print_status(c: dict[str, float]) -> None:
    console.print(_progress_table(c))
    console.print(
        f"pairs {c['pairs']:.0f} · drops {c['drops']:.0f} · flagged scenarios "
        f"{c['scenarios_flagged']:.0f} · verdicts {c['verdicts']:.0f} · dead letters "
        f"{c['dead_letters']:.0f} · LLM calls {c['llm_calls_ok']:.0f} ok, "
        f"{c['llm_calls_failed']:.0f} failed · tokens {c['tokens']:.0f} "
        f"({c['cached_tokens']:.0f} cached input) · cost ${c['cost_usd']:.2f}"
    )


@app.command()
def status(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Counts per stage with progress bars."""
    cfg = _config(config)

    async def fetch() -> dict[str, float]:
        engine = create_engine(cfg.database_url)
        try:
            return await reports.counts(engine)
        finally:
            await engine.dispose()

    _print_status(_run(fetch()))
    _run(_print_traffic(cfg))


# --- providers -------------------------------------------------------------------------------


async def _print_traffic(config: Config) -> None:
    """The budget, any paused provider and the batch queues, for `status`."""
    engine = create_engine(config.database_url)
    try:
        cost, tokens = await limits.spent(engine)
        paused = await limits.pauses(engine, active_only=True)
        queues = await batches.summary(engine)
    finally:
        await engine.dispose()
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
    cfg = _config(config)

    async def fetch() -> tuple[list[limits.Pause], list[dict[str, object]]]:
        engine = create_engine(cfg.database_url)
        try:
            return await limits.pauses(engine, active_only=False), await limits.limit_rows(engine)
        finally:
            await engine.dispose()

    paused, paced = _run(fetch())
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
        console.print("[red]error:[/red] name a base URL or pass --all")
        raise typer.Exit(2)
    cfg = _config(config)

    async def clear() -> list[limits.Pause]:
        engine = create_engine(cfg.database_url)
        try:
            return await limits.clear_pauses(
                engine,
                base_url=None if base_url is None else base_url.rstrip("/"),
                api_key_env=key_env,
            )
        finally:
            await engine.dispose()

    lifted = _run(clear())
    for pause in lifted:
        console.print(f"resumed {pause.base_url} (key {pause.api_key_env or '-'})")
    if not lifted:
        console.print("no matching pause")
        raise typer.Exit(1)


# --- reconcile -------------------------------------------------------------------------------


async def run_reconcile(config: Config) -> dict[str, int]:
    engine = create_engine(config.database_url)
    client = await connect(config.nats_url, "specstress-cli")
    try:
        return await reconcile(config, engine, client.jetstream())
    finally:
        await client.close()
        await engine.dispose()


@app.command("reconcile")
def reconcile_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Re-emit the events for stored work that never finished (e.g. after a lost stream)."""
    cfg = _config(config)
    accepted = _run(run_reconcile(cfg))
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
    cfg = _config(config)
    done = _run(
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
    cfg = _config(config)
    done = _run(run_value_mapping(cfg))
    console.print(
        f"mapped {done.mapped} new distinctive values onto {done.categories} level-2 categories "
        f"(taxonomy {done.taxonomy_version}, embeddings {done.embedding_key}); "
        "see `specstress report figure10` and `figure11`"
    )


# --- demo ------------------------------------------------------------------------------------


async def print_summary(config: Config) -> None:
    engine = create_engine(config.database_url)
    try:
        c = await reports.counts(engine)
        by_set = await reports.disagreement_by_set(engine)
        compliance = await reports.compliance(engine)
    finally:
        await engine.dispose()
    table = Table(title="pipeline", show_header=False)
    for label, key in (
        ("pairs", "pairs"),
        ("scenarios", "scenarios"),
        ("dropped generations", "drops"),
        ("responses", "responses"),
        ("spectra", "spectra"),
        ("classifications", "classifications"),
        ("flagged scenarios", "scenarios_flagged"),
        ("verdicts", "verdicts"),
        ("dead letters", "dead_letters"),
        ("LLM calls", "llm_calls_ok"),
    ):
        table.add_row(label, f"{c[key]:.0f}")
    console.print(table)
    bins = [f"D {lo:g}-{min(hi, 3):g}" for lo, hi in reports.D_BINS]
    d_table = Table(
        "model set",
        "scenarios",
        f"D>={config.disagreement.threshold:g}",
        "mean D",
        *bins,
        title="disagreement per model set",
    )
    for s in by_set:
        d_table.add_row(
            s.model_set, str(s.scenarios), str(s.high), f"{s.mean_d:.2f}", *(str(b) for b in s.bins)
        )
    console.print(d_table)
    v_table = Table(
        "spec",
        "scenarios judged",
        "answers judged",
        "flagged (majority)",
        "flagged (any)",
        "frequent non-compliance (majority / any)",
        title="compliance",
    )
    for row in compliance:
        v_table.add_row(
            f"{row['spec_id']} v{row['spec_version']}",
            str(row["scenarios_judged"]),
            str(row["answers_judged"]),
            str(row["majority_flagged"]),
            str(row["any_flagged"]),
            f"{row['frequent_majority']} / {row['frequent_any']}",
        )
    console.print(v_table)


async def _watch_until_idle(config: Config, timeout: float) -> None:
    engine = create_engine(config.database_url)
    waiter = asyncio.create_task(wait_until_idle(config, timeout))
    try:
        while not waiter.done():
            c = await reports.counts(engine)
            console.print(
                f"  pairs {c['pairs']:.0f} · scenarios {c['scenarios']:.0f} · responses "
                f"{c['responses']:.0f}/{c['responses_expected']:.0f} · spectra {c['spectra']:.0f} · "
                f"classified {c['classifications']:.0f} · flagged {c['scenarios_flagged']:.0f} · "
                f"verdicts {c['verdicts']:.0f}"
            )
            await asyncio.wait({waiter}, timeout=2.0)
        await waiter
    finally:
        await engine.dispose()


@app.command()
def demo(
    config: ConfigOption = Path("specstress.demo.yaml"),
    pairs: Annotated[int, typer.Option(min=1, help="value pairs to run")] = 20,
    state_dir: Annotated[Path, typer.Option(help="where private servers keep data")] = Path(
        ".specstress"
    ),
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline")] = 600.0,
) -> None:
    """Run the whole pipeline offline on the simulator and print a summary."""
    started = time.monotonic()
    infra = resolve_infra(state_dir)
    stack = Stack(config_path=config, log_dir=state_dir / "logs", env={})
    try:
        database_url = infra.database_url
        if "DATABASE_URL" not in os.environ:
            database_url = asyncio.run(ensure_database(database_url, "specstress"))
        stack.env.update(NATS_URL=infra.nats_url, DATABASE_URL=database_url)
        os.environ.update(stack.env)
        console.print(f"NATS {infra.nats_url} · Postgres {database_url.split('@')[-1]}")
        stack.start_simulator()
        os.environ.update(stack.env)
        cfg = _config(config)
        _run(initialise(cfg))
        stack.start_services()
        console.print(
            f"simulator and {len(stack.processes) - 1} services running; logs in "
            f"{state_dir / 'logs'}"
        )
        published, new = _run(start_run(cfg, pairs, cfg.sampling.seed))
        console.print(f"published {published} pairs ({new} new)")
        _run(_watch_until_idle(cfg, timeout))
        _run(print_summary(cfg))
        console.print(f"done in {time.monotonic() - started:.0f} s")
    finally:
        stack.stop()
        infra.close()


def main() -> None:
    app()
