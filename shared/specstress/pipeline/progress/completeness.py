"""When a run is complete: the one definition of the units each stage owes, and their state.

For a config, each stage expects units derived from the facts upstream of it:

- scenarios: three variants per sampled pair; a recorded drop settles a variant as done
- responses: an answer per scenario and active target model (a retired model, `active` false,
  expects no new answers; the answers it gave still count)
- spectra: one per pair that has a scenario
- classifications: one per answer
- disagreement: D per scenario and model set with at least two classified members, done when
  the stored D covers every classified member (a late answer makes it pending again)
- verdicts: one per judge and governing spec for every answer to a flagged scenario
- topic_labels (per flagged scenario), refusal_types (per classified answer, or only flagged
  ones with `labels.refusal_types: flagged`), distinctive_values (per classified answer to a
  flagged scenario)

A unit is *done* when its result is stored, *dead-lettered* when it has none and an open dead
letter (not replayed) holds it back, or the unit it needs upstream, and *pending* otherwise.
A stage is settled when nothing of it is pending; a run is *settled* when every stage is, and
*complete* when, besides, no unit is dead-lettered: every expected unit has its result.

The units are one SQL statement (`UNITS`), parameterised by the config's model sets, judges,
specs and label scope; status, `wait`, the metrics, reconcile and the release watcher's "is
this model's backfill complete" (`completeness(..., model_key=...)`) all read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config
from specstress.db import reading

__all__ = [
    "STAGES",
    "STAGE_SERVICES",
    "Completeness",
    "PendingUnit",
    "StageProgress",
    "completeness",
    "pending_units",
]

STAGES: tuple[str, ...] = (
    "scenarios",
    "responses",
    "spectra",
    "classifications",
    "disagreement",
    "verdicts",
    "topic_labels",
    "refusal_types",
    "distinctive_values",
)
# the service whose consumers do each stage's work (labels are the classifier's too)
STAGE_SERVICES: dict[str, str] = {
    "scenarios": "scenario_generator",
    "responses": "responder",
    "spectra": "spectrum_builder",
    "classifications": "classifier",
    "disagreement": "aggregator",
    "verdicts": "compliance_judge",
    "topic_labels": "classifier",
    "refusal_types": "classifier",
    "distinctive_values": "classifier",
}

# One row per expected unit: (stage, unit, scenario_id, model_key, done, dead, since), where
# `since` is when the unit became expected (its inputs were stored). A dead letter names the
# unit, or a coarser one (a pair, a scenario) or a stage it depends on; `open_letters` are
# those not replayed.
UNITS = """
WITH
open_letters AS (
  SELECT stage, unit FROM dead_letters WHERE replayed_at IS NULL AND unit IS NOT NULL
),
rules AS (
  SELECT * FROM jsonb_to_recordset(CAST(:model_sets AS jsonb)) AS x(model_set text, member text)
),
set_members AS (
  SELECT DISTINCT r.model_set, m.model_key
  FROM rules r JOIN models m
    ON r.member = '*' OR r.member = m.model_key OR r.member = 'family:' || m.family
),
governed AS (
  SELECT * FROM jsonb_to_recordset(CAST(:specs AS jsonb))
    AS x(spec_id text, spec_version text, family text)
),
judges AS (SELECT jsonb_array_elements_text(CAST(:judges AS jsonb)) AS judge),
flagged AS (
  SELECT scenario_id, max(computed_at) AS since FROM disagreement WHERE high GROUP BY scenario_id
),
units AS (
  SELECT 'scenarios' AS stage, p.pair_id || '/' || v.variant AS unit,
         NULL::text AS scenario_id, NULL::text AS model_key,
         (EXISTS (SELECT 1 FROM scenarios s WHERE s.pair_id = p.pair_id AND s.variant = v.variant)
          OR EXISTS (SELECT 1 FROM scenario_drops d
                     WHERE d.pair_id = p.pair_id AND d.variant = v.variant)) AS done,
         EXISTS (SELECT 1 FROM open_letters l
                 WHERE l.stage = 'scenarios' AND l.unit = p.pair_id) AS dead,
         p.created_at AS since
  FROM value_pairs p CROSS JOIN (VALUES ('neutral'), ('value1'), ('value2')) AS v(variant)

  UNION ALL
  SELECT 'responses', s.scenario_id || '/' || m.model_key, s.scenario_id, m.model_key,
         r.response_id IS NOT NULL,
         EXISTS (SELECT 1 FROM open_letters l WHERE l.stage = 'responses'
                 AND l.unit IN (s.scenario_id || '/' || m.model_key, s.scenario_id,
                                'model:' || m.model_key)),
         greatest(s.created_at, m.registered_at)
  FROM scenarios s CROSS JOIN models m
  LEFT JOIN responses r ON r.scenario_id = s.scenario_id AND r.model_key = m.model_key
  WHERE m.active OR r.response_id IS NOT NULL

  UNION ALL
  SELECT 'spectra', p.pair_id, NULL, NULL, x.spectrum_id IS NOT NULL,
         EXISTS (SELECT 1 FROM open_letters l WHERE l.stage = 'spectra' AND l.unit = p.pair_id),
         p.since
  FROM (SELECT pair_id, min(created_at) AS since FROM scenarios GROUP BY pair_id) p
  LEFT JOIN spectra x ON x.pair_id = p.pair_id

  UNION ALL
  SELECT 'classifications', r.response_id, r.scenario_id, r.model_key,
         c.response_id IS NOT NULL,
         EXISTS (SELECT 1 FROM open_letters l
                 WHERE (l.stage = 'classifications' AND l.unit IN (r.scenario_id, s.pair_id))
                    OR (l.stage = 'spectra' AND l.unit = s.pair_id)),
         greatest(r.created_at, x.created_at)
  FROM responses r
  JOIN scenarios s ON s.scenario_id = r.scenario_id
  LEFT JOIN spectra x ON x.pair_id = s.pair_id
  LEFT JOIN classifications c ON c.response_id = r.response_id

  UNION ALL
  SELECT 'disagreement', k.scenario_id || '/' || k.model_set, k.scenario_id, NULL,
         d.members IS NOT NULL AND d.members = k.members,
         EXISTS (SELECT 1 FROM open_letters l
                 WHERE l.stage = 'disagreement' AND l.unit = k.scenario_id),
         k.since
  FROM (
    SELECT c.scenario_id, sm.model_set, count(*) AS members, max(c.created_at) AS since
    FROM classifications c
    JOIN responses r ON r.response_id = c.response_id
    JOIN set_members sm ON sm.model_key = r.model_key
    GROUP BY c.scenario_id, sm.model_set
    HAVING count(*) >= 2
  ) k
  LEFT JOIN disagreement d ON d.scenario_id = k.scenario_id AND d.model_set = k.model_set

  UNION ALL
  SELECT 'verdicts', r.response_id || '/' || j.judge || '/' || g.spec_id, r.scenario_id,
         r.model_key,
         EXISTS (SELECT 1 FROM verdicts v
                 WHERE v.response_id = r.response_id AND v.judge = j.judge
                   AND v.spec_id = g.spec_id AND v.spec_version = g.spec_version),
         EXISTS (SELECT 1 FROM open_letters l WHERE l.stage = 'verdicts'
                 AND l.unit IN (r.response_id || '/' || j.judge || '/' || g.spec_id,
                                r.scenario_id)),
         f.since
  FROM flagged f
  JOIN responses r ON r.scenario_id = f.scenario_id
  JOIN models m ON m.model_key = r.model_key
  JOIN governed g ON g.family = m.family
  CROSS JOIN judges j

  UNION ALL
  SELECT 'topic_labels', f.scenario_id, f.scenario_id, NULL,
         EXISTS (SELECT 1 FROM topic_labels t WHERE t.scenario_id = f.scenario_id),
         EXISTS (SELECT 1 FROM open_letters l
                 WHERE l.stage = 'labels' AND l.unit = f.scenario_id),
         f.since
  FROM flagged f

  UNION ALL
  SELECT 'refusal_types', c.response_id, c.scenario_id, r.model_key,
         EXISTS (SELECT 1 FROM refusal_types t WHERE t.response_id = c.response_id),
         EXISTS (SELECT 1 FROM open_letters l
                 WHERE l.stage = 'labels' AND l.unit = c.scenario_id),
         c.created_at
  FROM classifications c
  JOIN responses r ON r.response_id = c.response_id
  WHERE :refusal_scope = 'all' OR c.scenario_id IN (SELECT scenario_id FROM flagged)

  UNION ALL
  SELECT 'distinctive_values', c.response_id, c.scenario_id, r.model_key,
         EXISTS (SELECT 1 FROM distinctive_values v WHERE v.response_id = c.response_id),
         EXISTS (SELECT 1 FROM open_letters l
                 WHERE l.stage = 'labels' AND l.unit = c.scenario_id),
         greatest(f.since, c.created_at)
  FROM flagged f
  JOIN classifications c ON c.scenario_id = f.scenario_id
  JOIN responses r ON r.response_id = c.response_id
),
scoped AS (
  -- one model's view: its own units, and the D of the scenarios its answer is classified in
  SELECT u.* FROM units u
  WHERE CAST(:model_key AS text) IS NULL
     OR u.model_key = :model_key
     OR (u.stage = 'disagreement' AND EXISTS (
           SELECT 1 FROM classifications c JOIN responses r ON r.response_id = c.response_id
           WHERE c.scenario_id = u.scenario_id AND r.model_key = :model_key))
)
"""

_BY_STAGE = (
    UNITS
    + """
SELECT stage,
       count(*) AS expected,
       count(*) FILTER (WHERE done) AS done,
       count(*) FILTER (WHERE NOT done AND dead) AS dead_lettered,
       count(*) FILTER (WHERE NOT done AND NOT dead) AS pending,
       extract(epoch FROM now() - min(since) FILTER (WHERE NOT done AND NOT dead))
         AS oldest_pending_seconds
FROM scoped
GROUP BY stage
"""
)

_PENDING = (
    UNITS
    + """
SELECT stage, unit, extract(epoch FROM now() - since) AS age_seconds
FROM scoped
WHERE NOT done AND NOT dead AND (CAST(:stage AS text) IS NULL OR stage = :stage)
ORDER BY since, stage, unit
LIMIT :limit
"""
)

# open dead letters by the stage they hold back and their reason code
_DEAD_LETTERS = """
SELECT coalesce(stage, '') AS stage, reason_code, count(*) AS n
FROM dead_letters
WHERE replayed_at IS NULL
GROUP BY 1, 2
"""


@dataclass(frozen=True)
class StageProgress:
    stage: str
    expected: int
    done: int
    dead_lettered: int
    pending: int
    # age of the oldest pending unit; None when nothing is pending
    oldest_pending_seconds: float | None

    @property
    def settled(self) -> bool:
        return self.pending == 0


@dataclass(frozen=True)
class PendingUnit:
    stage: str
    unit: str
    age_seconds: float


@dataclass(frozen=True)
class Completeness:
    stages: tuple[StageProgress, ...]
    # open dead letters: by reason code, and by stage then reason code
    dead_letters: dict[str, int]
    dead_letters_by_stage: dict[str, dict[str, int]]
    measured_at: datetime
    # None: the whole run; otherwise one target model's units
    model_key: str | None = None
    by_name: dict[str, StageProgress] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {s.stage: s for s in self.stages})

    def stage(self, name: str) -> StageProgress:
        return self.by_name[name]

    @property
    def expected(self) -> int:
        return sum(s.expected for s in self.stages)

    @property
    def done(self) -> int:
        return sum(s.done for s in self.stages)

    @property
    def dead_lettered(self) -> int:
        return sum(s.dead_lettered for s in self.stages)

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.stages)

    @property
    def settled(self) -> bool:
        """Every expected unit has its result or a dead letter that holds it back."""
        return self.pending == 0

    @property
    def complete(self) -> bool:
        """Every expected unit has its result."""
        return self.settled and self.dead_lettered == 0

    @property
    def oldest_pending_seconds(self) -> float | None:
        ages = [
            s.oldest_pending_seconds for s in self.stages if s.oldest_pending_seconds is not None
        ]
        return max(ages) if ages else None

    def as_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "settled": self.settled,
            "model_key": self.model_key,
            "measured_at": self.measured_at.isoformat(),
            "expected": self.expected,
            "done": self.done,
            "dead_lettered": self.dead_lettered,
            "pending": self.pending,
            "oldest_pending_seconds": self.oldest_pending_seconds,
            "stages": {
                s.stage: {k: v for k, v in asdict(s).items() if k != "stage"} for s in self.stages
            },
            "dead_letters": dict(self.dead_letters),
            "dead_letters_by_stage": {k: dict(v) for k, v in self.dead_letters_by_stage.items()},
        }


def _parameters(config: Config, model_key: str | None) -> dict[str, Any]:
    return {
        "model_sets": json.dumps(
            [
                {"model_set": name, "member": member}
                for name, members in config.model_sets.items()
                for member in members
            ]
        ),
        "specs": json.dumps(
            [
                {"spec_id": spec.id, "spec_version": spec.version, "family": family}
                for spec in config.specs
                for family in spec.families
            ]
        ),
        "judges": json.dumps(list(config.roles.judges)),
        "refusal_scope": config.labels.refusal_types,
        "model_key": model_key,
    }


async def completeness(
    engine: AsyncEngine, config: Config, *, model_key: str | None = None
) -> Completeness:
    """Per stage: units expected, done, dead-lettered and pending, for the run or one model."""
    async with reading(engine) as conn:
        rows = {
            r.stage: r for r in await conn.execute(text(_BY_STAGE), _parameters(config, model_key))
        }
        letters = (await conn.execute(text(_DEAD_LETTERS))).all()
        measured_at = (await conn.execute(text("SELECT now()"))).scalar_one()
    stages = []
    for name in STAGES:
        row = rows.get(name)
        if row is None:
            stages.append(StageProgress(name, 0, 0, 0, 0, None))
            continue
        age = row.oldest_pending_seconds
        stages.append(
            StageProgress(
                stage=name,
                expected=row.expected,
                done=row.done,
                dead_lettered=row.dead_lettered,
                pending=row.pending,
                oldest_pending_seconds=None if age is None else max(0.0, float(age)),
            )
        )
    by_reason: dict[str, int] = {}
    by_stage: dict[str, dict[str, int]] = {}
    for letter in letters:
        by_reason[letter.reason_code] = by_reason.get(letter.reason_code, 0) + letter.n
        by_stage.setdefault(letter.stage, {})[letter.reason_code] = letter.n
    return Completeness(
        stages=tuple(stages),
        dead_letters=dict(sorted(by_reason.items())),
        dead_letters_by_stage=by_stage,
        measured_at=measured_at,
        model_key=model_key,
    )


async def pending_units(
    engine: AsyncEngine,
    config: Config,
    *,
    stage: str | None = None,
    model_key: str | None = None,
    limit: int | None = 20,
) -> list[PendingUnit]:
    """The oldest pending units (of one stage, or all), oldest first; every one when `limit`
    is None."""
    parameters = {**_parameters(config, model_key), "stage": stage, "limit": limit}
    async with reading(engine) as conn:
        rows = await conn.execute(text(_PENDING), parameters)
        return [PendingUnit(r.stage, r.unit, max(0.0, float(r.age_seconds))) for r in rows]
