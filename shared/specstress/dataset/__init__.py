"""Export and import of a study: the paper's released schema and our own lossless dump."""

from specstress.dataset.export import ExportFormat, export_dataset, scenario_schema
from specstress.dataset.load import ImportSummary, import_dataset
from specstress.dataset.release import RELEASE
from specstress.dataset.tables import FORMAT_NAME, FORMAT_VERSION, TABLES, DatasetError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RELEASE",
    "TABLES",
    "DatasetError",
    "ExportFormat",
    "ImportSummary",
    "export_dataset",
    "import_dataset",
    "scenario_schema",
]
