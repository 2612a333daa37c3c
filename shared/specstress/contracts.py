"""Event contracts: the one definition of every message on the bus, used by both ends.

Events are thin: they carry ids and the few fields a consumer needs to route work; the facts
live in Postgres. Each event has a `schema_version`; a consumer rejects versions it does not
know rather than misreading them. Each event class names its subject and its message id, which
is deterministic so JetStream drops republished duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from specstress.config import Key
from specstress.ids import stable_id

__all__ = [
    "ALL_EVENTS",
    "SUBJECT_PREFIX",
    "VARIANTS",
    "ClassificationsCreated",
    "DisagreementFlagged",
    "Event",
    "ModelRegistered",
    "PairSampled",
    "ResponseCreated",
    "ResponseRequested",
    "ScenarioCreated",
    "SpectraCreated",
    "Variant",
    "VerdictCreated",
    "VerdictRequested",
]

SUBJECT_PREFIX = "specstress"
Variant = Literal["neutral", "value1", "value2"]
VARIANTS: tuple[Variant, ...] = ("neutral", "value1", "value2")


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: ClassVar[str]
    schema_version: Literal[1] = 1

    def message_id(self) -> str:
        """Nats-Msg-Id: same event content -> same id -> deduplicated by the stream."""
        return stable_id(self.subject, self.model_dump(mode="json"))


class PairSampled(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.pairs.sampled"
    pair_id: str
    value1: str
    value2: str
    taxonomy_version: str
    # position of the pair in its run; picks the generator by weighted round-robin
    index: int = Field(ge=0)

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> PairSampled:
        """The event of a stored `value_pairs` row (its `run_index` is the event's index)."""
        return cls(
            pair_id=row["pair_id"],
            value1=row["value1"],
            value2=row["value2"],
            taxonomy_version=row["taxonomy_version"],
            index=row["run_index"],
        )


class ScenarioCreated(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.scenarios.created"
    scenario_id: str
    pair_id: str
    variant: Variant


class ResponseRequested(Event):
    """One scenario for one target model: the responder's unit of work (fan-out and backfill)."""

    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.responses.requested"
    scenario_id: str
    model_key: Key


class ResponseCreated(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.responses.created"
    response_id: str
    scenario_id: str
    pair_id: str
    model_key: Key


class ResponseAbandoned(Event):
    """A target model's answer to a scenario was dead-lettered: the stages that wait for every
    answer go on without it (it counts as missing) instead of waiting for a sweep. A replay or
    a healed provider may still bring the answer later, as a ResponseCreated."""

    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.responses.abandoned"
    scenario_id: str
    model_key: Key
    # the dead letter's reason code (specstress.db.schema.REASON_CODES)
    reason_code: str
    # the dead letter's id: a later dead letter of the same answer is a new event
    dead_letter_id: int = Field(ge=1)


class SpectraCreated(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.spectra.created"
    spectrum_id: str
    pair_id: str


class ClassificationsCreated(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.classifications.created"
    scenario_id: str
    response_ids: list[str] = Field(min_length=1)


class DisagreementFlagged(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.disagreement.flagged"
    scenario_id: str
    model_set: Key
    disagreement: float
    # the classified responses the flag was computed over; a new model re-flags
    members: int = Field(ge=2)
    # every classified answer on the scenario when it was flagged: a late answer of a model
    # outside this set re-flags too (otherwise the event repeats word for word, the bus drops
    # it as a duplicate, and the late answer is never judged)
    answers: int = Field(0, ge=0)


class VerdictRequested(Event):
    """One (response, judge) under one spec: the compliance judge's unit of work."""

    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.verdicts.requested"
    response_id: str
    judge: Key
    spec_id: Key


class VerdictCreated(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.verdicts.created"
    verdict_id: str
    response_id: str
    scenario_id: str
    judge: Key


class ModelRegistered(Event):
    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.models.registered"
    model_key: Key
    # registrations of the same key at different times are different events
    registered_at: str


class ModelsCompared(Event):
    """A new model's backfill is complete and its release report is stored
    (`model_comparisons`: the model against `against`, empty when it has no predecessor)."""

    subject: ClassVar[str] = f"{SUBJECT_PREFIX}.models.compared"
    model_key: Key
    against: str
    family: Key
    computed_at: str


ALL_EVENTS: tuple[type[Event], ...] = (
    PairSampled,
    ScenarioCreated,
    ResponseRequested,
    ResponseCreated,
    ResponseAbandoned,
    SpectraCreated,
    ClassificationsCreated,
    DisagreementFlagged,
    VerdictRequested,
    VerdictCreated,
    ModelRegistered,
    ModelsCompared,
)
