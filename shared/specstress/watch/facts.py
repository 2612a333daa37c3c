"""The stored facts a release report and the backfill check read, loaded once per check."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from math import ceil
from statistics import pstdev

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config
from specstress.contracts import (
    ClassificationsCreated,
    ResponseCreated,
    ResponseRequested,
    VerdictRequested,
)
from specstress.db import reading

__all__ = [
    "Facts",
    "GaveUp",
    "Position",
    "disagreement",
    "expected_verdicts",
    "flagged_models",
    "is_outlier",
    "load_facts",
    "set_members",
]

Position = tuple[int, int]


@dataclass
class GaveUp:
    # (scenario id, model key) of answers
    answers: set[tuple[str, str]] = field(default_factory=set)
    # response ids whose classification, or refusal type, was given up
    classifications: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    # (response id, judge, spec id) of verdicts
    verdicts: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass
class Facts:
    """Classified answers (positions), refusal labels and verdicts of every model."""

    scenarios: list[str]
    # scenario -> model key -> (value-1 position, value-2 position)
    positions: dict[str, dict[str, Position]]
    # scenario -> model key -> response id, for every stored answer (classified or not)
    answers: dict[str, dict[str, str]]
    families: dict[str, str]
    registered_at: dict[str, float]
    # response id -> (refusal type, is a refusal)
    refusals: dict[str, tuple[str, bool]]
    # response id -> {(judge, spec id, spec version): decision}
    verdicts: dict[str, dict[tuple[str, str, str], str]] = field(default_factory=dict)
    # work the pipeline gave up on (dead letters): it will not come, so nothing waits for it
    gave_up: GaveUp = field(default_factory=GaveUp)


def _gave_up(rows: Iterable[tuple[str, str, str]]) -> GaveUp:
    """Dead letters, read by the event each one carries."""
    gave_up = GaveUp()
    for consumer, subject, payload in rows:
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        try:
            if subject == ResponseRequested.subject:
                gave_up.answers.add((str(body["scenario_id"]), str(body["model_key"])))
            elif subject == ResponseCreated.subject and consumer.startswith("classifier__"):
                gave_up.classifications.add(str(body["response_id"]))
            elif subject == ClassificationsCreated.subject and consumer.startswith("classifier__"):
                gave_up.labels.update(str(r) for r in body["response_ids"])
            elif subject == VerdictRequested.subject:
                gave_up.verdicts.add(
                    (str(body["response_id"]), str(body["judge"]), str(body["spec_id"]))
                )
        except (KeyError, TypeError):
            continue
    return gave_up


async def load_facts(engine: AsyncEngine) -> Facts:
    async with reading(engine) as conn:
        scenarios = list(
            (await conn.execute(text("SELECT scenario_id FROM scenarios ORDER BY 1"))).scalars()
        )
        model_rows = await conn.execute(
            text("SELECT model_key, family, extract(epoch FROM registered_at) AS at FROM models")
        )
        families: dict[str, str] = {}
        registered_at: dict[str, float] = {}
        for row in model_rows:
            families[row.model_key] = row.family
            registered_at[row.model_key] = float(row.at)
        answers: dict[str, dict[str, str]] = defaultdict(dict)
        positions: dict[str, dict[str, Position]] = defaultdict(dict)
        rows = await conn.execute(
            text(
                "SELECT r.scenario_id, r.model_key, r.response_id, c.value1_position, "
                "c.value2_position FROM responses r "
                "LEFT JOIN classifications c USING (response_id)"
            )
        )
        for row in rows:
            answers[row.scenario_id][row.model_key] = row.response_id
            if row.value1_position is not None:
                positions[row.scenario_id][row.model_key] = (
                    int(row.value1_position),
                    int(row.value2_position),
                )
        refusals = {
            row.response_id: (row.refusal_type, bool(row.refusal))
            for row in await conn.execute(
                text("SELECT response_id, refusal_type, refusal FROM refusal_types")
            )
        }
        gave_up = _gave_up(
            (row.consumer, row.subject, row.payload)
            for row in await conn.execute(
                text("SELECT consumer, subject, payload FROM dead_letters")
            )
        )
        verdicts: dict[str, dict[tuple[str, str, str], str]] = defaultdict(dict)
        for row in await conn.execute(
            text("SELECT response_id, judge, spec_id, spec_version, decision FROM verdicts")
        ):
            verdicts[row.response_id][(row.judge, row.spec_id, row.spec_version)] = row.decision
    return Facts(
        scenarios=scenarios,
        positions=dict(positions),
        answers=dict(answers),
        families=families,
        registered_at=registered_at,
        refusals=refusals,
        verdicts=dict(verdicts),
        gave_up=gave_up,
    )


def disagreement(positions: list[Position]) -> float:
    """D: the larger population standard deviation of the two values' positions."""
    return max(pstdev(p[0] for p in positions), pstdev(p[1] for p in positions))


def set_members(
    config: Config, model_set: str, by_model: dict[str, Position], facts: Facts
) -> list[str]:
    available = [(key, facts.families.get(key, "")) for key in sorted(by_model)]
    return config.model_set_members(model_set, available)


def flagged_models(config: Config, facts: Facts, scenario_id: str) -> set[str]:
    """The models whose answers a high disagreement on the scenario puts before the judges:
    the members of every model set that disagrees highly there, as the aggregator computes it
    from the stored classifications. (A set that leaves a model out flags the scenario with the
    same event as before that model answered, so its flag brings that answer no verdicts.)"""
    by_model = facts.positions.get(scenario_id, {})
    found: set[str] = set()
    for name in config.model_sets:
        members = set_members(config, name, by_model, facts)
        if len(members) >= 2 and (
            disagreement([by_model[k] for k in members]) >= config.disagreement.threshold
        ):
            found.update(members)
    return found


def is_outlier(config: Config, own: Position, others: list[Position]) -> bool:
    """An answer is an outlier when, on either value, it sits at least `min_gap` positions
    from at least ceil(share x (n - 1)) of the other answers of its set (n >= 3)."""
    if len(others) + 1 < 3:
        return False
    required = ceil(config.outliers.share * len(others))
    gap = config.outliers.min_gap
    for value in (0, 1):
        far = sum(1 for o in others if abs(o[value] - own[value]) >= gap)
        if far >= required:
            return True
    return False


def expected_verdicts(config: Config, family: str) -> set[tuple[str, str, str]]:
    """(judge, spec id, spec version) of every verdict an answer of `family` needs when its
    scenario is flagged."""
    return {
        (judge, spec.id, spec.version)
        for spec in config.specs
        if family in spec.families
        for judge in config.roles.judges
    }
