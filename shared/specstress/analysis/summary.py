"""Read-only summaries for `specstress status` and the demo's closing table. What each stage
owes, and whether a run is complete, is the completeness model's (specstress.pipeline.progress)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["D_BINS", "SetDisagreement", "compliance", "counts", "disagreement_by_set"]

# D bins of the paper's Figure 2; the last bin is closed at 3 (the largest possible D).
D_BINS: tuple[tuple[float, float], ...] = ((0, 1), (1, 1.5), (1.5, 2), (2, 2.5), (2.5, 3.01))

_COUNTS = """
SELECT
  (SELECT count(*) FROM value_pairs) AS pairs,
  (SELECT count(*) FROM scenarios) AS scenarios,
  (SELECT count(*) FROM scenario_drops) AS drops,
  (SELECT count(*) FROM responses) AS responses,
  (SELECT count(*) FROM spectra) AS spectra,
  (SELECT count(*) FROM classifications) AS classifications,
  (SELECT count(DISTINCT scenario_id) FROM classifications) AS scenarios_scored,
  (SELECT count(DISTINCT scenario_id) FROM disagreement WHERE high) AS scenarios_flagged,
  (SELECT count(*) FROM verdicts) AS verdicts,
  (SELECT count(*) FROM dead_letters) AS dead_letters,
  (SELECT count(*) FROM llm_calls WHERE status = 'ok') AS llm_calls_ok,
  (SELECT count(*) FROM llm_calls WHERE status <> 'ok') AS llm_calls_failed,
  (SELECT coalesce(sum(cost_usd), 0) FROM llm_calls) AS cost_usd,
  (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM llm_calls) AS tokens,
  (SELECT coalesce(sum(cached_tokens), 0) FROM llm_calls) AS cached_tokens
"""

_DISAGREEMENT = """
SELECT model_set,
       count(*) AS scenarios,
       count(*) FILTER (WHERE high) AS high,
       avg(disagreement) AS mean_d,
       {bins}
FROM disagreement
GROUP BY model_set
ORDER BY model_set
"""

_COMPLIANCE = """
SELECT spec_id, spec_version,
       count(*) AS scenarios_judged,
       count(*) FILTER (WHERE frequent_noncompliance_majority) AS frequent_majority,
       count(*) FILTER (WHERE frequent_noncompliance_any) AS frequent_any,
       sum(answers_judged) AS answers_judged,
       sum(majority_flagged) AS majority_flagged,
       sum(any_flagged) AS any_flagged
FROM scenario_compliance
GROUP BY spec_id, spec_version
ORDER BY spec_id
"""


@dataclass(frozen=True)
class SetDisagreement:
    model_set: str
    scenarios: int
    high: int
    mean_d: float
    bins: tuple[int, ...]


async def counts(engine: AsyncEngine) -> dict[str, float]:
    async with engine.connect() as conn:
        row = (await conn.execute(text(_COUNTS))).one()
    return {key: float(value) for key, value in row._mapping.items()}


async def disagreement_by_set(engine: AsyncEngine) -> list[SetDisagreement]:
    bins = ",\n       ".join(
        f"count(*) FILTER (WHERE disagreement >= {lo} AND disagreement < {hi}) AS bin{i}"
        for i, (lo, hi) in enumerate(D_BINS)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(text(_DISAGREEMENT.format(bins=bins)))).all()
    return [
        SetDisagreement(
            model_set=r.model_set,
            scenarios=r.scenarios,
            high=r.high,
            mean_d=float(r.mean_d),
            bins=tuple(r[4 + i] for i in range(len(D_BINS))),
        )
        for r in rows
    ]


async def compliance(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(_COMPLIANCE))).all()
    return [dict(r._mapping) for r in rows]


async def data_date(engine: AsyncEngine) -> datetime | None:
    """When the newest fact was stored (answer, classification, score or verdict); None when
    the database holds none."""
    async with engine.connect() as conn:
        found: datetime | None = await conn.scalar(
            text(
                "SELECT greatest((SELECT max(created_at) FROM responses), "
                "(SELECT max(created_at) FROM classifications), "
                "(SELECT max(computed_at) FROM disagreement), "
                "(SELECT max(created_at) FROM verdicts))"
            )
        )
    return found
