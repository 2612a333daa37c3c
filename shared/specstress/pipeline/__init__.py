"""The event-driven pipeline: the stage table (`stages`), the runtime every stage runs (`stage`:
what a handler sees; `delivery`: how each message is pulled and settled; `service`: the app),
the bus topology (`bus`), prompt templates and their markers, reconciliation, and the NATS users
and Postgres grants derived from the stage table; `progress` says how far a run has come.
"""

from specstress.pipeline.bus import connect, ensure_topology, publish
from specstress.pipeline.prompts import PROMPT_MARKERS, Prompt, PromptLibrary
from specstress.pipeline.reconcile import reconcile
from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage, Unprocessable
from specstress.pipeline.stages import STAGE_NAMES, STAGES, StageManifest, manifest

__all__ = [
    "PROMPT_MARKERS",
    "STAGES",
    "STAGE_NAMES",
    "Prompt",
    "PromptLibrary",
    "Service",
    "Stage",
    "StageManifest",
    "Unprocessable",
    "connect",
    "ensure_topology",
    "manifest",
    "publish",
    "reconcile",
]
