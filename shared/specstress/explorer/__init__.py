"""The read-only web explorer (`specstress serve`): scenarios, answers, verdicts and models."""

from specstress.explorer.app import PAGE_POLICY, create_app
from specstress.explorer.queries import (
    VERDICT_PATTERNS,
    Page,
    ScenarioFilter,
    list_scenarios,
    model_profile,
    scenario_detail,
)

__all__ = [
    "PAGE_POLICY",
    "VERDICT_PATTERNS",
    "Page",
    "ScenarioFilter",
    "create_app",
    "list_scenarios",
    "model_profile",
    "scenario_detail",
]
