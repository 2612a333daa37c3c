"""The report as one self-contained HTML file: every figure of `specstress report`, plotted."""

from specstress.report.figures import Figure, TableData
from specstress.report.html import (
    DEFAULT_EXPLORER_URL,
    ReportPage,
    collect,
    render_html,
    write_report,
)

__all__ = [
    "DEFAULT_EXPLORER_URL",
    "Figure",
    "ReportPage",
    "TableData",
    "collect",
    "render_html",
    "write_report",
]
