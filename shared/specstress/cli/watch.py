"""The new-model watch on the command line: what the providers listed, and release reports."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from specstress.api import compare_models, database
from specstress.cli.common import DEFAULT_CONFIG, ConfigOption, console, load, run_async
from specstress.watch import Comparison
from specstress.watch import store as discoveries

__all__ = ["models_compare", "models_discovered", "print_comparison"]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _d(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_comparison(c: Comparison) -> None:
    """The release report of one model, as tables."""
    console.print(
        f"[bold]{c.model_key}[/bold] (family {c.family}) against "
        f"{c.against or 'no predecessor'} over {c.scenarios} scenarios"
    )
    table = Table(
        "model set",
        "scenarios",
        "mean D with",
        "mean D without",
        "change",
        "newly high",
        "outliers",
        title="disagreement",
    )
    for s in c.disagreement:
        table.add_row(
            s.model_set,
            str(s.scenarios),
            _d(s.mean_d_with),
            _d(s.mean_d_without),
            "-" if s.delta is None else f"{s.delta:+.3f}",
            str(len(s.newly_high)),
            str(s.outliers),
        )
    console.print(table)
    table = Table("who", "labelled", "refusal rate", "refusal types", title="refusals")
    rows = [("model", c.refusals_model), ("family (others)", c.refusals_family)]
    if c.refusals_predecessor is not None:
        rows.insert(1, (f"predecessor {c.against}", c.refusals_predecessor))
    for who, r in rows:
        mix = ", ".join(f"{t}: {n}" for t, n in r.types.items()) or "-"
        table.add_row(who, str(r.labelled), _rate(r.rate), mix)
    console.print(table)
    for spec in c.compliance:
        table = Table(
            "who", "judged", "flagged (majority)", "flagged (any)",
            title=f"compliance under {spec.spec_id} v{spec.spec_version}",
        )  # fmt: skip
        flag_rows = [
            ("model", spec.model),
            ("family (others)", spec.family),
            ("family with the model", spec.family_with_model),
        ]
        if spec.predecessor is not None:
            flag_rows.insert(1, (f"predecessor {c.against}", spec.predecessor))
        for who, f in flag_rows:
            table.add_row(who, str(f.judged), _rate(f.majority_rate), _rate(f.any_rate))
        console.print(table)
    if c.flag_rate_shift is not None:
        console.print(f"family majority flag rate shift: {c.flag_rate_shift:+.1%}")
    if c.moved_furthest:
        table = Table(
            "scenario", "model", f"{c.against}", "distance",
            title=f"furthest from {c.against}",
        )  # fmt: skip
        for m in c.moved_furthest:
            table.add_row(m.scenario_id, str(m.model), str(m.predecessor), str(m.distance))
        console.print(table)


def models_compare(
    key: Annotated[str, typer.Argument(help="the new model's key")],
    against: Annotated[
        str | None, typer.Option(help="compare with this model instead of the predecessor")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """How a model compares with its family and its predecessor (the release report)."""
    cfg = load(config)
    print_comparison(run_async(compare_models(cfg, key, against)))


def models_discovered(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Every model the watched providers listed, with its status and why."""
    cfg = load(config)

    async def fetch() -> list[discoveries.Discovered]:
        async with database(cfg) as engine:
            return await discoveries.discovered(engine)

    table = Table(
        "provider", "model id", "key", "rule", "status", "estimate", "first seen", "last seen",
        "note",
    )  # fmt: skip
    for d in run_async(fetch()):
        table.add_row(
            d.provider,
            d.model_id,
            d.model_key or "-",
            d.rule or "-",
            d.status,
            "-" if d.estimate_usd is None else f"${d.estimate_usd:.4f}",
            f"{d.first_seen:%Y-%m-%d %H:%M}",
            f"{d.last_seen:%Y-%m-%d %H:%M}",
            d.note[:80],
        )
    console.print(table)
