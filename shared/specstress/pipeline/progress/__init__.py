"""How far a run has come: the completeness model, dead letters with reasons, and replay."""

from specstress.pipeline.progress.completeness import (
    STAGES,
    Completeness,
    PendingUnit,
    StageProgress,
    completeness,
    pending_units,
)
from specstress.pipeline.progress.dead_letters import (
    DeadLetter,
    Replayed,
    list_dead_letters,
    replay,
)

__all__ = [
    "STAGES",
    "Completeness",
    "DeadLetter",
    "PendingUnit",
    "Replayed",
    "StageProgress",
    "completeness",
    "list_dead_letters",
    "pending_units",
    "replay",
]
