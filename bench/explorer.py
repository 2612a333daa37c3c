"""The explorer's scenario list at the paper's scale: page times and query plans.

Run with `python -m bench.explorer` (see --help). It loads the same synthetic facts as
`bench.aggregation` (411k scenarios x 12 models by default) into a private PostgreSQL, then for
each filter of the list times the first page and the tenth (following the keyset cursor) and
prints the plan of the first page (EXPLAIN ANALYZE). A page that is fast only because the data
is small shows here as a plan with a Seq Scan or a Sort over the whole set. It appends one JSON
line to bench/results.jsonl. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bench.aggregation import Facts, load
from bench.database import private_database
from bench.recording import header, measure_and_record, print_table
from specstress.analysis.scenarios import ScenarioFilter, explain_list, list_scenarios
from specstress.cli.serve import READ_ONLY_SETTINGS
from specstress.db.engine import create_engine

PAGES = 10
CASES: dict[str, ScenarioFilter] = {
    "every scenario, highest D first": ScenarioFilter(model_set="all_models"),
    "lowest D first": ScenarioFilter(model_set="all_models", order="asc"),
    "high disagreement": ScenarioFilter(model_set="claude_models", level="high"),
    "D between 1 and 1.2": ScenarioFilter(model_set="all_models", d_min=1.0, d_max=1.2),
    "one value, either side": ScenarioFilter(model_set="all_models", value="value a1234"),
    "generator": ScenarioFilter(model_set="all_models", generator="o3"),
    "every family answer flagged (majority)": ScenarioFilter(
        model_set="openai_models", verdicts="family-all-majority"
    ),
    "refusal type": ScenarioFilter(model_set="all_models", refusal_type="Complete Rejection"),
    "text search": ScenarioFilter(model_set="all_models", search="query 12345"),
}


async def time_cases(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url, pool_size=1, server_settings=READ_ONLY_SETTINGS)
    results: list[dict[str, Any]] = []
    try:
        for name, f in CASES.items():
            started = time.perf_counter()
            try:
                page = await list_scenarios(engine, f)
            except DBAPIError as exc:
                # the explorer's statement timeout: the page is refused, as it would be there
                results.append({"case": name, "error": str(exc.orig)[:200], "plan": []})
                continue
            first = time.perf_counter() - started
            cursor = page.next_cursor
            started = time.perf_counter()
            pages = 1
            while cursor is not None and pages < PAGES:
                page = await list_scenarios(engine, f, cursor=cursor)
                cursor = page.next_cursor
                pages += 1
            rest = time.perf_counter() - started
            sql, params = explain_list(f)
            async with engine.connect() as conn:
                plan = [
                    r[0]
                    for r in await conn.execute(
                        text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"), params
                    )
                ]
            results.append(
                {
                    "case": name,
                    "first_page_seconds": round(first, 4),
                    "pages": pages,
                    "mean_next_page_seconds": round(rest / max(pages - 1, 1), 4),
                    "plan": plan,
                }
            )
    finally:
        await engine.dispose()
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with private_database("explorer") as scratch:
        database_url = scratch.database_url
        facts = Facts(args.scenarios, args.seed)
        loaded = await load(database_url, facts)
        cases = await time_cases(database_url)
    return {
        **header("explorer"),
        "parameters": {"scenarios": args.scenarios, "seed": args.seed, "page": 50},
        "load_seconds": loaded.get("load_seconds"),
        "cases": cases,
    }


def show(result: dict[str, Any]) -> None:
    console = print_table(
        f"explorer list @ {result['commit']}: {result['parameters']['scenarios']:,} scenarios",
        ["filter", "first page s", "pages", "next page s"],
        (
            [case["case"], case["error"], "", ""]
            if "error" in case
            else [
                case[key]
                for key in ("case", "first_page_seconds", "pages", "mean_next_page_seconds")
            ]
            for case in result["cases"]
        ),
        width=160,
    )
    for case in result["cases"]:
        console.print(f"\n[bold]{case['case']}[/bold]")
        console.print("\n".join(case["plan"]), markup=False, highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=411_000)
    parser.add_argument("--seed", type=int, default=1)
    measure_and_record(parser, lambda args: asyncio.run(run(args)), show)


if __name__ == "__main__":
    main()
