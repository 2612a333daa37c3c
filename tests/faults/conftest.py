"""The fault suite: the cases marked `full_faults` run only under `make test-faults`
(SPECSTRESS_FAULTS=full); the rest are the reduced set of the default run. Every case's
figures are printed as one table at the end of the session."""

from __future__ import annotations

import os

import pytest

from tests.faults.harness import HEADER, RECORDED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SPECSTRESS_FAULTS") == "full":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if item.get_closest_marker("full_faults") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RECORDED:
        return
    terminalreporter.section("fault suite figures")
    terminalreporter.write_line(HEADER)
    for figures in RECORDED:
        terminalreporter.write_line(figures.row())
