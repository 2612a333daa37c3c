"""The README's pictures of the explorer and the report, taken from the demo's data.

After `make demo`: `.venv/bin/python -m tests.screenshots` (see --help). It starts the demo's
private servers again (as `make view` does), serves the explorer and writes the report, then
photographs them in Debian's Chromium into docs/img/. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from specstress.config import load_config
from specstress.local.servers import ensure_database, resolve_infra
from specstress.report.html import write_report
from tests.paths import DEMO_CONFIG, REPO
from tests.support.browser import chromium, explorer

WIDTH = 1400


async def photograph(state_dir: Path, out: Path) -> list[Path]:
    written: list[Path] = []
    with resolve_infra(state_dir) as infra, tempfile.TemporaryDirectory() as scratch:
        database_url = await ensure_database(infra.database_url, "specstress")
        os.environ["DATABASE_URL"] = database_url
        config = load_config(DEMO_CONFIG)
        report = Path(scratch) / "report.html"
        await write_report(config, report, config_name=DEMO_CONFIG.name)
        with explorer(DEMO_CONFIG, database_url, Path(scratch) / "serve.log") as url:
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": WIDTH, "height": 900})
                await page.goto(f"{url}/?level=high")
                written.append(out / "explorer-list.png")
                await page.screenshot(path=written[-1])

                await page.locator("a.scenario-link").first.click()
                await page.wait_for_url("**/scenario/**")
                await page.set_viewport_size({"width": WIDTH, "height": 1300})
                # the answers side by side, with the scores above them
                await page.locator("h2", has_text="Answers").evaluate("e => e.scrollIntoView()")
                written.append(out / "explorer-scenario.png")
                await page.screenshot(path=written[-1])

                await page.set_viewport_size({"width": 1200, "height": 900})
                await page.goto(report.as_uri())
                await page.wait_for_selector("div.plot.js-plotly-plot")
                for key in ("d-histogram", "figure4-all"):
                    written.append(out / f"report-{key}.png")
                    await page.locator(f"section#{key}").screenshot(path=written[-1])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".specstress")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    if not (args.state_dir / "postgres").is_dir():
        parser.error(f"{args.state_dir}: no demo data here (run `make demo` first)")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(photograph(args.state_dir, args.out)):
        print(path)


if __name__ == "__main__":
    main()
