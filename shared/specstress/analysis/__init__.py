"""Analysis over the stored facts: the paper's tables and figures as reports (`reports`) and the
queries behind them (`queries`), the scenario reads the explorer and the report share
(`scenarios`), run summaries, diversity selections and the mapping of values to taxonomy
categories.
"""

from specstress.analysis.diversity import run_selection
from specstress.analysis.queries import ALL_SCENARIOS, Filters
from specstress.analysis.reports import REPORTS, OutputFormat, Report, build_report, render
from specstress.analysis.scenarios import (
    ScenarioFilter,
    list_scenarios,
    model_profile,
    scenario_detail,
)
from specstress.analysis.selections import list_selections
from specstress.analysis.value_mapping import run_value_mapping

__all__ = [
    "ALL_SCENARIOS",
    "REPORTS",
    "Filters",
    "OutputFormat",
    "Report",
    "ScenarioFilter",
    "build_report",
    "list_scenarios",
    "list_selections",
    "model_profile",
    "render",
    "run_selection",
    "run_value_mapping",
    "scenario_detail",
]
