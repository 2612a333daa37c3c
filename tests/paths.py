"""Where the tests find the checkout's files, and the data folder that sits beside it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "specstress.demo.yaml"
PAPER_CONFIG = REPO / "specstress.paper.yaml"
SERVICES = REPO / "services"
# ../shared/data beside the checkout holds the real datasets; the tests that read them skip
# when it is absent (a fresh clone on its own).
SHARED_DATA = REPO.parent / "shared" / "data"
