"""The paper's method as plain logic, with no database or bus: the taxonomy and value-pair
sampling, model specs and their sections, label vocabularies, answer parsing, disagreement D,
judge-agreement statistics and diversity selection (k-center).
"""

from specstress.method.agreement import EnsembleStatistics, ensemble_statistics
from specstress.method.disagreement import Position, disagreement, disagreement_rows
from specstress.method.labels import REFUSAL_TYPES, REFUSALS, TOPIC_COLUMNS, TOPICS, is_refusal
from specstress.method.parsing import canonical_field, json_object, text_after_tag
from specstress.method.selection import Selection, select_kcenter
from specstress.method.spec import Spec, SpecSection, load_spec
from specstress.method.taxonomy import Taxonomy, Value, load_taxonomy, sample_pairs

__all__ = [
    "REFUSALS",
    "REFUSAL_TYPES",
    "TOPICS",
    "TOPIC_COLUMNS",
    "EnsembleStatistics",
    "Position",
    "Selection",
    "Spec",
    "SpecSection",
    "Taxonomy",
    "Value",
    "canonical_field",
    "disagreement",
    "disagreement_rows",
    "ensemble_statistics",
    "is_refusal",
    "json_object",
    "load_spec",
    "load_taxonomy",
    "sample_pairs",
    "select_kcenter",
    "text_after_tag",
]
