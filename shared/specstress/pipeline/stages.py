"""The stage table: every stage of the pipeline, in one place.

A row says what the stage consumes and publishes, which tables it may touch, where it serves its
metrics, whether it has a batch mode and whether it calls LLMs. Everything else that lists the
stages is derived from `STAGES`: the bus's consumers and subjects (`bus`), the NATS users and
their allow-lists (`nats_auth`, rendered into `deploy/nats/nats.conf`), the Postgres roles and
grants (`access`), the demo's processes (`local.stack`); tests check that the compose file and
Prometheus's scrape jobs list the same stages. Adding a stage means its folder under
`services/` and one row here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from specstress.contracts import (
    ClassificationsCreated,
    DisagreementFlagged,
    Event,
    ModelRegistered,
    ModelsCompared,
    PairSampled,
    ResponseAbandoned,
    ResponseCreated,
    ResponseRequested,
    ScenarioCreated,
    SpectraCreated,
    VerdictCreated,
    VerdictRequested,
)

__all__ = [
    "APPEND",
    "CLI_PUBLISHES",
    "READ",
    "REPLACE",
    "STAGES",
    "STAGE_NAMES",
    "UPSERT",
    "Privilege",
    "StageManifest",
    "manifest",
]

Privilege = Literal["SELECT", "INSERT", "UPDATE", "DELETE"]
READ: frozenset[Privilege] = frozenset({"SELECT"})
APPEND: frozenset[Privilege] = READ | {"INSERT"}
UPSERT: frozenset[Privilege] = APPEND | {"UPDATE"}
REPLACE: frozenset[Privilege] = UPSERT | {"DELETE"}

# What calling LLMs through the gateway takes: the ledger (also the answer cache), the shared
# rate limits, provider pauses and the spend counted against the budget.
GATEWAY_TABLES: Mapping[str, frozenset[Privilege]] = {
    "llm_calls": APPEND,
    "llm_rate_limits": UPSERT,
    "llm_provider_pauses": UPSERT,
    "llm_spend": UPSERT,
}
# Every stage runs the shared consumer runtime (deferred messages, dead letters) and the gateway.
RUNTIME_TABLES: Mapping[str, frozenset[Privilege]] = {
    **GATEWAY_TABLES,
    "message_deferrals": REPLACE,
    "dead_letters": APPEND,
}
# A stage with a batch mode queues requests, sends and polls batch jobs (llm.batches).
BATCH_TABLES: Mapping[str, frozenset[Privilege]] = {
    "llm_batch_jobs": UPSERT,
    "llm_batch_requests": UPSERT,
}


@dataclass(frozen=True)
class StageManifest:
    """One stage: its events, its tables and how it is run."""

    name: str
    consumes: tuple[type[Event], ...]
    publishes: tuple[type[Event], ...]
    # the stage's own tables; the runtime's and, with a batch mode, the batch queue's are added
    own_tables: Mapping[str, frozenset[Privilege]]
    metrics_port: int
    batch_mode: bool = False
    calls_llm: bool = True
    note: str = field(default="", compare=False)

    @property
    def tables(self) -> dict[str, frozenset[Privilege]]:
        """Every table the stage's Postgres role may touch, with its rights."""
        return {
            **RUNTIME_TABLES,
            **(BATCH_TABLES if self.batch_mode else {}),
            **self.own_tables,
        }

    @property
    def host_name(self) -> str:
        """The stage's name where underscores are not allowed (compose services, DNS)."""
        return self.name.replace("_", "-")

    @property
    def module(self) -> str:
        """What `python -m` runs: the stage's package under `services/`."""
        return f"services.{self.name}"


STAGES: tuple[StageManifest, ...] = (
    StageManifest(
        name="scenario_generator",
        consumes=(PairSampled,),
        publishes=(ScenarioCreated,),
        own_tables={"value_pairs": READ, "scenarios": APPEND, "scenario_drops": APPEND},
        metrics_port=9101,
    ),
    StageManifest(
        name="responder",
        consumes=(ScenarioCreated, ModelRegistered, ResponseRequested),
        # responses.abandoned: the runtime's word that an answer was dead-lettered
        publishes=(ResponseRequested, ResponseCreated, ResponseAbandoned),
        own_tables={"models": READ, "scenarios": READ, "responses": APPEND},
        metrics_port=9102,
        batch_mode=True,
    ),
    StageManifest(
        name="spectrum_builder",
        consumes=(ScenarioCreated,),
        publishes=(SpectraCreated,),
        own_tables={
            "value_pairs": READ,
            "scenarios": READ,
            "scenario_drops": READ,
            "spectra": APPEND,
        },
        metrics_port=9103,
    ),
    StageManifest(
        name="classifier",
        # plus topics and distinctive values of flagged scenarios, refusal types of answers;
        # responses.abandoned completes the join without a dead-lettered answer
        consumes=(
            ResponseCreated,
            SpectraCreated,
            ClassificationsCreated,
            DisagreementFlagged,
            ResponseAbandoned,
        ),
        publishes=(ClassificationsCreated,),
        own_tables={
            "value_pairs": READ,
            "scenarios": READ,
            "models": READ,
            "responses": READ,
            "spectra": READ,
            "disagreement": READ,
            "classifications": APPEND,
            "topic_labels": APPEND,
            "refusal_types": APPEND,
            "distinctive_values": APPEND,
        },
        metrics_port=9104,
        batch_mode=True,
    ),
    StageManifest(
        name="aggregator",
        consumes=(ClassificationsCreated,),
        publishes=(DisagreementFlagged,),
        own_tables={
            "models": READ,
            "responses": READ,
            "classifications": READ,
            "disagreement": UPSERT,
        },
        metrics_port=9105,
        calls_llm=False,
    ),
    StageManifest(
        name="compliance_judge",
        consumes=(DisagreementFlagged, VerdictRequested),
        publishes=(VerdictRequested, VerdictCreated),
        own_tables={
            "models": READ,
            "scenarios": READ,
            "responses": READ,
            "classifications": READ,
            "spec_sections": READ,
            "verdicts": APPEND,
            "verdict_citations": APPEND,
        },
        metrics_port=9106,
        batch_mode=True,
    ),
    StageManifest(
        name="watcher",
        # lists the providers' models on its own schedule and reads the facts; consumes nothing
        consumes=(),
        publishes=(ModelRegistered, ModelsCompared),
        own_tables={
            "scenarios": READ,
            "models": UPSERT,
            "responses": READ,
            "classifications": READ,
            "disagreement": READ,
            "refusal_types": READ,
            "verdicts": READ,
            "discovered_models": UPSERT,
            "model_comparisons": UPSERT,
        },
        metrics_port=9107,
        note="finds new models at the providers, registers them by rule, reports releases",
    ),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)

# The `specstress` command line publishes too: `run` samples pairs, `models add` registers a model,
# `reconcile` and `dead-letters replay` re-emit the events that start the stages.
CLI_PUBLISHES: tuple[type[Event], ...] = (
    PairSampled,
    ModelRegistered,
    ScenarioCreated,
    ResponseRequested,
    ResponseCreated,
    SpectraCreated,
    ClassificationsCreated,
    DisagreementFlagged,
    VerdictRequested,
)

_BY_NAME = {stage.name: stage for stage in STAGES}


def manifest(name: str) -> StageManifest:
    """The row of a stage by name; KeyError names the stages there are."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; the stages are {', '.join(STAGE_NAMES)}") from None
