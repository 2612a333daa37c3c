"""The researcher's view on a real run: the pipeline on the simulator, then the HTML report
parsed, the explorer's list checked against the facts, and the explorer driven in Chromium."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import chain
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from specstress.analysis.queries import Filters
from specstress.analysis.reports import build_report
from specstress.analysis.scenarios import (
    ScenarioFilter,
    list_scenarios,
    model_profile,
    scenario_detail,
)
from specstress.api import start_run
from specstress.cli.main import app
from specstress.cli.serve import READ_ONLY_SETTINGS
from specstress.config import Config
from specstress.db.engine import create_engine
from specstress.db.migrate import upgrade
from specstress.local.servers import Infra, drop_database, ensure_database, start_nats
from specstress.local.stack import wait_until_idle
from specstress.method.labels import TOPIC_COLUMNS
from specstress.pipeline.access import COMPONENTS, DASHBOARDS, apply_access, role_name
from specstress.report.html import DEFAULT_EXPLORER_URL, collect, write_report
from tests.paths import DEMO_CONFIG
from tests.support.browser import CHROMIUM, chromium, explorer
from tests.support.pipeline_harness import rows, running_stack

pytestmark = pytest.mark.e2e
PAIRS = 5
SEED = 7
PROBE_MODEL = "html-probe"
PROBE_TEXT = (
    '<script>window.__pwned = 1</script><b class="injected">bold?</b>'
    '<img src="x" onerror="window.__pwned = 2"> & </details></div>'
)


@dataclass(frozen=True)
class Study:
    database_url: str
    config: Config
    probe_scenario: str


@pytest.fixture(scope="module")
async def study(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Study]:
    """One pipeline run on the simulator, shared by this module's tests, plus one answer whose
    text is markup (the explorer must show it as text)."""
    name = f"t_view_{secrets.token_hex(6)}"
    database_url = await ensure_database(infra.database_url, name)
    folder = tmp_path_factory.mktemp("study")
    try:
        await upgrade(database_url)
        with (
            start_nats(folder / "nats") as nats,
            pytest.MonkeyPatch.context() as monkeypatch,
        ):
            async with running_stack(folder, nats.url, database_url, monkeypatch) as running:
                await start_run(running.config, PAIRS, SEED)
                await wait_until_idle(running.config, timeout=180, stack=running.stack)
                config = running.config
        lowest = await rows(
            database_url,
            "SELECT scenario_id FROM disagreement WHERE model_set = 'all' "
            "ORDER BY disagreement, scenario_id LIMIT 1",
        )
        probe = str(lowest[0]["scenario_id"])
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO models (model_key, family) VALUES (:m, 'probe')"),
                    {"m": PROBE_MODEL},
                )
                await conn.execute(
                    text(
                        "INSERT INTO responses (response_id, scenario_id, model_key, text, "
                        "thinking, params, llm_call_hash) "
                        "VALUES ('probe-answer', :s, :m, :t, :t, '{}', 'probe')"
                    ),
                    {"s": probe, "m": PROBE_MODEL, "t": PROBE_TEXT},
                )
        finally:
            await engine.dispose()
        yield Study(database_url, config, probe)
    finally:
        await drop_database(infra.database_url, name)


class _Report(HTMLParser):
    """Sections of the report page: their text, plots (JSON) and table rows; and every
    attribute that could load something from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict[str, Any]] = []
        self.external: list[str] = []
        self.scripts_with_src = 0
        self._in_plot = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value.startswith(("http:", "https:", "//")) and not value.startswith(
                DEFAULT_EXPLORER_URL
            ):
                self.external.append(value)
        if tag == "script" and "src" in a:
            self.scripts_with_src += 1
        if tag == "section":
            self.sections.append(
                {
                    "id": a.get("id"),
                    "class": a.get("class") or "",
                    "text": "",
                    "plots": [],
                    "rows": 0,
                }
            )
        if tag == "script" and "data-plot" in a:
            self._in_plot = True
            self.sections[-1]["plots"].append("")
        if tag == "tr" and self.sections:
            self.sections[-1]["rows"] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_plot = False

    def handle_data(self, data: str) -> None:
        if self._in_plot:
            self.sections[-1]["plots"][-1] += data
        elif self.sections:
            self.sections[-1]["text"] += data


def _values(trace: dict[str, Any]) -> list[Any]:
    found = []
    for key in ("y", "z"):
        value = trace.get(key)
        if isinstance(value, dict):  # plotly's typed-array encoding
            found.append(value)
        elif value:
            cells = value if key == "y" else list(chain.from_iterable(value))
            found += [v for v in cells if v is not None]
    return found


async def test_the_report_is_one_offline_file_with_every_figure(
    study: Study, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    page = await write_report(study.config, out, config_name="demo-config.yaml")
    html = out.read_text(encoding="utf-8")
    parsed = _Report()
    parsed.feed(html)

    # offline: nothing is loaded from elsewhere, and plotly.js is inlined exactly once
    assert parsed.external == []
    assert parsed.scripts_with_src == 0
    assert html.count("plotly.js v") == 1

    assert [s["id"] for s in parsed.sections] == [f.key for f in page.figures]
    for section in parsed.sections:
        # every figure is titled and says its n, the config and the data's date
        assert "n = " in section["text"] and "demo-config.yaml" in section["text"], section["id"]
        assert "data as of 20" in section["text"] and "How to read it:" in section["text"]
        if "no-data" in section["class"]:
            assert section["plots"] == [] and "No data:" in section["text"], section["id"]
            continue
        assert section["plots"] or section["rows"] > 1, section["id"]
        for plot in section["plots"]:
            spec = json.loads(plot)
            assert spec["data"], section["id"]
            assert all(_values(trace) for trace in spec["data"]), section["id"]
    plots = [json.loads(p) for s in parsed.sections for p in s["plots"]]
    assert len(plots) >= 7
    # no value categories were mapped in this run: Figures 10 and 11 say so instead of plotting
    assert {s["id"] for s in parsed.sections if "no-data" in s["class"]} == {
        "figure10",
        "figure11",
    }

    # the histogram's bars add up to the `disagreement` table's scenarios per set
    histogram = json.loads(next(s for s in parsed.sections if s["id"] == "d-histogram")["plots"][0])
    summary = await build_report(study.config, "disagreement")
    assert {t["name"]: sum(t["y"]) for t in histogram["data"]} == {
        r["model_set"]: r["scenarios"] for r in summary
    }
    # the highest-D list links each scenario into the explorer
    top = await rows(
        study.database_url,
        "SELECT scenario_id FROM disagreement WHERE model_set = 'all' "
        "ORDER BY disagreement DESC, scenario_id DESC LIMIT 20",
    )
    for r in top:
        assert f"{DEFAULT_EXPLORER_URL}/scenario/{r['scenario_id']}?model_set=all" in html


async def test_the_list_filters_and_pages_match_the_facts(study: Study) -> None:
    answers = await rows(
        study.database_url,
        "SELECT d.scenario_id, d.disagreement, d.high, s.generator, s.query, p.value1, "
        "p.value2 FROM disagreement d JOIN scenarios s USING (scenario_id) "
        "JOIN value_pairs p USING (pair_id) WHERE d.model_set = 'all'",
    )
    topics = await rows(study.database_url, "SELECT * FROM topic_labels")
    refusals = await rows(study.database_url, "SELECT scenario_id, refusal_type FROM refusal_types")
    flagged = await rows(
        study.database_url,
        "SELECT scenario_id FROM scenario_compliance WHERE majority_flagged > 0",
    )
    ordered = sorted(answers, key=lambda r: (r["disagreement"], r["scenario_id"]), reverse=True)
    some = ordered[len(ordered) // 2]
    topic = next(t for t in TOPIC_COLUMNS if any(row[TOPIC_COLUMNS[t]] for row in topics))
    kind = str(refusals[0]["refusal_type"])
    expected = {
        ScenarioFilter("all"): ordered,
        ScenarioFilter("all", level="high"): [r for r in ordered if r["high"]],
        ScenarioFilter("all", d_min=1.0, d_max=1.6): [
            r for r in ordered if 1.0 <= r["disagreement"] <= 1.6
        ],
        ScenarioFilter("all", value=str(some["value2"])): [
            r for r in ordered if some["value2"] in (r["value1"], r["value2"])
        ],
        ScenarioFilter("all", generator="writer-b"): [
            r for r in ordered if r["generator"] == "writer-b"
        ],
        ScenarioFilter("all", topic=topic): [
            r
            for r in ordered
            if any(t["scenario_id"] == r["scenario_id"] and t[TOPIC_COLUMNS[topic]] for t in topics)
        ],
        ScenarioFilter("all", refusal_type=kind): [
            r
            for r in ordered
            if any(
                x["scenario_id"] == r["scenario_id"] and x["refusal_type"] == kind for x in refusals
            )
        ],
        ScenarioFilter("all", verdicts="some-majority"): [
            r for r in ordered if r["scenario_id"] in {f["scenario_id"] for f in flagged}
        ],
        ScenarioFilter("all", search=str(some["value1"]).upper()): [
            r for r in ordered if str(some["value1"]).lower() in str(r["query"]).lower()
        ],
    }
    engine = create_engine(study.database_url, pool_size=1, server_settings=READ_ONLY_SETTINGS)
    try:
        for f, want in expected.items():
            assert want, f"the run should give {f} something to find"
            seen: list[str] = []
            cursor = None
            while True:  # pages of 4, following the keyset cursor
                page = await list_scenarios(engine, f, cursor=cursor, limit=4)
                seen += [r["scenario_id"] for r in page.rows]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == [r["scenario_id"] for r in want], f
        ascending = await list_scenarios(engine, ScenarioFilter("all", order="asc"), limit=200)
        assert [r["scenario_id"] for r in ascending.rows] == [r["scenario_id"] for r in ordered][
            ::-1
        ]
        # the explorer's sessions cannot write, whatever role they connect as
        with pytest.raises(DBAPIError, match="read-only"):
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM verdicts"))
    finally:
        await engine.dispose()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
async def test_the_explorer_in_chromium(
    study: Study, tmp_path_factory: pytest.TempPathFactory
) -> None:
    shots = tmp_path_factory.mktemp("explorer-screenshots")
    high = await rows(
        study.database_url,
        "SELECT scenario_id FROM disagreement WHERE model_set = 'all' AND high "
        "ORDER BY disagreement DESC, scenario_id DESC",
    )
    judges = study.config.roles.judges
    with (
        explorer(DEMO_CONFIG, study.database_url, shots / "serve.log") as url,
    ):
        async with httpx.AsyncClient(base_url=url) as client:
            reply = await client.get("/api/scenarios", params={"level": "high", "limit": 200})
        api = reply.json()
        assert [r["scenario_id"] for r in api["scenarios"]] == [r["scenario_id"] for r in high]
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            await page.goto(url + "/")
            await page.select_option("select[name=level]", "high")
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url("**level=high**")
            links = page.locator("a.scenario-link")
            assert await links.count() == len(high)
            badges = await page.locator("table.scenarios td .badge").all_inner_texts()
            assert all(float(b) >= study.config.disagreement.threshold for b in badges)
            await page.screenshot(path=shots / "list.png")

            await links.first.click()
            await page.wait_for_url(f"**/scenario/{high[0]['scenario_id']}**")
            cards = page.locator(".answer")
            assert await cards.count() == 6
            for i in range(6):
                card = cards.nth(i)
                model = await card.get_attribute("data-model")
                verdicts = await card.locator(".verdict .badge").all_inner_texts()
                if model and model.startswith("aurora"):
                    # the spec governs the aurora family: each judge ruled on each answer
                    decisions = [
                        v for v in verdicts if v in ("compliant", "non-compliant", "ambiguous")
                    ]
                    assert len(decisions) == len(judges), model
                else:
                    assert "no verdicts" in await card.inner_text(), model
            assert await page.locator(".variant").count() == 3
            assert await page.locator("ol.spectrum li").count() == 14
            await page.screenshot(path=shots / "scenario.png", full_page=True)

            model = await cards.first.get_attribute("data-model")
            await cards.first.locator("h3 a").click()
            await page.wait_for_url(f"**/model/{model}")
            assert await page.locator("h1").inner_text() == model
            assert await page.locator("tr.me").count() > 0

            await page.click("header a[href='/report']")
            await page.wait_for_url("**/report")
            await page.wait_for_selector("div.plot.js-plotly-plot")
            drawn = await page.locator("div.plot.js-plotly-plot").count()
            assert drawn == await page.locator("div.plot").count() >= 7

            # stored markup is shown as text and never runs
            await page.goto(f"{url}/scenario/{study.probe_scenario}")
            probe = page.locator(f".answer[data-model='{PROBE_MODEL}']")
            assert PROBE_TEXT in await probe.locator(".answer-text").inner_text()
            await probe.locator("details.thinking summary").click()
            assert PROBE_TEXT in await probe.locator("details.thinking .text").inner_text()
            assert await probe.locator("b.injected, img, script").count() == 0
            assert await page.evaluate("typeof window.__pwned") == "undefined"
            await page.screenshot(path=shots / "probe.png", full_page=True)
            assert errors == []
    print(f"explorer screenshots: {shots}")


def test_report_commands_answer_and_refuse_bad_input(
    study: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", study.database_url)
    runner = CliRunner()
    # every table is still `specstress report TABLE`
    table = runner.invoke(
        app, ["report", "disagreement", "-c", str(DEMO_CONFIG), "--format", "csv"]
    )
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0] == "selection,model_set,scenarios,high_disagreement,mean_d"
    out = tmp_path / "nested" / "report.html"
    bad = runner.invoke(
        app, ["report", "html", "--out", str(out), "-c", str(DEMO_CONFIG), "--model-set", "nope"]
    )
    assert bad.exit_code == 2
    assert "no model set 'nope'" in bad.output
    assert not out.parent.exists()
    good = runner.invoke(app, ["report", "html", "--out", str(out), "-c", str(DEMO_CONFIG)])
    assert good.exit_code == 0, good.output
    assert "figures with data" in good.output and out.stat().st_size > 1_000_000
    assert list(out.parent.iterdir()) == [out]
    # the explorer says what it cannot read instead of serving empty pages
    monkeypatch.setenv("DATABASE_URL", study.database_url.rsplit("/", 1)[0] + "/no_such_db")
    refused = runner.invoke(app, ["serve", "-c", str(DEMO_CONFIG), "--port", "1"])
    assert refused.exit_code == 2
    assert "cannot read scenarios from" in refused.output


async def test_the_dashboards_role_can_read_every_page(study: Study) -> None:
    """With authentication on, the explorer connects as the SELECT-only dashboards role."""
    owner = create_engine(study.database_url, pool_size=1)
    try:
        await apply_access(owner, {c: "explorer-test" for c in COMPONENTS})
    finally:
        await owner.dispose()
    url = make_url(study.database_url).set(username=role_name(DASHBOARDS), password="explorer-test")
    engine = create_engine(
        url.render_as_string(hide_password=False), pool_size=1, server_settings=READ_ONLY_SETTINGS
    )
    try:
        page = await list_scenarios(engine, ScenarioFilter("all", level="high"))
        assert page.rows
        detail = await scenario_detail(engine, page.rows[0]["scenario_id"])
        assert detail is not None and len(detail["answers"]) == 6
        profile = await model_profile(engine, "aurora-cautious", "*")
        assert profile is not None and profile["compliance"]
        report = await collect(engine, study.config, config_name="demo", filters=Filters())
        assert report.with_data >= 7
    finally:
        await engine.dispose()
