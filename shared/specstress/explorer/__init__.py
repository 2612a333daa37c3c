"""The read-only web explorer (`specstress serve`): scenarios, answers, verdicts and models.

Its reads live in `specstress.analysis.scenarios`, which the HTML report shares."""

from specstress.explorer.app import PAGE_POLICY, create_app

__all__ = ["PAGE_POLICY", "create_app"]
